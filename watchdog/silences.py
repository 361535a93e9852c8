"""Silences: alerts muted for a while, by node or by label, each with an
expiry, a creator and a reason. A silence on a node that critical nodes
need is refused unless forced, and every silence is announced, when it is
added and when it ends (by hand, or when its time runs out), with a
notice (`event="notice"`); and an alert that names a critical node taken
down is never muted (folding is not hiding, and neither is silencing).

The stored concern's interface (what `Silences` reads and writes in the
store): `add`, `expire`, `ended`, `get`, `active` (`muting` reads `active`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from alerts.model import Alert, Notification, Severity
from topology import Action, Topology, Verdict, format_duration, what_if
from watchdog.live import LiveState, LiveView
from watchdog.refusal import Refused
from watchdog.store import Store

__all__ = ["Silence", "SilenceError", "Silences"]


class SilenceError(Refused):
    """A silence request that cannot be taken."""


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes the alerts whose root causes all match it, until `expires_at`."""

    id: int
    node: str | None
    label: tuple[str, str] | None
    by: str
    reason: str
    forced: bool
    created_at: float
    expires_at: float

    @property
    def matcher(self) -> str:
        """`node farm-oms-1` or `label team=orders`."""
        if self.node is not None:
            return f"node {self.node}"
        assert self.label is not None
        return f"label {self.label[0]}={self.label[1]}"

    def matches(self, node: str, labels: Mapping[str, str]) -> bool:
        """Whether it covers `node` (with its labels)."""
        return _covers(self.node, self.label, node, labels)

    def to_json(self) -> dict[str, Any]:
        """The silence as the API shows it."""
        return {
            "id": self.id,
            "node": self.node,
            "label": f"{self.label[0]}={self.label[1]}" if self.label else None,
            "by": self.by,
            "reason": self.reason,
            "forced": self.forced,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


_COLUMNS = "id, node, label_key, label_value, created_by, reason, forced, created_at, expires_at"


class Silences:
    """Silences kept in the state store.

    `ended` tells which silences ran out since it was last asked; the first
    call looks back to `since` (when given), else it only starts the count.
    """

    def __init__(self, store: Store, *, since: float | None = None) -> None:
        self.store = store
        self._ended_since = since
        # Silences ended by hand and announced then, by id, with their end:
        # `ended` does not announce them again.
        self._told: dict[int, float] = {}
        # When the next silence in force runs out, as far as this object
        # knows (None: to be read): `ended` reads the store only then, so
        # an alert round does not wait for the store each second.
        self._next_end: float | None = None

    def add(
        self,
        live: LiveState | LiveView,
        *,
        node: str | None,
        label: tuple[str, str] | None,
        duration_s: float,
        by: str,
        reason: str,
        force: bool,
        at: float,
    ) -> tuple[Silence, Notification]:
        """Record a silence and its announcement. Refused (SilenceError)
        when it would cover a node that critical nodes need, unless forced."""
        if (node is None) == (label is None):
            raise SilenceError("silence either a node or a label (key=value)")
        if node is not None and node not in live.topology:
            raise SilenceError(f"unknown node {node!r}")
        if duration_s <= 0:
            raise SilenceError("a silence needs a duration (for), e.g. 2h")
        if not by.strip() or not reason.strip():
            raise SilenceError("say who silences (by) and why (reason)")
        covered = [
            name for name, n in live.topology.nodes.items() if _covers(node, label, name, n.labels)
        ]
        if not covered:
            assert label is not None  # a node silenced covers itself
            # A typo would otherwise silence nothing, and look as if it did.
            raise SilenceError(f"label {label[0]}={label[1]} matches no node")
        needed = _needed_by_critical(live.topology, covered)
        if needed and not force:
            raise SilenceError(
                f"{', '.join(needed)} {'is' if len(needed) == 1 else 'are'} needed by critical "
                'nodes: a silence there would hide their outage; --force ("force": true) '
                "to silence anyway",
                status=409,
            )
        with self.store.transaction("cannot record a silence") as tx:
            [(created,)] = tx.execute(
                f"INSERT INTO silences ({_COLUMNS.removeprefix('id, ')})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    node,
                    label[0] if label else None,
                    label[1] if label else None,
                    by,
                    reason,
                    int(force),
                    at,
                    at + duration_s,
                ),
            ).rows
        ident = int(created)
        silence = self.get(ident)
        if self._next_end is not None:
            self._next_end = min(self._next_end, silence.expires_at)
        severity: Severity = "warning" if needed else "info"
        forced = " (forced: critical nodes need it)" if needed else ""
        summary = (
            f"{by} silenced {silence.matcher} for {format_duration(duration_s)}{forced}: {reason}"
        )
        alert = _notice(silence, summary, at, severity=severity, root_cause=tuple(covered))
        return silence, Notification(f"silence:{ident}:added", alert, "notice", at)

    def expire(self, ident: int, at: float) -> tuple[Silence, Notification | None]:
        """End a silence now; return it as it is now ended, with the notice
        that it ended by hand (None when it had already ended: nothing
        changes, nothing is said)."""
        silence = self.get(ident)
        if silence.expires_at <= at:
            return silence, None
        with self.store.transaction("cannot expire a silence") as tx:
            # Only ever earlier: one that ran out meanwhile keeps its end.
            tx.execute(
                "UPDATE silences SET expires_at = ? WHERE id = ? AND expires_at > ?",
                (at, ident, at),
            )
        ended = dataclasses.replace(silence, expires_at=at)
        self._told[ident] = at
        lasted = format_duration(at - silence.created_at)
        summary = f"{_named(ended)} ended by hand after {lasted}; its alerts are heard again"
        return ended, Notification(
            f"silence:{ident}:ended", _notice(ended, summary, at), "notice", at
        )

    def ended(self, now: float) -> list[tuple[Silence, Notification]]:
        """The silences whose time ran out since the last call (up to `now`),
        each with the notice that says so, oldest first. Those ended by hand
        were announced by `expire` and are left out. Call it on every alert
        round: a silence that runs out is announced within a round."""
        since = self._ended_since if self._ended_since is not None else now
        if self._next_end is not None and now < self._next_end:
            self._ended_since = max(since, now)
            return []  # nothing runs out before then
        self._ended_since = max(since, now)
        if now <= since:
            return []
        later = self.store.query(
            "cannot read silences",
            "SELECT min(expires_at) FROM silences WHERE expires_at > ?",
            (now,),
        )
        self._next_end = later[0][0] if later and later[0][0] is not None else float("inf")
        rows = self.store.query(
            "cannot read silences",
            f"SELECT {_COLUMNS} FROM silences WHERE expires_at > ? AND expires_at <= ?"
            " ORDER BY expires_at, id",
            (since, now),
        )
        out = []
        for silence in map(_silence, rows):
            if silence.id in self._told:
                continue
            lasted = format_duration(silence.expires_at - silence.created_at)
            summary = f"{_named(silence)} ran out after {lasted}; its alerts are heard again"
            alert = _notice(silence, summary, silence.expires_at)
            out.append((silence, Notification(f"silence:{silence.id}:ended", alert, "notice", now)))
        self._told = {i: end for i, end in self._told.items() if end > now}
        return out

    def get(self, ident: int) -> Silence:
        """The silence `ident`; `SilenceError` when there is none."""
        rows = self.store.query(
            "cannot read silences", f"SELECT {_COLUMNS} FROM silences WHERE id = ?", (ident,)
        )
        if not rows:
            raise SilenceError(f"no silence {ident}", status=404)
        return _silence(rows[0])

    def active(self, now: float) -> list[Silence]:
        """The silences in force at `now`."""
        rows = self.store.query(
            "cannot read silences",
            f"SELECT {_COLUMNS} FROM silences WHERE expires_at > ? ORDER BY id",
            (now,),
        )
        return [_silence(row) for row in rows]

    def muting(
        self,
        alert: Alert,
        topology: Topology,
        now: float,
        active: Sequence[Silence] | None = None,
    ) -> Silence | None:
        """The silence that mutes `alert`, if any: every root cause covered,
        and no critical node taken down named in it. `active`: the silences
        in force at `now`, when the caller has read them for many alerts."""
        if alert.critical or not alert.root_cause or alert.kind != "outage":
            return None
        for silence in self.active(now) if active is None else active:
            if all(
                name in topology and silence.matches(name, topology.node(name).labels)
                for name in alert.root_cause
            ):
                return silence
        return None


def _named(silence: Silence) -> str:
    """`silence 3 (node farm, by bob: rack move)`."""
    return f"silence {silence.id} ({silence.matcher}, by {silence.by}: {silence.reason})"


def _notice(
    silence: Silence,
    summary: str,
    at: float,
    *,
    severity: Severity = "info",
    root_cause: tuple[str, ...] | None = None,
) -> Alert:
    """The alert a notice about `silence` carries: key `silence:ID`, kind
    `maneuver` (routes that take maneuvers take silences), the label it
    silences as its label, so that a route on that label hears of it."""
    if root_cause is None:
        root_cause = (silence.node,) if silence.node is not None else ()
    return Alert(
        key=f"silence:{silence.id}",
        kind="maneuver",
        severity=severity,
        root_cause=root_cause,
        summary=summary,
        started_at=at,
        labels=MappingProxyType(dict([silence.label]) if silence.label else {}),
    )


def _covers(
    node: str | None, label: tuple[str, str] | None, name: str, labels: Mapping[str, str]
) -> bool:
    """Whether a silence of `node` or of `label` covers the node `name`."""
    if node is not None:
        return name == node
    return label is not None and labels.get(label[0]) == label[1]


def _needed_by_critical(topology: Topology, nodes: list[str]) -> list[str]:
    """The nodes among `nodes` whose loss alone would take a critical node
    down or degrade it (the nodes critical ones need)."""
    return sorted(
        n for n in nodes if what_if(topology, {}, [Action("shutdown", n)]).verdict > Verdict.OK
    )


def _silence(row: Any) -> Silence:
    ident, node, key, value, by, reason, forced, created, expires = row
    return Silence(
        id=ident,
        node=node,
        label=(key, value) if key is not None else None,
        by=by,
        reason=reason,
        forced=bool(forced),
        created_at=created,
        expires_at=expires,
    )
