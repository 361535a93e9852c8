"""Maneuvers: the pre-maneuver check on live state, recorded. A maneuver
that would take a critical node down is refused unless forced with a
reason; either way it is announced, naming who asked for what, and its end
checks that everything it impacted has recovered. Announcements are
notices (`event="notice"`): said once, never resolved.

The stored concern's interface (what `Maneuvers` reads and writes in the
store): `start` and `end` (each judges on live state, then writes one row),
`watched`, `get`, `recent`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alerts.model import Alert, Impacted, Notification, Severity
from topology import Action, Impact, State, Verdict
from watchdog.live import LiveState, LiveView
from watchdog.refusal import Refused
from watchdog.store import Store

__all__ = ["Maneuver", "ManeuverError", "Maneuvers"]


class ManeuverError(Refused):
    """A maneuver request that cannot be taken."""


@dataclass(frozen=True, slots=True)
class Maneuver:
    """A recorded maneuver and the impact it had when asked for."""

    id: int
    by: str
    reason: str
    actions: tuple[Action, ...]
    verdict: Verdict
    forced: bool
    state: str  # refused, running, ended
    started_at: float
    impact: dict[str, Any]
    ended_at: float | None = None
    outcome: str = ""

    @property
    def what(self) -> str:
        """`shutdown farm-oms-1, drain kv-a`."""
        return ", ".join(f"{a.kind} {a.node}" for a in self.actions)

    def to_json(self) -> dict[str, Any]:
        """The maneuver as the API shows it."""
        return {
            "id": self.id,
            "by": self.by,
            "reason": self.reason,
            "actions": [{"action": a.kind, "node": a.node} for a in self.actions],
            "verdict": str(self.verdict),
            "forced": self.forced,
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "impact": self.impact,
        }


_COLUMNS = (
    "id, requested_by, reason, actions, impact, verdict, forced, state, started_at, ended_at,"
    " outcome"
)


class Maneuvers:
    """Maneuvers kept in the state store, judged on the live state."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(
        self,
        live: LiveState | LiveView,
        actions: Sequence[Action],
        *,
        by: str,
        reason: str,
        force: bool,
        at: float,
    ) -> tuple[Maneuver, Notification]:
        """Judge `actions` on live state and record the maneuver: refused
        when a critical node would go down (unless `force`, which needs a
        reason), running otherwise. Returns it with its announcement (a
        notice)."""
        if not actions:
            raise ManeuverError("name at least one action: shutdown, drain or restart NODE")
        if not by.strip():
            raise ManeuverError("say who does it (by)")
        if force and not reason.strip():
            raise ManeuverError("a forced maneuver needs a reason")
        impact = live.what_if(actions)
        refused = impact.verdict == Verdict.CRITICAL and not force
        state = "refused" if refused else "running"
        with self.store.transaction("cannot record a maneuver") as tx:
            [(ident,)] = tx.execute(
                f"INSERT INTO maneuvers ({_COLUMNS.removeprefix('id, ')})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, '') RETURNING id",
                (
                    by,
                    reason,
                    json.dumps([[a.kind, a.node] for a in actions]),
                    json.dumps(impact.to_json()),
                    str(impact.verdict),
                    int(force),
                    state,
                    at,
                ),
            ).rows
        maneuver = self.get(int(ident))
        return maneuver, _announce(maneuver, impact, at)

    def end(
        self, live: LiveState | LiveView, ident: int, at: float
    ) -> tuple[Maneuver, Notification]:
        """End a running maneuver: check that every node it impacted is up
        again; the announcement (a notice) says which are not."""
        maneuver = self.get(ident)
        if maneuver.state != "running":
            raise ManeuverError(f"maneuver {ident} is {maneuver.state}, not running", status=409)
        impacted = [i["node"] for i in maneuver.impact.get("impacted", [])]
        states = live.states
        still = sorted(n for n in impacted if n in states and states[n] >= State.DEGRADED)
        outcome = "recovered" if not still else f"not recovered: {', '.join(still)}"
        with self.store.transaction("cannot end a maneuver") as tx:
            tx.execute(
                "UPDATE maneuvers SET state = 'ended', ended_at = ?, outcome = ? WHERE id = ?",
                (at, outcome, ident),
            )
        ended = self.get(ident)
        critical_still = [n for n in still if live.topology.node(n).critical]
        severity: Severity = "critical" if critical_still else ("warning" if still else "info")
        alert = Alert(
            key=f"maneuver:{ident}",
            kind="maneuver",
            severity=severity,
            root_cause=tuple(a.node for a in ended.actions),
            summary=f"maneuver {ident} by {ended.by} ({ended.what}) ended: {outcome}",
            started_at=ended.started_at,
        )
        return ended, Notification(f"maneuver:{ident}:end", alert, "notice", at)

    def watched(self) -> frozenset[str]:
        """The critical nodes that running maneuvers impact: watched closely
        until the maneuvers end."""
        rows = self.store.query(
            "cannot read maneuvers", "SELECT impact FROM maneuvers WHERE state = 'running'"
        )
        return frozenset(
            i["node"]
            for (impact,) in rows
            for i in json.loads(impact).get("impacted", [])
            if i.get("critical")
        )

    def get(self, ident: int) -> Maneuver:
        """The maneuver `ident`; `ManeuverError` when there is none."""
        rows = self.store.query(
            "cannot read maneuvers", f"SELECT {_COLUMNS} FROM maneuvers WHERE id = ?", (ident,)
        )
        if not rows:
            raise ManeuverError(f"no maneuver {ident}", status=404)
        return _maneuver(rows[0])

    def recent(self, limit: int = 100) -> list[Maneuver]:
        """The latest maneuvers, newest first."""
        rows = self.store.query(
            "cannot read maneuvers",
            f"SELECT {_COLUMNS} FROM maneuvers ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_maneuver(row) for row in rows]


def _maneuver(row: Sequence[Any]) -> Maneuver:
    ident, by, reason, actions, impact, verdict, forced, state, started, ended, outcome = row
    return Maneuver(
        id=ident,
        by=by,
        reason=reason,
        actions=tuple(Action(kind, node) for kind, node in json.loads(actions)),
        verdict=Verdict[verdict.upper()],
        forced=bool(forced),
        state=state,
        started_at=started,
        impact=json.loads(impact),
        ended_at=ended,
        outcome=outcome,
    )


def _announce(maneuver: Maneuver, impact: Impact, at: float) -> Notification:
    """The notice that a maneuver was refused, forced or started: who asked
    for what, and what it does to critical nodes (takes down, degrades,
    leaves without a spare), as blast-radius says it."""
    critical = tuple(
        Impacted(i.node, i.after, i.recovery_target_s, at) for i in impact.impacted if i.critical
    )
    down = [i.node for i in critical if i.state == State.DOWN]
    degraded = [i.node for i in critical if i.state == State.DEGRADED]
    spare = [
        i.node
        for i in impact.impacted
        if i.critical and i.no_spare and i.after not in (State.DOWN, State.DEGRADED)
    ]
    effects = [
        phrase
        for names, phrase in (
            (down, f"takes critical {', '.join(down)} down"),
            (degraded, f"degrades critical {', '.join(degraded)}"),
            (spare, f"leaves critical {', '.join(spare)} without a spare"),
        )
        if names
    ]
    effect = " and ".join(effects) or f"verdict {impact.verdict}"
    reason = f" ({maneuver.reason})" if maneuver.reason else ""
    if maneuver.state == "refused":
        summary = f"{maneuver.by} tried to {maneuver.what}{reason}: refused, it {effect}"
        severity: Severity = "warning"
    elif maneuver.forced:
        summary = f"{maneuver.by} forced {maneuver.what}{reason}: it {effect}"
        severity = "critical" if down else "warning"
    else:
        summary = f"{maneuver.by} started {maneuver.what}{reason}: {effect}"
        severity = "warning" if critical else "info"
    alert = Alert(
        key=f"maneuver:{maneuver.id}",
        kind="maneuver",
        severity=severity,
        root_cause=tuple(a.node for a in maneuver.actions),
        summary=summary,
        started_at=at,
        critical=critical,
        collateral=tuple(i.node for i in impact.impacted if not i.critical),
    )
    return Notification(f"maneuver:{maneuver.id}:{maneuver.state}", alert, "notice", at)
