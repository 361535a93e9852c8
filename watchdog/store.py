"""The state store: transitions and incidents in SQLite, so that a restart,
even `kill -9`, loses no history and resumes the incidents still open.

Synchronous and fast (one short transaction per `record`): the asyncio daemon
either calls it through `asyncio.to_thread` or accepts the short blocking. A
`Store` is safe to use from any thread, one call at a time (a lock serialises
calls); several processes may open the same file (the CLI reading while the
daemon writes), which WAL mode and the busy timeout allow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from alerts.transitions import Transition
from topology import State

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "Incident",
    "NodeSummary",
    "Store",
    "StoreError",
    "check_state_file",
]

log = logging.getLogger(__name__)

# Marks the file as ours in the SQLite header ("WDOG"), so a state path that
# points at another application's database is refused instead of altered.
APPLICATION_ID: Final = 0x57444F47

# How long a writer waits for another process's lock before giving up: the
# CLI reading the file must never make the daemon drop a batch.
BUSY_TIMEOUT_S: Final = 5.0

# Schema migrations, oldest first: step i takes the file from version i to
# i + 1 (stored in `PRAGMA user_version`) in one transaction of its own. Only
# ever append; a released step is never edited.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        f"PRAGMA application_id = {APPLICATION_ID}",
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
)

_FAILED = (State.DEGRADED, State.DOWN)

# Columns named, never `*`, so a later migration that adds one breaks nothing.
_INCIDENT = "id, node, started_at, ended_at, worst, root_cause, recovery_target_s"
_TRANSITION = "node, view, old, new, at, root_cause, reason"


class StoreError(Exception):
    """The store cannot do what was asked; the message is for people."""


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
    """Transitions and incidents of one estate, in one SQLite file.

    Build it with `Store.open`; close it with `close()` or a `with` block.
    """

    __slots__ = ("_clock", "_connection", "_lock", "path")

    def __init__(
        self, connection: sqlite3.Connection, *, path: str, clock: Callable[[], float]
    ) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = connection
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, *, clock: Callable[[], float]) -> Store:
        """Open (creating if needed) and migrate the store at `path`, or an
        in-memory one for `":memory:"`. `clock` gives seconds since the epoch
        and stamps when each transition was recorded.

        Raises `StoreError` when the file cannot be opened, is not an SQLite
        database, is corrupt, belongs to another application or has a newer
        schema than this build reads.

        A file it creates is readable by its owner alone (0600), and so are
        the `-wal` and `-shm` files SQLite makes beside it (SQLite gives them
        the database's mode): the history names the estate's weak points. An
        existing file keeps its mode; one that others may read is logged.

        An existing file is checked first, read-only (`check_state_file`):
        one of another application is refused untouched, never switched to
        WAL nor given -wal and -shm files.
        """
        name = str(path)
        if name != ":memory:":
            check_state_file(name)
            _create_private(name)
        try:
            # check_same_thread=False because asyncio.to_thread runs each call
            # on whichever pool thread is free; the lock keeps it to one call
            # at a time. isolation_level=None: transactions are explicit.
            connection = sqlite3.connect(
                name, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(_describe(name, exc)) from exc
        try:
            connection.execute("PRAGMA foreign_keys = ON")
            if name != ":memory:":
                # The first read of the file: a file that is not a database
                # fails here, and is reported below.
                (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
                if mode != "wal":
                    # Some file systems (network mounts) cannot share the WAL
                    # index; the rollback journal with synchronous=FULL is
                    # just as durable, only slower to read beside a writer.
                    log.warning("store_journal_mode path=%s mode=%s", name, mode)
            # FULL: a commit returns only once the WAL is fsynced. NORMAL would
            # already survive `kill -9` (the committed WAL frames sit in the
            # page cache, which outlives the process), but not a power cut or
            # a kernel crash; transitions come at the rate state changes, not
            # probes, so the fsync per commit costs nothing that matters.
            connection.execute("PRAGMA synchronous = FULL")
            # What is deleted or rewritten is overwritten with zeros, not left
            # in free pages: a row rewritten without a secret (a file written
            # by an older version) keeps no copy of it.
            connection.execute("PRAGMA secure_delete = ON")
            _migrate(connection, name)
        except sqlite3.Error as exc:
            connection.close()
            raise StoreError(_describe(name, exc)) from exc
        except BaseException:
            connection.close()
            raise
        return cls(connection, path=name, clock=clock)

    def close(self) -> None:
        """Close the file; later calls raise `StoreError`. Idempotent."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

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
        self, transitions: Sequence[Transition], *, recovery_targets: Mapping[str, float]
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
        """
        if not transitions:
            self._open_connection()  # a closed store still says so
            return  # no transaction, so no fsync, for an empty batch
        now = self._clock()
        with self.transaction("cannot record transitions") as connection:
            for transition in transitions:
                _check_time(transition)
                incident_id = None
                if transition.view == "effective":
                    incident_id = _track(connection, transition, recovery_targets)
                connection.execute(
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

    @contextmanager
    def transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the store's lock, for the modules that
        keep tables of their own in the file (the outbox): all of it is
        written or none; errors come out as `StoreError` saying `doing`."""
        with self._lock:
            connection = self._open_connection()
            with self._errors(doing), _transaction(connection):
                yield connection

    def query(self, doing: str, sql: str, parameters: Sequence[object] = ()) -> list[Any]:
        """The rows of one read, under the store's lock."""
        with self._lock:
            connection = self._open_connection()
            with self._errors(doing):
                return connection.execute(sql, tuple(parameters)).fetchall()

    def end_incidents(self, nodes: Iterable[str], at: float) -> int:
        """End the open incidents of `nodes` at `at` (a reload removed them
        from the topology: nothing will ever report them up); return how
        many were ended."""
        names = sorted(set(nodes))
        if not names:
            return 0
        with self.transaction("cannot end incidents") as connection:
            before = connection.total_changes
            connection.executemany(
                "UPDATE incidents SET ended_at = max(?, started_at)"
                " WHERE node = ? AND ended_at IS NULL",
                [(at, name) for name in names],
            )
            return connection.total_changes - before

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
            f" WHERE {where} ORDER BY at DESC, id DESC LIMIT ?) ORDER BY at, id"
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

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"{self.path}: the state store is closed")
        return self._connection

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        # A full disk, a lock held past the busy timeout or a file damaged
        # under us reach the caller as one error type, with the path.
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {doing}: {exc}") from exc


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so waiting for another writer
    # happens (under the busy timeout) before any work, never as a failed
    # upgrade from a read lock halfway through.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


# The SQLite file header (https://www.sqlite.org/fileformat.html#the_database_header):
# its magic string, and where the user version and application id sit.
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
_USER_VERSION_AT = 60
_APPLICATION_ID_AT = 68


def check_state_file(path: str) -> None:
    """Raise `StoreError` unless the file at `path` may become or already
    is a watchdog state file: absent or empty (a new store), or an SQLite
    database that is the watchdog's (its application id) or holds nothing
    yet. Only reads: the header as bytes, and the schema, when needed,
    through a read-only, immutable connection (no lock, no journal, no -wal
    or -shm file). A file that cannot be read is left to `Store.open`, which
    says why."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(_HEADER_BYTES)
    except OSError:
        return
    if not header:
        return
    if len(header) < _HEADER_BYTES or not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path}: not a watchdog state file: it is not an SQLite database")
    application_id = int.from_bytes(header[_APPLICATION_ID_AT : _APPLICATION_ID_AT + 4], "big")
    version = int.from_bytes(header[_USER_VERSION_AT : _USER_VERSION_AT + 4], "big")
    if application_id == APPLICATION_ID:
        return
    if application_id != 0:
        raise StoreError(
            f"{path}: not a watchdog state file: it belongs to another application"
            f" (application id {application_id:#x})"
        )
    if version != 0:
        # The watchdog sets both in its first migration: a schema version
        # without the id is another application's.
        raise StoreError(
            f"{path}: not a watchdog state file: it holds schema version {version}"
            " of another application"
        )
    if _has_tables(path):
        raise StoreError(
            f"{path}: not a watchdog state file: it holds tables of another application"
        )


def _has_tables(path: str) -> bool:
    """Whether the database at `path` holds any table, read without a lock
    or a journal: `immutable=1` makes SQLite treat the file as read-only
    media. (A store of ours being created by another process may show no
    table yet: `Store.open` checks again under its lock.)"""
    uri = Path(path).absolute().as_uri() + "?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return False  # Store.open reports what is wrong
    try:
        (tables,) = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return bool(tables)


def _create_private(path: str) -> None:
    """Create the file at `path`, empty (SQLite takes an empty file for a new
    database), with mode 0600, unless it exists; if it exists and others
    may read it, say so. Errors are left to `sqlite3.connect`, which names
    them as it always has."""
    try:
        # O_EXCL: never a file that appeared meanwhile, nor one through a
        # symlink planted at the path.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return
        if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "store_permissions path=%s mode=%04o: other users may read the history;"
                " chmod 600 it (and its -wal and -shm files)",
                path,
                stat.S_IMODE(mode),
            )
        return
    except OSError:
        return  # no directory, no permission: sqlite3.connect says it
    os.close(descriptor)


def _migrate(connection: sqlite3.Connection, path: str) -> None:
    latest = len(MIGRATIONS)
    version = _user_version(connection)
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    if application_id not in (0, APPLICATION_ID):
        raise StoreError(
            f"{path}: not a watchdog state file: it belongs to another application"
            f" (application id {application_id:#x})"
        )
    if version == 0 and application_id == 0:
        (tables,) = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()
        if tables:
            raise StoreError(
                f"{path}: not a watchdog state file: it holds tables of another application"
            )
    for target in range(version + 1, latest + 1):
        with _transaction(connection):
            # Read again under the write lock: another process opening the
            # same file may have migrated it meanwhile.
            current = _user_version(connection)
            _check_version(path, current, latest)
            if current >= target:
                continue
            try:
                for statement in MIGRATIONS[target - 1]:
                    connection.execute(statement)
            except sqlite3.Error as exc:
                raise StoreError(
                    f"{path}: migration to schema version {target} failed: {exc}"
                ) from exc
            # Pragmas take no parameters; the value is our own integer.
            connection.execute(f"PRAGMA user_version = {int(target)}")
    _check_version(path, _user_version(connection), latest)


def _check_version(path: str, version: int, latest: int) -> None:
    if version > latest:
        raise StoreError(
            f"{path}: schema version {version} is newer than this build reads"
            f" (up to {latest}): upgrade the watchdog, or point state.path at another file"
        )


def _user_version(connection: sqlite3.Connection) -> int:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(version)


def _describe(path: str, exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        return f"{path}: not a watchdog state file: it is not an SQLite database"
    if name == "SQLITE_CORRUPT":
        return f"{path}: the state file is corrupt ({exc}): move it aside to start a new history"
    if name == "SQLITE_CANTOPEN":
        return f"{path}: cannot open the state file: does its directory exist, and is it writable?"
    return f"{path}: cannot open the state file: {exc}"


def _check_time(transition: Transition) -> None:
    if not math.isfinite(transition.at):
        raise StoreError(
            f"transition of node {transition.node!r}: time {transition.at!r}"
            " is not a finite number of seconds"
        )


def _track(
    connection: sqlite3.Connection,
    transition: Transition,
    recovery_targets: Mapping[str, float],
) -> int | None:
    """Open, raise or close the node's incident for one effective
    transition; the id of the incident it belongs to, if any."""
    row = connection.execute(
        "SELECT id, started_at, worst, root_cause FROM incidents"
        " WHERE node = ? AND ended_at IS NULL",
        (transition.node,),
    ).fetchone()
    if transition.new in _FAILED:
        if row is None:
            target = _recovery_target(transition.node, recovery_targets)
            cursor = connection.execute(
                "INSERT INTO incidents (node, started_at, ended_at, worst, root_cause,"
                " recovery_target_s) VALUES (?, ?, NULL, ?, ?, ?)",
                (
                    transition.node,
                    transition.at,
                    str(transition.new),
                    json.dumps(list(dict.fromkeys(transition.root_cause))),
                    target,
                ),
            )
            return cursor.lastrowid
        incident_id, _, worst_text, causes_text = row
        worst = max(State.parse(worst_text), transition.new)
        causes = tuple(dict.fromkeys((*json.loads(causes_text), *transition.root_cause)))
        connection.execute(
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
        connection.execute(
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
