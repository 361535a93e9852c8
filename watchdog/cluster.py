"""Replicas of one estate (`cluster:` in the file): who holds the lease,
which replicas are alive, which probes are whose, and the observations the
replicas share. Synchronous, like the store: the lease is renewed by a
thread of its own on a connection of its own (`Heartbeat` turning a
`Coordinator`), and the observations are exchanged on another, so that
neither a busy event loop nor a farm's thousands of history writes queued
on the store's thread delay a renewal.

The rules, in short (README "High availability"):

- every replica probes (all the probes, or its share with `shards: auto`),
  evaluates the whole estate, serves the API and posts to Alertmanager;
- the lease's holder alone records incidents and transitions, saves the
  alert state and delivers the shared outbox (Slack, webhooks, console);
- a replica that cannot reach the store for longer than the lease delivers
  the alerts about critical nodes itself, and probes everything.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.transitions import Transition
from topology import State
from watchdog.lease import Lease, Members
from watchdog.store import Fence, Store, StoreError

__all__ = [
    "LEASE",
    "Coordinator",
    "Heartbeat",
    "Observation",
    "Observations",
    "Standing",
    "owner",
    "reconcile_incidents",
    "shard",
]

# The one lease of an estate: what only one replica at a time may do.
LEASE = "holder"


def _weight(member: str, key: str) -> bytes:
    return hashlib.blake2b(f"{member}\0{key}".encode(), digest_size=8).digest()


def owner(key: str, members: Sequence[str]) -> str:
    """The member that runs the probe `key`: rendezvous hashing, so that a
    member joining or leaving moves only the probes it takes or had."""
    if not members:
        raise ValueError("no member to own a probe")
    return max(members, key=lambda member: _weight(member, key))


def shard(keys: Iterable[str], members: Sequence[str], me: str) -> frozenset[str]:
    """The probes among `keys` that `me` runs, given the live `members`
    (`me` is counted among them even if its heartbeat is not seen yet)."""
    everyone = sorted({*members, me})
    return frozenset(key for key in keys if owner(key, everyone) == me)


@dataclass(frozen=True, slots=True)
class Standing:
    """A replica's place after one turn: the lease's epoch if it holds the
    lease (None if another does), and the replicas alive, by name."""

    epoch: int | None
    members: tuple[str, ...]


class Coordinator:
    """Renews (or takes) the lease and beats the heart of one replica, on a
    store of its own."""

    def __init__(self, store: Store, me: str, lease_s: float) -> None:
        self.store = store
        self.me = me
        self.lease_s = lease_s
        self.lease = Lease(store, LEASE, me, lease_s)
        self.members = Members(store, me)

    def turn(self) -> Standing:
        """One renewal: take or keep the lease, say this replica is alive,
        read who else is. `StoreError` when the store cannot answer."""
        epoch = self.lease.acquire()
        self.members.beat()
        # Alive: heard from within half a lease, with beats every quarter:
        # a dead replica's probes move within one lease.
        return Standing(epoch, tuple(self.members.alive(self.lease_s / 2)))

    def release(self, epoch: int) -> bool:
        """Give the lease up (a clean stop): the next holder need not wait."""
        return self.lease.release(epoch)


class Heartbeat:
    """`Coordinator.turn` every `period_s` on a thread of its own, each
    outcome (a `Standing`, or the `StoreError` that stopped it) given to
    `turned` with the monotonic time the turn began. Not on the daemon's
    loop: a loop busy with thousands of probes, or a store thread busy with
    a farm's history, must not make a live replica look dead to the others
    (who would take its probes, and then be busy too)."""

    def __init__(
        self,
        coordinator: Coordinator,
        period_s: float,
        turned: Callable[[Standing | StoreError, float], None],
    ) -> None:
        self.coordinator = coordinator
        self.period_s = period_s
        self._turned = turned
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog-lease", daemon=True)

    def start(self) -> None:
        """The first turn at once, then one every `period_s`."""
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """No turn after this one; wait at most `timeout_s` for it to end."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            outcome: Standing | StoreError
            try:
                outcome = self.coordinator.turn()
            except StoreError as err:
                outcome = err
            if self._stop.is_set():
                return
            self._turned(outcome, began)
            # On the period's grid: a slow turn does not push the next ones.
            self._stop.wait(max(0.0, began + self.period_s - time.monotonic()))


@dataclass(frozen=True, slots=True)
class Observation:
    """A probe's last result as the replica that ran it judged it."""

    probe: str
    verdict: State
    state: State
    reason: str
    latency_s: float | None
    at: float
    tls_expires_at: float | None = None


_COLUMNS = "probe, verdict, state, reason, latency_s, at, tls_expires_at"


class Observations:
    """The shared observations of sharded probes: each replica writes the
    results of the probes it runs and reads those of the others, only
    what is new since it last read (each replica numbers its writes)."""

    def __init__(self, store: Store, me: str) -> None:
        self.store = store
        self.me = me
        self._seq: int | None = None
        self._read: dict[str, int] = {}

    def write(self, observations: Sequence[Observation]) -> None:
        """Keep `observations` as the last results of their probes, run here."""
        if not observations:
            return
        if self._seq is None:
            # Past every number yet written, by anyone: rows this replica
            # wrote before a restart may have been taken over since (their
            # probes moved), and its readers must see its new writes.
            rows = self.store.query(
                "cannot read the observations", "SELECT max(seq) FROM observations"
            )
            self._seq = int(rows[0][0] or 0) if rows else 0
        first = self._seq + 1
        rows_out = [
            (
                o.probe,
                self.me,
                first + i,
                str(o.verdict),
                str(o.state),
                o.reason,
                o.latency_s,
                o.at,
                o.tls_expires_at,
            )
            for i, o in enumerate(observations)
        ]
        with self.store.transaction("cannot write the observations") as tx:
            tx.executemany(
                "INSERT INTO observations (probe, replica, seq, verdict, state, reason,"
                " latency_s, at, tls_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (probe) DO UPDATE SET replica = excluded.replica,"
                " seq = excluded.seq, verdict = excluded.verdict, state = excluded.state,"
                " reason = excluded.reason, latency_s = excluded.latency_s,"
                " at = excluded.at, tls_expires_at = excluded.tls_expires_at",
                rows_out,
            )
        self._seq = first + len(observations) - 1

    def read(self, members: Collection[str]) -> list[Observation]:
        """What the other replicas wrote since the last read: everything on
        the first read, then only the new writes of `members` (a replica
        that is not alive writes nothing)."""
        found: list[Any] = []
        if not self._read:
            rows = self.store.query(
                "cannot read the observations",
                f"SELECT replica, seq, {_COLUMNS} FROM observations WHERE replica <> ?",
                (self.me,),
            )
            found.extend(rows)
            for member in members:
                self._read.setdefault(member, 0)
        else:
            for member in sorted(set(members) - {self.me}):
                rows = self.store.query(
                    "cannot read the observations",
                    f"SELECT replica, seq, {_COLUMNS} FROM observations"
                    " WHERE replica = ? AND seq > ? ORDER BY seq",
                    (member, self._read.get(member, 0)),
                )
                found.extend(rows)
        out = []
        for replica, seq, probe, verdict, state, reason, latency, at, tls in found:
            self._read[replica] = max(self._read.get(replica, 0), int(seq))
            out.append(
                Observation(
                    probe,
                    State.parse(verdict),
                    State.parse(state),
                    reason,
                    None if latency is None else float(latency),
                    float(at),
                    None if tls is None else float(tls),
                )
            )
        return out


def reconcile_incidents(
    store: Store,
    states: Mapping[str, tuple[State, float, tuple[str, ...]]],
    *,
    recovery_targets: Mapping[str, float],
    at: float,
    fence: Fence | None,
) -> tuple[int, int]:
    """Bring the stored incidents in line with the live `states` (node ->
    effective state, since when, root cause) of a replica that has just
    taken the lease: what failed while no holder recorded opens an incident
    from when it failed, what recovered meanwhile ends. Unknown changes
    nothing (no data is not a recovery). Returns (opened, ended). Each
    write checks `fence` in its own transaction."""
    opened = {i.node for i in store.open_incidents()}
    ended = [n for n in opened if n in states and states[n][0] == State.UP]
    failing = [
        Transition(node, "effective", State.UP, state, since, causes)
        for node, (state, since, causes) in sorted(states.items())
        if state >= State.DEGRADED and node not in opened
    ]
    if failing:
        store.record(failing, recovery_targets=recovery_targets, fence=fence)
    if ended:
        store.end_incidents(ended, at, fence=fence)
    return len(failing), len(ended)
