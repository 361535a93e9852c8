"""Notifications and alert state as JSON, for the durable outbox and the
alerts that outlive a restart: what is written must come back the same."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from alerts.model import Alert, Impacted, Notification
from alerts.rules import TrackedAlert
from topology import State

__all__ = ["dump_tracked", "dumps", "load_tracked", "loads"]


def dumps(notification: Notification) -> str:
    """`notification` as one JSON text."""
    return json.dumps(
        {
            "id": notification.id,
            "event": notification.event,
            "at": notification.at,
            "alert": _alert(notification.alert),
        },
        sort_keys=True,
    )


def loads(text: str) -> Notification:
    """The notification `dumps` wrote."""
    data: dict[str, Any] = json.loads(text)
    alert = _load_alert(data["alert"])
    return Notification(id=data["id"], alert=alert, event=data["event"], at=data["at"])


def dump_tracked(tracked: TrackedAlert) -> str:
    """An alert that has spoken, and its lifecycle, as one JSON text."""
    return json.dumps(
        {
            "alert": _alert(tracked.alert),
            "fired_at": tracked.fired_at,
            "last_sent": tracked.last_sent,
            "sent": tracked.sent,
            "critical_named": sorted(tracked.critical_named),
            "escalations": dict(tracked.escalations),
            "members": sorted(tracked.members),
        },
        sort_keys=True,
    )


def load_tracked(text: str) -> TrackedAlert:
    """The alert state `dump_tracked` wrote."""
    data: dict[str, Any] = json.loads(text)
    return TrackedAlert(
        alert=_load_alert(data["alert"]),
        fired_at=data["fired_at"],
        last_sent=data["last_sent"],
        sent=data["sent"],
        critical_named=frozenset(data["critical_named"]),
        escalations=MappingProxyType(dict(data["escalations"])),
        members=frozenset(data["members"]),
    )


def _alert(alert: Alert) -> dict[str, Any]:
    return {
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "root_cause": list(alert.root_cause),
        "summary": alert.summary,
        "started_at": alert.started_at,
        "critical": [[i.node, str(i.state), i.recovery_target_s, i.since] for i in alert.critical],
        "collateral": list(alert.collateral),
        "labels": dict(alert.labels),
    }


def _load_alert(a: dict[str, Any]) -> Alert:
    return Alert(
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
