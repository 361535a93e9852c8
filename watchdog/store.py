"""The state store: transitions and incidents, so that a restart, even
`kill -9`, loses no history and resumes the incidents still open.

In SQLite by default (`state.path`: one daemon, one file), or in Postgres
(`state.url`); `watchdog.db` hides which, and the SQL here and in the modules
that keep tables of their own in the store (outbox, probe state, maneuvers,
silences, alert state) is written once for both.

Synchronous and fast (one short transaction per `record`): the asyncio daemon
never calls it on its loop, but through `watchdog.stored` (every call on the
store's one worker thread, in order). A
`Store` is safe to use from any thread, one call at a time (a lock serialises
calls); several processes may open the same store (the CLI reading while the
daemon writes), which SQLite's WAL mode and busy timeout allow, and
Postgres does anyway.

The incidents-and-transitions concern's interface (what any other keeper
of it must offer): `record`, `end_incidents`, `open_incidents`,
`incidents`, `transitions`, `summary` (worked out from `incidents`),
`close`. `transaction` and `query` are for the modules that keep their
tables here.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from alerts.transitions import Transition
from topology import State
from watchdog.db import Database, DatabaseError, Transaction, open_database
from watchdog.db import sqlite as _sqlite

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "POSTGRES_MIGRATIONS",
    "Incident",
    "NodeSummary",
    "Store",
    "StoreError",
    "check_state_file",
]

# Marks an SQLite file as ours ("WDOG"): see watchdog.db.sqlite.
APPLICATION_ID: Final = _sqlite.APPLICATION_ID

# Schema migrations, oldest first: step i takes the schema from version i to
# i + 1 in one transaction of its own. Only ever append, to both lists, so
# that a version means the same tables in both; a released step is never
# edited. (Step 1 of SQLite used to set the file's application id itself;
# the SQLite backend now does, in the same transaction.)
#
# SQLite (its version in `PRAGMA user_version`).
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL CHECK (ended_at IS NULL OR ended_at >= started_at),
            worst TEXT NOT NULL CHECK (worst IN ('degraded', 'down')),
            root_cause TEXT NOT NULL,
            recovery_target_s REAL NOT NULL CHECK (recovery_target_s >= 0)
        )
        """,
        # At most one open incident per node, whatever the code does.
        "CREATE UNIQUE INDEX incidents_open ON incidents (node) WHERE ended_at IS NULL",
        "CREATE INDEX incidents_node_started ON incidents (node, started_at)",
        "CREATE INDEX incidents_ended ON incidents (ended_at)",
        """
        CREATE TABLE transitions (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL,
            view TEXT NOT NULL CHECK (view IN ('observed', 'effective')),
            old TEXT NOT NULL CHECK (old IN ('up', 'unknown', 'degraded', 'down')),
            new TEXT NOT NULL CHECK (new IN ('up', 'unknown', 'degraded', 'down')),
            at REAL NOT NULL,
            root_cause TEXT NOT NULL,
            reason TEXT NOT NULL,
            incident_id INTEGER REFERENCES incidents (id),
            recorded_at REAL NOT NULL
        )
        """,
        "CREATE INDEX transitions_at ON transitions (at)",
        "CREATE INDEX transitions_node_at ON transitions (node, at)",
        "CREATE INDEX transitions_incident ON transitions (incident_id)",
    ),
    (
        # The durable outbox (watchdog/outbox.py): a notification is written
        # for each sink before it is sent, and delivered once per sink.
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            notification_id TEXT NOT NULL,
            occurrence TEXT NOT NULL,
            sink TEXT NOT NULL,
            notification TEXT NOT NULL,
            created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            receipt TEXT,
            finished_at REAL,
            UNIQUE (notification_id, sink)
        )
        """,
        "CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending'",
        "CREATE INDEX outbox_occurrence ON outbox (occurrence, sink, id)",
    ),
    (
        # Maneuvers (watchdog/maneuvers.py): who asked for what, the impact
        # it had on live state when asked, and how it ended.
        """
        CREATE TABLE maneuvers (
            id INTEGER PRIMARY KEY,
            requested_by TEXT NOT NULL,
            reason TEXT NOT NULL,
            actions TEXT NOT NULL,
            impact TEXT NOT NULL,
            verdict TEXT NOT NULL,
            forced INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('refused', 'running', 'ended')),
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT NOT NULL DEFAULT ''
        )
        """,
    ),
    (
        # Silences (watchdog/silences.py): by node or by label, with an
        # expiry, a creator and a reason.
        """
        CREATE TABLE silences (
            id INTEGER PRIMARY KEY,
            node TEXT,
            label_key TEXT,
            label_value TEXT,
            created_by TEXT NOT NULL,
            reason TEXT NOT NULL,
            forced INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            CHECK ((node IS NULL) != (label_key IS NULL))
        )
        """,
        "CREATE INDEX silences_expires ON silences (expires_at)",
    ),
    (
        # What probes learned and must not relearn after a restart
        # (watchdog/probe_state.py): log offsets, anomaly baselines, Drain
        # templates, latency baselines; by probe and part.
        """
        CREATE TABLE probe_state (
            probe TEXT NOT NULL,
            part TEXT NOT NULL,
            data BLOB NOT NULL,
            saved_at REAL NOT NULL,
            PRIMARY KEY (probe, part)
        )
        """,
    ),
    (
        # The alerts that have spoken (watchdog/alert_state.py), so that a
        # restarted daemon resolves what recovered while it was down, once.
        """
        CREATE TABLE alerts (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            saved_at REAL NOT NULL
        )
        """,
        # Each sink's worker reads its own due entries; the counts per sink
        # and state (metrics, API) need not read the delivered history.
        "CREATE INDEX outbox_pending_sink ON outbox (sink, next_attempt_at)"
        " WHERE state = 'pending'",
        "CREATE INDEX outbox_sink_state ON outbox (sink, state)",
    ),
    (
        # Leases (watchdog/lease.py): who does what only one replica may do,
        # until when by the database's clock, and the epoch that fences a
        # holder that lost it; and the replicas heard from lately.
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            expires_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE members (
            replica TEXT PRIMARY KEY,
            seen_at REAL NOT NULL
        )
        """,
    ),
    (
        # Sharded probes: the last result of each probe, written by the
        # replica that ran it and read by the others. `seq` grows with each
        # write of one replica, so the others read only what is new.
        """
        CREATE TABLE observations (
            probe TEXT PRIMARY KEY,
            replica TEXT NOT NULL,
            seq INTEGER NOT NULL,
            verdict TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            latency_s REAL,
            at REAL NOT NULL,
            tls_expires_at REAL
        )
        """,
        "CREATE INDEX observations_by_replica ON observations (replica, seq)",
    ),
)

# Postgres (its version in the table `watchdog_schema`), step for step the
# same tables, columns, constraints and indexes as SQLite's. Times are
# DOUBLE PRECISION (REAL is 4 bytes there: it would round a timestamp to
# minutes), ids identity BIGINTs, bytes BYTEA.
_ID = "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
POSTGRES_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        f"""
        CREATE TABLE incidents (
            {_ID},
            node TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            ended_at DOUBLE PRECISION CHECK (ended_at IS NULL OR ended_at >= started_at),
            worst TEXT NOT NULL CHECK (worst IN ('degraded', 'down')),
            root_cause TEXT NOT NULL,
            recovery_target_s DOUBLE PRECISION NOT NULL CHECK (recovery_target_s >= 0)
        )
        """,
        "CREATE UNIQUE INDEX incidents_open ON incidents (node) WHERE ended_at IS NULL",
        "CREATE INDEX incidents_node_started ON incidents (node, started_at)",
        "CREATE INDEX incidents_ended ON incidents (ended_at)",
        f"""
        CREATE TABLE transitions (
            {_ID},
            node TEXT NOT NULL,
            view TEXT NOT NULL CHECK (view IN ('observed', 'effective')),
            old TEXT NOT NULL CHECK (old IN ('up', 'unknown', 'degraded', 'down')),
            new TEXT NOT NULL CHECK (new IN ('up', 'unknown', 'degraded', 'down')),
            at DOUBLE PRECISION NOT NULL,
            root_cause TEXT NOT NULL,
            reason TEXT NOT NULL,
            incident_id BIGINT REFERENCES incidents (id),
            recorded_at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX transitions_at ON transitions (at)",
        "CREATE INDEX transitions_node_at ON transitions (node, at)",
        "CREATE INDEX transitions_incident ON transitions (incident_id)",
    ),
    (
        f"""
        CREATE TABLE outbox (
            {_ID},
            notification_id TEXT NOT NULL,
            occurrence TEXT NOT NULL,
            sink TEXT NOT NULL,
            notification TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            receipt TEXT,
            finished_at DOUBLE PRECISION,
            UNIQUE (notification_id, sink)
        )
        """,
        "CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending'",
        "CREATE INDEX outbox_occurrence ON outbox (occurrence, sink, id)",
    ),
    (
        f"""
        CREATE TABLE maneuvers (
            {_ID},
            requested_by TEXT NOT NULL,
            reason TEXT NOT NULL,
            actions TEXT NOT NULL,
            impact TEXT NOT NULL,
            verdict TEXT NOT NULL,
            forced INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('refused', 'running', 'ended')),
            started_at DOUBLE PRECISION NOT NULL,
            ended_at DOUBLE PRECISION,
            outcome TEXT NOT NULL DEFAULT ''
        )
        """,
    ),
    (
        f"""
        CREATE TABLE silences (
            {_ID},
            node TEXT,
            label_key TEXT,
            label_value TEXT,
            created_by TEXT NOT NULL,
            reason TEXT NOT NULL,
            forced INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            CHECK ((node IS NULL) <> (label_key IS NULL))
        )
        """,
        "CREATE INDEX silences_expires ON silences (expires_at)",
    ),
    (
        """
        CREATE TABLE probe_state (
            probe TEXT NOT NULL,
            part TEXT NOT NULL,
            data BYTEA NOT NULL,
            saved_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (probe, part)
        )
        """,
    ),
    (
        """
        CREATE TABLE alerts (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            saved_at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX outbox_pending_sink ON outbox (sink, next_attempt_at)"
        " WHERE state = 'pending'",
        "CREATE INDEX outbox_sink_state ON outbox (sink, state)",
    ),
    (
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )
        """,
        """
        CREATE TABLE members (
            replica TEXT PRIMARY KEY,
            seen_at DOUBLE PRECISION NOT NULL
        )
        """,
    ),
    (
        """
        CREATE TABLE observations (
            probe TEXT PRIMARY KEY,
            replica TEXT NOT NULL,
            seq BIGINT NOT NULL,
            verdict TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            latency_s DOUBLE PRECISION,
            at DOUBLE PRECISION NOT NULL,
            tls_expires_at DOUBLE PRECISION
        )
        """,
        "CREATE INDEX observations_by_replica ON observations (replica, seq)",
    ),
)

_FAILED = (State.DEGRADED, State.DOWN)

# Columns named, never `*`, so a later migration that adds one breaks nothing.
_INCIDENT = "id, node, started_at, ended_at, worst, root_cause, recovery_target_s"
_TRANSITION = "node, view, old, new, at, root_cause, reason"


class StoreError(Exception):
    """The store cannot do what was asked; the message is for people."""


class LeaseLost(StoreError):
    """A write only the lease's holder may make was refused: the lease is
    no longer this replica's at this epoch (`watchdog.lease`)."""


# What a holder-only write calls in its transaction, before writing: raises
# `LeaseLost` unless this replica still holds the lease.
Fence = Callable[[Transaction], None]


@dataclass(frozen=True, slots=True)
class Incident:
    """A stretch of time during which a node's effective state was degraded
    or down, from `started_at` to `ended_at` (None while still open).

    `worst` is the worst state reached, `root_cause` every node named as a
    cause during the incident (first seen first), `recovery_target_s` the
    node's target when the incident opened.
    """

    id: int
    node: str
    started_at: float
    ended_at: float | None
    worst: State
    root_cause: tuple[str, ...]
    recovery_target_s: float

    def duration_s(self, now: float) -> float:
        """Seconds from start to end, or to `now` while the incident is open."""
        end = now if self.ended_at is None else self.ended_at
        return max(0.0, end - self.started_at)

    def breached(self, now: float) -> bool:
        """True when the incident lasted (or, open, has lasted by `now`)
        longer than the node's recovery target."""
        return self.duration_s(now) > self.recovery_target_s

    def to_json(self, now: float) -> dict[str, Any]:
        """The incident as the API and `watchdog incidents` show it."""
        return {
            "id": self.id,
            "node": self.node,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s(now),
            "worst": str(self.worst),
            "root_cause": list(self.root_cause),
            "recovery_target_s": self.recovery_target_s,
            "breached": self.breached(now),
        }


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """A node's incidents over a window: how many, the downtime inside the
    window, the mean time to recover of the closed ones (None when none
    closed), how many breached the recovery target, and whether they recur."""

    node: str
    incidents: int
    downtime_s: float
    mttr_s: float | None
    breaches: int
    recurring: bool


class Store:
    """Transitions and incidents of one estate, in one SQLite file or one
    Postgres database.

    Build it with `Store.open`; close it with `close()` or a `with` block.
    """

    __slots__ = ("_clock", "_database", "_lock", "path")

    def __init__(self, database: Database, *, clock: Callable[[], float]) -> None:
        self.path = database.name
        self._database: Database | None = database
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        location: str | Path,
        *,
        clock: Callable[[], float],
        password: str | None = None,
        create: bool = True,
    ) -> Store:
        """Open and migrate the store at `location`: an SQLite file (created
        if needed), `":memory:"`, or a `postgresql://` URL, whose password
        comes apart in `password` (never in the URL). `clock` gives seconds
        since the epoch and stamps when each transition was recorded. With
        `create` False, a store that does not exist yet (no file, a database
        without the watchdog's tables) is refused instead of created.

        Raises `StoreError` when the store cannot be opened or reached, is
        not one (a file that is not an SQLite database, a corrupt one), belongs
        to another application, has a newer schema than this build reads, or
        names Postgres without the `postgres` extra installed.

        An SQLite file it creates is readable by its owner alone (0600), and
        so are its -wal and -shm files; an existing file is checked first,
        read-only, and one of another application is refused untouched (see
        `watchdog.db.sqlite.connect`).
        """
        name = str(location)
        try:
            database = open_database(name, password=password, create=create)
        except DatabaseError as exc:
            raise StoreError(str(exc)) from exc
        steps = POSTGRES_MIGRATIONS if database.dialect == "postgres" else MIGRATIONS
        try:
            database.migrate(steps, create=create)
        except DatabaseError as exc:
            database.close()
            raise StoreError(str(exc)) from exc
        except BaseException:
            database.close()
            raise
        return cls(database, clock=clock)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgres`: for the few statements the two write
        differently (the database's own clock)."""
        return self._open_database().dialect

    def close(self) -> None:
        """Close the store; later calls raise `StoreError`. Idempotent."""
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def record(
        self,
        transitions: Sequence[Transition],
        *,
        recovery_targets: Mapping[str, float],
        fence: Fence | None = None,
    ) -> None:
        """Store `transitions`, in order, and keep incidents up to date, all in
        one transaction: once this returns, all of it survives a crash; if it
        raises, none of it was written.

        Effective transitions drive incidents; observed ones are stored only.
        A node's incident opens when its effective state becomes degraded or
        down and none is open, its worst state rises while open, and it closes
        when the effective state is up again (unknown keeps it open: no data
        is not a recovery). The store's own open incidents decide, not the
        transition's `old`: a restarted daemon whose states begin at unknown
        resumes the open incident instead of opening a second one.

        `recovery_targets` maps node names to their recovery target in
        seconds (the topology in force); it is read when an incident opens,
        and the incident keeps that target even if a reload changes it.
        `fence`, for a replica of several: only the lease's holder records.
        """
        if not transitions:
            self._open_database()  # a closed store still says so
            return  # no transaction, so no fsync, for an empty batch
        now = self._clock()
        with self.transaction("cannot record transitions") as tx:
            for transition in transitions:
                _check_time(transition)
                incident_id = None
                if transition.view == "effective":
                    incident_id = _track(tx, transition, recovery_targets)
                tx.execute(
                    "INSERT INTO transitions (node, view, old, new, at, root_cause, reason,"
                    " incident_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        transition.node,
                        transition.view,
                        str(transition.old),
                        str(transition.new),
                        transition.at,
                        json.dumps(list(transition.root_cause)),
                        transition.reason,
                        incident_id,
                        now,
                    ),
                )
            if fence is not None:
                fence(tx)  # last, just before the commit

    @contextmanager
    def transaction(self, doing: str) -> Iterator[Transaction]:
        """One write transaction under the store's lock, for the modules that
        keep tables of their own in the store (the outbox): all of it is
        written or none; errors come out as `StoreError` saying `doing`.
        Its statements are portable SQL with `?` placeholders."""
        with self._lock:
            database = self._open_database()
            with self._errors(doing), database.transaction() as tx:
                yield tx

    def query(self, doing: str, sql: str, parameters: Sequence[object] = ()) -> list[Any]:
        """The rows of one read (portable SQL, `?` placeholders), under the
        store's lock."""
        with self._lock:
            database = self._open_database()
            with self._errors(doing):
                return database.read(sql, parameters)

    def end_incidents(self, nodes: Iterable[str], at: float, *, fence: Fence | None = None) -> int:
        """End the open incidents of `nodes` at `at` (a reload removed them
        from the topology: nothing will ever report them up; a new lease
        holder saw them up); return how many were ended. `fence`: only
        while this replica holds the lease."""
        names = sorted(set(nodes))
        if not names:
            return 0
        with self.transaction("cannot end incidents") as tx:
            # Never before it started (a clock stepped back).
            ended = tx.executemany(
                "UPDATE incidents SET ended_at = CASE WHEN started_at > ? THEN started_at"
                " ELSE ? END WHERE node = ? AND ended_at IS NULL",
                [(at, at, name) for name in names],
            )
            if fence is not None:
                fence(tx)  # last, just before the commit
            return ended

    def open_incidents(self) -> list[Incident]:
        """Every incident still open, oldest first: what a restarted daemon
        resumes."""
        return self._incidents(
            f"SELECT {_INCIDENT} FROM incidents WHERE ended_at IS NULL ORDER BY started_at, id", ()
        )

    def incidents(self, since: float, node: str | None = None) -> list[Incident]:
        """The incidents (of `node`, or of every node) open at some time at or
        after `since`: those that ended since then and those still open, even
        when they started earlier. Oldest first."""
        if node is None:
            return self._incidents(
                f"SELECT {_INCIDENT} FROM incidents WHERE ended_at IS NULL OR ended_at >= ?"
                " ORDER BY started_at, id",
                (since,),
            )
        return self._incidents(
            f"SELECT {_INCIDENT} FROM incidents"
            " WHERE node = ? AND (ended_at IS NULL OR ended_at >= ?)"
            " ORDER BY started_at, id",
            (node, since),
        )

    def transitions(
        self, since: float, node: str | None = None, limit: int = 1000
    ) -> list[Transition]:
        """The latest `limit` transitions (of `node`, or of every node) at or
        after `since`, returned oldest first."""
        if limit < 1:
            raise StoreError(f"limit must be at least 1, got {limit}")
        where = "at >= ?" if node is None else "at >= ? AND node = ?"
        parameters: tuple[object, ...] = (since,) if node is None else (since, node)
        # The newest first to apply the limit, then put back in time order.
        # Only constant SQL is put together here; every value is a parameter.
        query = (
            f"SELECT {_TRANSITION} FROM (SELECT id, {_TRANSITION} FROM transitions"
            f" WHERE {where} ORDER BY at DESC, id DESC LIMIT ?) AS latest ORDER BY at, id"
        )
        rows = self.query("cannot read transitions", query, (*parameters, limit))
        return [_transition(row) for row in rows]

    def summary(self, since: float, now: float, recurring_at: int = 3) -> list[NodeSummary]:
        """Per node with incidents in the window from `since` to `now`: the
        count, the downtime inside the window, the mean time to recover of
        the closed incidents (whole durations), the recovery-target breaches
        (an open incident counts once it has outlived its target), and
        `recurring` when the count reaches `recurring_at`.

        Sorted by most incidents, then most downtime, then name: the pattern
        of small incidents whose root cause nobody chased comes first.
        """
        by_node: dict[str, list[Incident]] = {}
        for incident in self.incidents(since):
            if incident.started_at <= now:
                by_node.setdefault(incident.node, []).append(incident)
        summaries = []
        for node, incidents in by_node.items():
            closed = [i.duration_s(now) for i in incidents if i.ended_at is not None]
            # Downtime is clipped to the window; recovery times are not.
            downtime = sum(max(0.0, _end(i, now) - max(since, i.started_at)) for i in incidents)
            summaries.append(
                NodeSummary(
                    node=node,
                    incidents=len(incidents),
                    downtime_s=downtime,
                    mttr_s=sum(closed) / len(closed) if closed else None,
                    breaches=sum(1 for i in incidents if i.breached(now)),
                    recurring=len(incidents) >= recurring_at,
                )
            )
        summaries.sort(key=lambda s: (-s.incidents, -s.downtime_s, s.node))
        return summaries

    def _incidents(self, query: str, parameters: tuple[object, ...]) -> list[Incident]:
        return [_incident(row) for row in self.query("cannot read incidents", query, parameters)]

    def _open_database(self) -> Database:
        if self._database is None:
            raise StoreError(f"{self.path}: the state store is closed")
        return self._database

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        # A full disk, a lock held past the busy timeout, a file damaged
        # under us or a database server gone reach the caller as one error
        # type, with where the store is.
        try:
            yield
        except DatabaseError as exc:
            raise StoreError(f"{self.path}: {doing}: {exc}") from exc


def check_state_file(path: str) -> None:
    """Raise `StoreError` unless the file at `path` may become or already
    is a watchdog state file (see `watchdog.db.sqlite.check_state_file`):
    absent or empty, or an SQLite database that is the watchdog's or holds
    nothing yet. Only reads; never makes a file."""
    try:
        _sqlite.check_state_file(path)
    except DatabaseError as exc:
        raise StoreError(str(exc)) from exc


def _check_time(transition: Transition) -> None:
    if not math.isfinite(transition.at):
        raise StoreError(
            f"transition of node {transition.node!r}: time {transition.at!r}"
            " is not a finite number of seconds"
        )


def _track(
    tx: Transaction,
    transition: Transition,
    recovery_targets: Mapping[str, float],
) -> int | None:
    """Open, raise or close the node's incident for one effective
    transition; the id of the incident it belongs to, if any."""
    row = tx.execute(
        "SELECT id, started_at, worst, root_cause FROM incidents"
        " WHERE node = ? AND ended_at IS NULL",
        (transition.node,),
    ).first()
    if transition.new in _FAILED:
        if row is None:
            target = _recovery_target(transition.node, recovery_targets)
            [(created,)] = tx.execute(
                "INSERT INTO incidents (node, started_at, ended_at, worst, root_cause,"
                " recovery_target_s) VALUES (?, ?, NULL, ?, ?, ?) RETURNING id",
                (
                    transition.node,
                    transition.at,
                    str(transition.new),
                    json.dumps(list(dict.fromkeys(transition.root_cause))),
                    target,
                ),
            ).rows
            return int(created)
        incident_id, _, worst_text, causes_text = row
        worst = max(State.parse(worst_text), transition.new)
        causes = tuple(dict.fromkeys((*json.loads(causes_text), *transition.root_cause)))
        tx.execute(
            "UPDATE incidents SET worst = ?, root_cause = ? WHERE id = ?",
            (str(worst), json.dumps(list(causes)), incident_id),
        )
        return int(incident_id)
    if row is None:
        return None
    incident_id, started_at = row[0], row[1]
    if transition.new == State.UP:
        # A wall clock stepped back (NTP) must neither lose the batch to the
        # end-after-start check nor give a negative duration.
        tx.execute(
            "UPDATE incidents SET ended_at = ? WHERE id = ?",
            (max(transition.at, started_at), incident_id),
        )
    return int(incident_id)


def _recovery_target(node: str, recovery_targets: Mapping[str, float]) -> float:
    try:
        target = recovery_targets[node]
    except KeyError:
        raise StoreError(f"no recovery target for node {node!r}") from None
    if not (isinstance(target, int | float) and math.isfinite(target) and target >= 0):
        raise StoreError(
            f"recovery target of node {node!r} must be a number of seconds >= 0, got {target!r}"
        )
    return float(target)


def _end(incident: Incident, now: float) -> float:
    return now if incident.ended_at is None else min(now, incident.ended_at)


def _incident(row: tuple[Any, ...]) -> Incident:
    id_, node, started_at, ended_at, worst, root_cause, target = row
    return Incident(
        id=id_,
        node=node,
        started_at=started_at,
        ended_at=ended_at,
        worst=State.parse(worst),
        root_cause=tuple(json.loads(root_cause)),
        recovery_target_s=target,
    )


def _transition(row: tuple[Any, ...]) -> Transition:
    node, view, old, new, at, root_cause, reason = row
    return Transition(
        node=node,
        view=view,
        old=State.parse(old),
        new=State.parse(new),
        at=at,
        root_cause=tuple(json.loads(root_cause)),
        reason=reason,
    )
