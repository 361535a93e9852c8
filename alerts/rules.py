"""Alert rules and lifecycle: from the failed nodes of the estate to few,
precise notifications, also in a storm.

One alert per root cause, never one per *set* of root causes: a node that two
causes take down is named under each. Every critical node a cause takes down
is named in its alert (folding is not hiding); other nodes are counted.
Failures that the topology does not explain (a node down while everything it
needs is available) and that start within one settle window of each other
are folded into one alert that counts them, names the critical ones and says
what they have in common: the shared cause the topology may be missing.
Drift (nodes probed up that the topology says are down) gives one alert per
cause the topology blames, listing its nodes.

An alert waits `settle_s` before its first message, so a farm going down gives
one message rather than one per node; it is repeated every
`repeat_interval_s` while it fires, again at once when it takes down another
critical node, escalated when an outage outlives a critical node's recovery
target (and again at twice that), and resolved with a message once every
node it named has recovered: a farm that comes back before the services on
it keeps its alert, with what is still down, instead of paging again for
each service that is slower to recover. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from alerts.model import Alert, AlertKind, Event, Impacted, Notification, Severity
from topology import State, format_duration

__all__ = ["Alerting", "Failed", "Policy", "Suspects", "TrackedAlert"]

# Prefixes of the keys of folded unexplained failures and of drift.
UNEXPLAINED = "outage:unexplained:"
# How many node names a summary spells out before counting the rest.
_NAMED = 10
# Sets of folded failures whose shared needs are kept worked out.
_KEPT_SUSPECTS = 64

# What failures that happened together have in common, by the topology:
# (node, how many of them need it), most shared first.
Suspects = Callable[[Sequence[str]], Sequence[tuple[str, int]]]


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
    # It is its own root cause although it needs other nodes, all of them
    # available: the topology does not explain the failure.
    unexplained: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """When to speak. Defaults: settle 10 s, repeat every 4 h, escalate at
    one and two times the recovery target, fold unexplained failures from 3
    within a settle window."""

    settle_s: float = 10.0
    repeat_interval_s: float = 4 * 3600.0
    escalate_at: tuple[float, ...] = (1.0, 2.0)
    fold_at: int = 3


@dataclass(frozen=True, slots=True)
class TrackedAlert:
    """What must outlive the process about an alert that has spoken: a
    restarted daemon that restores it resolves it (once) if it recovered
    meanwhile, and otherwise goes on with it without a second first message."""

    alert: Alert
    fired_at: float
    last_sent: float
    sent: int
    critical_named: frozenset[str]
    escalations: Mapping[str, int]
    members: frozenset[str]


@dataclass(slots=True)
class _Tracked:
    alert: Alert
    members: frozenset[str] = frozenset()
    fired_at: float | None = None
    last_sent: float | None = None
    critical_named: frozenset[str] = frozenset()
    escalations: dict[str, int] = field(default_factory=dict)
    sent: int = 0


class Alerting:
    """The alerts in force and what to send about them. Call `update` with
    every failed node whenever the estate changes and on a regular tick (for
    settling, reminders and escalation); it returns the notifications due.

    `suspects` (optional) says what a set of nodes needs in common, for the
    alert that folds unexplained failures; without it that alert names no
    suspect.
    """

    def __init__(self, policy: Policy | None = None, *, suspects: Suspects | None = None) -> None:
        self.policy = policy or Policy()
        self._suspects = suspects
        self._tracked: dict[str, _Tracked] = {}
        self._watched: frozenset[str] = frozenset()
        # Unexplained root causes folded together, by root: the key of their
        # alert. Kept while the root stays an unexplained failure, so a
        # folded alert keeps its identity as members come and go.
        self._burst_of: dict[str, str] = {}
        self._saved: dict[str, TrackedAlert | None] = {}
        self._failed_now: dict[str, State] = {}
        self._suspected: dict[tuple[str, ...], Sequence[tuple[str, int]]] = {}

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

    # --- durability -------------------------------------------------------

    def adopt(self, tracked: Iterable[TrackedAlert]) -> None:
        """Forget every alert and take `tracked` as the alerts that have
        spoken: what a replica does when it takes the lease over, so that
        it goes on from what the last holder sent, not from what it saw."""
        self._tracked.clear()
        self._burst_of.clear()
        self._saved.clear()
        self._failed_now.clear()
        self._suspected.clear()
        self.restore(tracked)

    def restore(self, tracked: Iterable[TrackedAlert]) -> None:
        """Take back the alerts that had spoken before a restart."""
        for saved in tracked:
            self._tracked[saved.alert.key] = _Tracked(
                saved.alert,
                saved.members,
                saved.fired_at,
                saved.last_sent,
                saved.critical_named,
                dict(saved.escalations),
                saved.sent,
            )
            if saved.alert.key.startswith(UNEXPLAINED):
                for root in saved.alert.root_cause:
                    self._burst_of[root] = saved.alert.key

    def unsaved(self, changes: Mapping[str, TrackedAlert | None]) -> None:
        """Changes that `take_changes` gave and a save failed to keep (the
        store unreachable): given again with the next ones, which win."""
        for key, value in changes.items():
            self._saved.setdefault(key, value)

    def tracked(self, keys: Iterable[str]) -> list[TrackedAlert]:
        """The alerts among `keys` that have spoken, as `restore` takes them."""
        found = (self._tracked.get(key) for key in keys)
        return [kept for t in found if t is not None and (kept := _kept(t)) is not None]

    def take_changes(self) -> dict[str, TrackedAlert | None]:
        """What changed in the alerts that have spoken since the last call,
        by key: their state to keep, or None for an alert that resolved (or
        never spoke and is gone). Saved with the notifications of the same
        round, a restart neither repeats nor loses a message."""
        changes, self._saved = self._saved, {}
        return changes

    def _keep(self, tracked: _Tracked) -> None:
        kept = _kept(tracked)
        if kept is not None:
            self._saved[tracked.alert.key] = kept

    # --- the rules ----------------------------------------------------------

    def update(
        self,
        now: float,
        failed: Iterable[Failed],
        drift: Iterable[Failed] = (),
        watched: frozenset[str] = frozenset(),
        extra: Iterable[Alert] = (),
    ) -> list[Notification]:
        """The notifications due at `now`, given every failed node, the
        nodes in drift (probed up, said down by the topology) and `extra`
        alerts made elsewhere (about the watchdog itself) that follow the
        same lifecycle. An alert that takes down a `watched` critical node
        (one a running maneuver impacts) does not wait for the settle
        window."""
        self._watched = watched
        failed = list(failed)
        current, members = self._recovering(now, failed)
        claimed = set().union(*members.values()) if members else set()
        rest = [f for f in failed if f.node not in claimed]
        groups = self._fold(rest)
        self._failed_now = {f.node: f.state for f in failed}
        for gid, nodes in self._by_cause(rest, groups).items():
            alert = self._alert(gid, nodes, groups.get(gid), now)
            if alert is not None:
                current[alert.key] = alert
                members[alert.key] = frozenset(nodes) | frozenset(alert.root_cause)
        for key, alert in _drift(drift, self._burst_of).items():
            current[key] = alert
        for alert in extra:
            current[alert.key] = alert
        out: list[Notification] = []
        for key in sorted(set(self._tracked) - set(current)):
            gone = self._tracked.pop(key)
            self._saved[key] = None
            if gone.fired_at is not None:
                # The event says it is over; the words say what it was.
                out.append(self._notify(gone, gone.alert, "resolved", now))
        for key, alert in sorted(current.items()):
            tracked = self._tracked.get(key)
            if tracked is None:
                tracked = self._tracked[key] = _Tracked(alert)
            else:
                # The problem started when it was first seen, whatever joined since.
                tracked.alert = replace(alert, started_at=tracked.alert.started_at)
            tracked.members = members.get(key, frozenset(alert.root_cause))
            out.extend(self._due(tracked, now))
        return out

    def _recovering(
        self, now: float, failed: list[Failed]
    ) -> tuple[dict[str, Alert], dict[str, frozenset[str]]]:
        """The alerts whose root causes are up again while nodes they took
        down are not: each keeps the failed nodes that fail only for
        reasons inside it (by key, with its members), so that what is slower
        to recover than its farm is not a new page."""
        roots_now = {c for f in failed for c in (f.causes or (f.node,))}
        current: dict[str, Alert] = {}
        members: dict[str, frozenset[str]] = {}
        for key, tracked in sorted(self._tracked.items()):
            alert = tracked.alert
            if alert.kind not in ("outage", "anomaly") or roots_now & set(alert.root_cause):
                continue
            left = [f for f in failed if set(f.causes or (f.node,)) <= tracked.members]
            if not left:
                continue
            current[key] = _recovering(alert, left, now)
            members[key] = tracked.members | {f.node for f in left}
        return current, members

    def _fold(self, failed: list[Failed]) -> dict[str, tuple[str, ...]]:
        """Fold the unexplained failures that started within one settle
        window of each other, from `fold_at` of them: the folded alerts' keys
        and their roots. A root whose own alert has spoken stays with it."""
        policy = self.policy
        roots = {
            f.node: f
            for f in failed
            if f.unexplained and f.state == State.DOWN and f.causes in ((), (f.node,))
        }
        self._burst_of = {r: k for r, k in self._burst_of.items() if r in roots}
        bursts: dict[str, list[str]] = {}
        for root, key in self._burst_of.items():
            bursts.setdefault(key, []).append(root)
        loose = []
        for since, name in sorted((f.since, n) for n, f in roots.items()):
            if name in self._burst_of or self._spoke_alone(name):
                continue
            near = [
                key
                for key, names in sorted(bursts.items())
                if any(abs(since - roots[n].since) <= policy.settle_s for n in names)
            ]
            if near:
                self._burst_of[name] = near[0]
                bursts[near[0]].append(name)
            else:
                loose.append(name)
        # What is left, in runs whose failures are within a settle window of
        # the previous one; a run long enough is a new folded alert.
        runs: list[list[str]] = []
        for name in loose:
            if runs and roots[name].since - roots[runs[-1][-1]].since <= policy.settle_s:
                runs[-1].append(name)
            else:
                runs.append([name])
        for run in runs:
            if len(run) >= policy.fold_at:
                key = UNEXPLAINED + run[0]
                bursts[key] = run
                self._burst_of.update(dict.fromkeys(run, key))
        return {key: tuple(sorted(names)) for key, names in bursts.items()}

    def _spoke_alone(self, root: str) -> bool:
        return any(
            (t := self._tracked.get(f"{kind}:{root}")) is not None and t.fired_at is not None
            for kind in ("outage", "anomaly")
        )

    def _by_cause(
        self, failed: list[Failed], groups: Mapping[str, tuple[str, ...]]
    ) -> dict[str, dict[str, Failed]]:
        """The failed nodes under each root cause (or folded alert) that
        explains them: a node with two root causes is under both."""
        out: dict[str, dict[str, Failed]] = {key: {} for key in groups}
        for node in failed:
            for cause in node.causes or (node.node,):
                gid = self._burst_of.get(cause)
                out.setdefault(gid or cause, {})[node.node] = node
        return out

    def _alert(
        self,
        gid: str,
        by_name: dict[str, Failed],
        folded: tuple[str, ...] | None,
        now: float,
    ) -> Alert | None:
        """The alert of one root cause (or of folded failures), or None when
        it takes down nothing worth a message (degraded non-critical nodes
        only ride along)."""
        nodes = sorted(by_name.values(), key=lambda n: n.node)
        causes = folded if folded is not None else (gid,)
        critical = sorted((n for n in nodes if n.critical), key=lambda n: (-n.state, n.node))
        down = [n for n in nodes if n.state == State.DOWN]
        signs = [n for n in nodes if n.anomalies and n.node in causes]
        if not critical and not down and not signs:
            return None
        severity: Severity = (
            "critical" if any(n.state == State.DOWN for n in critical) else "warning"
        )
        # A folded alert counts its non-critical failures among the rest; a
        # root cause's own alert names the cause apart.
        collateral = tuple(
            n.node for n in nodes if not n.critical and (folded is not None or n.node not in causes)
        )
        impacted = tuple(Impacted(n.node, n.state, n.recovery_target_s, n.since) for n in critical)
        labels: dict[str, str] = {}
        for n in nodes:
            for k, v in n.labels.items():
                labels.setdefault(k, v)
        if folded is not None:
            key = gid
            kind: AlertKind = "outage"
            summary = self._folded_summary(folded, nodes, now)
        else:
            # Down is an outage whatever else is seen; the signs still say why.
            kind = "anomaly" if signs and not down else "outage"
            key = f"{kind}:{gid}"
            summary = _summary(causes, nodes, collateral, now)
            if signs:
                named = len(signs) > 1
                summary += ": " + "; ".join(
                    f"{n.node}: {'; '.join(n.anomalies)}" if named else "; ".join(n.anomalies)
                    for n in signs
                )
        return Alert(
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

    def _folded_summary(self, roots: tuple[str, ...], nodes: list[Failed], now: float) -> str:
        """`40 failures within 10s that the topology does not explain
        (rep-00, rep-01, ... and 30 more) take critical rep-07 down (9m
        left); 12 other nodes fail with them; they may share a cause the
        topology is missing: 38 of the 40 need farm-0003 (down)`."""
        failed = self._failed_now
        shown = ", ".join(roots[:_NAMED]) + (
            f" and {len(roots) - _NAMED} more" if len(roots) > _NAMED else ""
        )
        text = (
            f"{len(roots)} failures within {format_duration(self.policy.settle_s)} "
            f"that the topology does not explain ({shown})"
        )
        critical = sorted((n for n in nodes if n.critical), key=lambda n: n.node)
        if critical:
            text += " " + _impact(critical, now, plural=True)
        others = sum(1 for n in nodes if not n.critical and n.node not in roots)
        if others:
            text += f"; {others} other node{'s' if others != 1 else ''} fail with them"
        shared = self._shared(roots)
        if shared:
            text += "; they may share a cause the topology is missing: " + ", ".join(
                (f"all {count}" if count == len(roots) else f"{count} of the {len(roots)}")
                + f" need {name}"
                + (f" ({failed[name]})" if name in failed else "")
                for name, count in shared
            )
        return text

    def _shared(self, roots: tuple[str, ...]) -> Sequence[tuple[str, int]]:
        """What `roots` need in common, worked out once per set of roots: a
        walk of the topology below each of them."""
        if self._suspects is None:
            return ()
        found = self._suspected.get(roots)
        if found is None:
            if len(self._suspected) > _KEPT_SUSPECTS:
                self._suspected.clear()
            found = self._suspected[roots] = self._suspects(roots)
        return found

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
                lasted = format_duration(now - impacted.since)
                over.append(
                    f"{impacted.node} {impacted.state} for {lasted}, "
                    f"over its recovery target of {format_duration(impacted.recovery_target_s)}"
                )
        if not over:
            return None
        return replace(tracked.alert, severity="critical", summary="; ".join(over))

    def _notify(self, tracked: _Tracked, alert: Alert, event: Event, now: float) -> Notification:
        tracked.sent += 1
        tracked.last_sent = now
        if event != "resolved":
            self._keep(tracked)
        ident = f"{tracked.alert.occurrence}#{tracked.sent}:{event}"
        return Notification(id=ident, alert=alert, event=event, at=now)


def _recovering(alert: Alert, left: list[Failed], now: float) -> Alert:
    """`alert`, its root causes up again, with what is still down."""
    nodes = sorted(left, key=lambda n: n.node)
    critical = sorted((n for n in nodes if n.critical), key=lambda n: (-n.state, n.node))
    causes = ", ".join(alert.root_cause[:_NAMED]) + (
        f" and {len(alert.root_cause) - _NAMED} more" if len(alert.root_cause) > _NAMED else ""
    )
    summary = f"recovering: {causes} up again; still failing: " + (
        f"critical {_criticals(sorted(critical, key=lambda n: n.node), now)}"
        if critical
        else "no critical node"
    )
    others = len(nodes) - len(critical)
    if others:
        summary += f"; {others} other node{'s' if others != 1 else ''}"
    severity: Severity = "critical" if any(n.state == State.DOWN for n in critical) else "warning"
    return replace(
        alert,
        severity=severity,
        summary=summary,
        critical=tuple(Impacted(n.node, n.state, n.recovery_target_s, n.since) for n in critical),
        collateral=tuple(n.node for n in nodes if not n.critical),
    )


def _drift(drift: Iterable[Failed], burst_of: Mapping[str, str]) -> dict[str, Alert]:
    """One drift alert per cause the topology blames (a folded alert's
    failures count as one cause), listing its nodes, critical ones first."""
    by_cause: dict[str, dict[str, Failed]] = {}
    for node in drift:
        for cause in node.causes:
            gid = burst_of.get(cause)
            name = gid.removeprefix("outage:") if gid is not None else cause
            by_cause.setdefault(name, {})[node.node] = node
    alerts = {}
    for cause, by_name in by_cause.items():
        nodes = sorted(by_name.values(), key=lambda n: (not n.critical, n.node))
        folded = sum(1 for k in burst_of.values() if k == "outage:" + cause)
        blamed, take = (f"{folded} unexplained failures", "take") if folded else (cause, "takes")
        if len(nodes) == 1:
            summary = (
                f"{nodes[0].node} is probed up, but the topology says {blamed} {take} it down: "
                "the topology may be wrong"
            )
        else:
            summary = (
                f"{len(nodes)} nodes are probed up, but the topology says {blamed} {take} them "
                f"down: {_names(nodes)}: the topology may be wrong"
            )
        labels: dict[str, str] = {}
        for n in nodes:
            for k, v in n.labels.items():
                labels.setdefault(k, v)
        key = f"drift:{cause}"
        alerts[key] = Alert(
            key=key,
            kind="drift",
            severity="warning",
            root_cause=tuple(sorted({c for n in nodes for c in n.causes})),
            summary=summary,
            started_at=min(n.since for n in nodes),
            collateral=tuple(n.node for n in nodes),
            labels=MappingProxyType(labels),
        )
    return alerts


def _names(nodes: list[Failed]) -> str:
    """Up to ten names, critical ones marked, and how many more."""
    named = ", ".join(f"{n.node} (critical)" if n.critical else n.node for n in nodes[:_NAMED])
    more = len(nodes) - _NAMED
    return named + (f" and {more} more" if more > 0 else "")


def _criticals(nodes: list[Failed], now: float) -> str:
    """Critical nodes with their state and clock, the first ten named and
    the rest counted: a message read in ten seconds (the alert itself
    carries every one, for the API, the webhook and Alertmanager)."""
    named = ", ".join(f"{n.node} {n.state} ({_clock(n, now)})" for n in nodes[:_NAMED])
    return named + _more(len(nodes) - _NAMED)


def _impact(nodes: list[Failed], now: float, *, plural: bool = False) -> str:
    """What a cause does to critical `nodes`, in words that say which are
    down and which only degraded: `takes critical orders down (9m left)
    and degrades critical checkout (4m left)`. Ten are named (those down
    first), the rest counted."""
    down = [n for n in nodes if n.state == State.DOWN]
    degraded = [n for n in nodes if n.state != State.DOWN]
    shown_down = down[:_NAMED]
    shown_degraded = degraded[: _NAMED - len(shown_down)]
    take, degrade = ("take", "degrade") if plural else ("takes", "degrades")
    phrases = []
    if shown_down:
        named = ", ".join(f"{n.node} down ({_clock(n, now)})" for n in shown_down)
        phrases.append(f"{take} critical {named}")
    if shown_degraded:
        named = ", ".join(f"{n.node} ({_clock(n, now)})" for n in shown_degraded)
        phrases.append(f"{degrade} critical {named}")
    more = _more(len(nodes) - len(shown_down) - len(shown_degraded))
    return " and ".join(phrases) + ("," if more and len(phrases) > 1 else "") + more


def _more(count: int) -> str:
    return f" and {count} more critical node{'s' if count != 1 else ''}" if count > 0 else ""


def _clock(n: Failed, now: float) -> str:
    left = round(n.since + n.recovery_target_s - now)
    return f"{format_duration(left)} left" if left > 0 else "recovery target breached"


def _summary(
    causes: tuple[str, ...], nodes: list[Failed], collateral: tuple[str, ...], now: float
) -> str:
    """`farm-oms-1 down takes critical orders-workflow down (9m left); 3 other nodes`,
    or `farm-x down degrades critical checkout (4m left)`: a cause that only
    degrades critical nodes is not said to take anything down."""
    by_name = {n.node: n for n in nodes}
    head = []
    for cause in causes:
        n = by_name.get(cause)
        if n is None:
            head.append(f"{cause} failed")
        else:
            head.append(f"{cause} {n.state}" + (f" ({_clock(n, now)})" if n.critical else ""))
    text = ", ".join(head)
    others = sorted((n for n in nodes if n.critical and n.node not in causes), key=lambda n: n.node)
    if others:
        text += " " + _impact(others, now)
    if collateral:
        text += f"; {len(collateral)} other node{'s' if len(collateral) != 1 else ''}"
    return text


def _kept(tracked: _Tracked) -> TrackedAlert | None:
    """What is kept of an alert that has spoken; None if it has not."""
    if tracked.fired_at is None or tracked.last_sent is None:
        return None
    return TrackedAlert(
        tracked.alert,
        tracked.fired_at,
        tracked.last_sent,
        tracked.sent,
        tracked.critical_named,
        MappingProxyType(dict(tracked.escalations)),
        tracked.members,
    )
