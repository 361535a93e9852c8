"""Alert rules and lifecycle: from the failed nodes of the estate to few,
precise notifications.

One root cause, one alert: every node that fails for the same cause(s) is
folded into the alert of that cause, and every critical node it takes down is
named in it (folding is not hiding). An alert waits `settle_s` before its
first message, so a farm going down gives one message rather than one per
node; it is repeated every `repeat_interval_s` while it fires, again at once
when it takes down another critical node, escalated when an outage outlives a
critical node's recovery target (and again at twice that), and resolved with
a message. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from alerts.model import Alert, AlertKind, Event, Impacted, Notification, Severity
from topology import State, format_duration

__all__ = ["Alerting", "Failed", "Policy"]


@dataclass(frozen=True, slots=True)
class Failed:
    """A node that is effectively degraded or down now, and why."""

    node: str
    state: State
    causes: tuple[str, ...]
    critical: bool
    recovery_target_s: float
    since: float
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Early signs its own probes report (log anomalies, a latency
    # regression), one line each: a node failed for them alone is an
    # anomaly alert.
    anomalies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """When to speak. Defaults: settle 10 s, repeat every 4 h, escalate at
    one and two times the recovery target."""

    settle_s: float = 10.0
    repeat_interval_s: float = 4 * 3600.0
    escalate_at: tuple[float, ...] = (1.0, 2.0)


@dataclass(slots=True)
class _Tracked:
    alert: Alert
    fired_at: float | None = None
    last_sent: float | None = None
    critical_named: frozenset[str] = frozenset()
    escalations: dict[str, int] = field(default_factory=dict)
    sent: int = 0


class Alerting:
    """The alerts in force and what to send about them. Call `update` with
    every failed node whenever the estate changes and on a regular tick (for
    settling, reminders and escalation); it returns the notifications due."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self._tracked: dict[str, _Tracked] = {}
        self._watched: frozenset[str] = frozenset()

    @property
    def alerts(self) -> list[Alert]:
        """The alerts in force (firing or settling), by key."""
        return [t.alert for _, t in sorted(self._tracked.items())]

    def firing(self, now: float) -> list[Notification]:
        """A `repeat` notification of every alert that has fired and still
        fires, by key, for sinks that must be told again and again that it
        still fires (Alertmanager); not counted as a reminder."""
        return [
            Notification(f"{t.alert.occurrence}#refresh", t.alert, "repeat", now)
            for key, t in sorted(self._tracked.items())
            if t.fired_at is not None
        ]

    def update(
        self,
        now: float,
        failed: Iterable[Failed],
        drift: Iterable[Failed] = (),
        watched: frozenset[str] = frozenset(),
    ) -> list[Notification]:
        """The notifications due at `now`, given every failed node and the
        nodes in drift (probed up, said down by the topology). An alert that
        takes down a `watched` critical node (one a running maneuver
        impacts) does not wait for the settle window."""
        self._watched = watched
        current = _group(now, failed)
        for node in drift:
            key = f"drift:{node.node}"
            current[key] = Alert(
                key=key,
                kind="drift",
                severity="warning",
                root_cause=node.causes,
                summary=(
                    f"{node.node} is probed up but the topology says it is down "
                    f"because of {', '.join(node.causes)}: the topology may be wrong"
                ),
                started_at=now,
                labels=node.labels,
            )
        out: list[Notification] = []
        for key in sorted(set(self._tracked) - set(current)):
            gone = self._tracked.pop(key)
            if gone.fired_at is not None:
                resolved = replace(gone.alert, summary=f"resolved: {gone.alert.summary}")
                out.append(self._notify(gone, resolved, "resolved", now))
        for key, alert in sorted(current.items()):
            tracked = self._tracked.get(key)
            if tracked is None:
                tracked = self._tracked[key] = _Tracked(alert)
            else:
                # The problem started when it was first seen, whatever joined since.
                tracked.alert = replace(alert, started_at=tracked.alert.started_at)
            out.extend(self._due(tracked, now))
        return out

    def _due(self, tracked: _Tracked, now: float) -> list[Notification]:
        alert, policy = tracked.alert, self.policy
        named = frozenset(i.node for i in alert.critical)
        if tracked.fired_at is None:
            if now < self._settled_at(tracked):
                return []
            tracked.fired_at = now
            tracked.critical_named = named
            return [self._notify(tracked, alert, "firing", now)]
        out = []
        escalated = self._escalations(tracked, now)
        if escalated:
            out.append(self._notify(tracked, escalated, "escalated", now))
        elif named - tracked.critical_named or (
            tracked.last_sent is not None and now - tracked.last_sent >= policy.repeat_interval_s
        ):
            out.append(self._notify(tracked, alert, "repeat", now))
        tracked.critical_named |= named
        return out

    def _settled_at(self, tracked: _Tracked) -> float:
        """When a pending alert may speak: `settle_s` after its problem
        started (its earliest failure), not after a caller first saw it; at
        once when it takes down a watched node."""
        start = tracked.alert.started_at
        if self._watched and any(i.node in self._watched for i in tracked.alert.critical):
            return start
        return start + self.policy.settle_s

    def next_due(self) -> float | None:
        """The earliest time a settling alert becomes due, so a caller on a
        tick can wake for it instead of waiting for the next tick."""
        pending = [self._settled_at(t) for t in self._tracked.values() if t.fired_at is None]
        return min(pending, default=None)

    def _escalations(self, tracked: _Tracked, now: float) -> Alert | None:
        """The alert with an escalation summary when a critical node's outage
        has just outlived the next multiple of its recovery target."""
        over = []
        for impacted in tracked.alert.critical:
            level = tracked.escalations.get(impacted.node, 0)
            factors = self.policy.escalate_at
            if (
                level < len(factors)
                and now - impacted.since >= factors[level] * impacted.recovery_target_s
            ):
                tracked.escalations[impacted.node] = level + 1
                over.append(
                    f"{impacted.node} down for {format_duration(now - impacted.since)}, "
                    f"over its recovery target of {format_duration(impacted.recovery_target_s)}"
                )
        if not over:
            return None
        return replace(tracked.alert, severity="critical", summary="; ".join(over))

    def _notify(self, tracked: _Tracked, alert: Alert, event: Event, now: float) -> Notification:
        tracked.sent += 1
        tracked.last_sent = now
        ident = f"{tracked.alert.occurrence}#{tracked.sent}:{event}"
        return Notification(id=ident, alert=alert, event=event, at=now)


def _group(now: float, failed: Iterable[Failed]) -> dict[str, Alert]:
    """One alert per set of root causes that takes down a critical node or
    any node at all; degraded non-critical nodes only ride along, unless
    their own early signs (anomalies) degrade them: that is an anomaly
    alert of its own, whatever the node."""
    by_cause: dict[tuple[str, ...], list[Failed]] = {}
    for node in failed:
        by_cause.setdefault(node.causes or (node.node,), []).append(node)
    alerts = {}
    for causes, nodes in by_cause.items():
        critical = sorted((n for n in nodes if n.critical), key=lambda n: (-n.state, n.node))
        down = [n for n in nodes if n.state == State.DOWN]
        signs = [n for n in nodes if n.anomalies and n.node in causes]
        if not critical and not down and not signs:
            continue
        severity: Severity = (
            "critical" if any(n.state == State.DOWN for n in critical) else "warning"
        )
        collateral = tuple(sorted(n.node for n in nodes if not n.critical and n.node not in causes))
        impacted = tuple(Impacted(n.node, n.state, n.recovery_target_s, n.since) for n in critical)
        labels: dict[str, str] = {}
        for n in sorted(nodes, key=lambda n: n.node):
            for k, v in n.labels.items():
                labels.setdefault(k, v)
        # Down is an outage whatever else is seen; the signs still say why.
        kind: AlertKind = "anomaly" if signs and not down else "outage"
        summary = _summary(causes, nodes, collateral, now)
        if signs:
            named = len(signs) > 1
            summary += ": " + "; ".join(
                f"{n.node}: {'; '.join(n.anomalies)}" if named else "; ".join(n.anomalies)
                for n in signs
            )
        key = f"{kind}:{','.join(causes)}"
        alerts[key] = Alert(
            key=key,
            kind=kind,
            severity=severity,
            root_cause=causes,
            summary=summary,
            started_at=min(n.since for n in nodes),
            critical=impacted,
            collateral=collateral,
            labels=MappingProxyType(labels),
        )
    return alerts


def _summary(
    causes: tuple[str, ...], nodes: list[Failed], collateral: tuple[str, ...], now: float
) -> str:
    """`farm-oms-1 down takes critical orders-workflow down (9m left); 3 other nodes`."""

    def clock(n: Failed) -> str:
        left = n.since + n.recovery_target_s - now
        return f"{format_duration(left)} left" if left > 0 else "recovery target breached"

    by_name = {n.node: n for n in nodes}
    head = []
    for cause in causes:
        n = by_name.get(cause)
        if n is None:
            head.append(f"{cause} failed")
        else:
            head.append(f"{cause} {n.state}" + (f" ({clock(n)})" if n.critical else ""))
    text = ", ".join(head)
    others = sorted((n for n in nodes if n.critical and n.node not in causes), key=lambda n: n.node)
    if others:
        text += " takes critical " + ", ".join(f"{n.node} {n.state} ({clock(n)})" for n in others)
    if collateral:
        text += f"; {len(collateral)} other node{'s' if len(collateral) != 1 else ''}"
    return text
