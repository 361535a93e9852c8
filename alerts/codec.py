"""Notifications as JSON, for the durable outbox: what is written before a
send must come back as the same notification after a restart."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from alerts.model import Alert, Impacted, Notification
from topology import State

__all__ = ["dumps", "loads"]


def dumps(notification: Notification) -> str:
    """`notification` as one JSON text."""
    alert = notification.alert
    return json.dumps(
        {
            "id": notification.id,
            "event": notification.event,
            "at": notification.at,
            "alert": {
                "key": alert.key,
                "kind": alert.kind,
                "severity": alert.severity,
                "root_cause": list(alert.root_cause),
                "summary": alert.summary,
                "started_at": alert.started_at,
                "critical": [
                    [i.node, str(i.state), i.recovery_target_s, i.since] for i in alert.critical
                ],
                "collateral": list(alert.collateral),
                "labels": dict(alert.labels),
            },
        },
        sort_keys=True,
    )


def loads(text: str) -> Notification:
    """The notification `dumps` wrote."""
    data: dict[str, Any] = json.loads(text)
    a = data["alert"]
    alert = Alert(
        key=a["key"],
        kind=a["kind"],
        severity=a["severity"],
        root_cause=tuple(a["root_cause"]),
        summary=a["summary"],
        started_at=a["started_at"],
        critical=tuple(
            Impacted(node, State.parse(state), target, since)
            for node, state, target, since in a["critical"]
        ),
        collateral=tuple(a["collateral"]),
        labels=MappingProxyType(dict(a["labels"])),
    )
    return Notification(id=data["id"], alert=alert, event=data["event"], at=data["at"])
