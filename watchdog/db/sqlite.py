"""The SQLite backend: one daemon's history in one file.

WAL mode and a busy timeout let several processes open the same file (the
CLI reading while the daemon writes); `synchronous=FULL` makes a commit
survive a power cut; the file's application id ("WDOG") and its schema
version (`PRAGMA user_version`) say whose it is and how far it is migrated,
so that a path pointing at another application's database is refused
untouched.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from watchdog.db import DatabaseError, Dialect, Result

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "SQLiteDatabase", "check_state_file", "connect"]

# The store's logger: these lines (journal mode, permissions) keep the name
# they had before the backends were split out.
log = logging.getLogger("watchdog.store")

# Marks the file as ours in the SQLite header ("WDOG"), so a state path that
# points at another application's database is refused instead of altered.
APPLICATION_ID: Final = 0x57444F47

# How long a writer waits for another process's lock before giving up: the
# CLI reading the file must never make the daemon drop a batch.
BUSY_TIMEOUT_S: Final = 5.0


class _Transaction:
    """`watchdog.db.Transaction` on an sqlite3 connection: SQLite takes the
    `?` placeholders as they are."""

    __slots__ = ("_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Result:
        with _errors():
            cursor = self._connection.execute(sql, tuple(parameters))
            # Rows first: with RETURNING, the count is known once they are read.
            rows = cursor.fetchall()
            return Result(rows, max(cursor.rowcount, 0))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> int:
        with _errors():
            # sqlite3 sums the changes of every row into rowcount.
            return max(self._connection.executemany(sql, rows).rowcount, 0)


class SQLiteDatabase:
    """`watchdog.db.Database` on one SQLite file (or `:memory:`)."""

    __slots__ = ("_connection", "path")

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._connection = connection
        self.path = path

    @property
    def name(self) -> str:
        return self.path

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    def migrate(self, steps: Sequence[Sequence[str]], *, create: bool = True) -> None:
        try:
            _migrate(self._connection, self.path, steps, create=create)
        except sqlite3.Error as exc:
            raise DatabaseError(_describe(self.path, exc)) from exc

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        connection = self._connection
        with _errors(), _transaction(connection):
            yield _Transaction(connection)

    def read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with _errors():
            return self._connection.execute(sql, tuple(parameters)).fetchall()

    def close(self) -> None:
        self._connection.close()


def connect(path: str, *, create: bool = True) -> SQLiteDatabase:
    """Open (creating if needed) the SQLite file at `path`, or an in-memory
    database for `":memory:"`. Raises `DatabaseError`, naming the path, when
    the file cannot be opened, is not an SQLite database, is corrupt or
    belongs to another application.

    A file it creates is readable by its owner alone (0600), and so are
    the `-wal` and `-shm` files SQLite makes beside it (SQLite gives them
    the database's mode): the history names the estate's weak points. An
    existing file keeps its mode; one that others may read is logged.

    An existing file is checked first, read-only (`check_state_file`): one
    of another application is refused untouched, never switched to WAL nor
    given -wal and -shm files. With `create` False, a missing file is
    refused instead (`DatabaseError`)."""
    if path != ":memory:":
        check_state_file(path)
        if not create and not os.path.exists(path):
            raise DatabaseError(f"{path}: no state file there: the daemon has not run with it yet")
        _create_private(path)
    try:
        # check_same_thread=False because asyncio.to_thread runs each call
        # on whichever pool thread is free; the store's lock keeps it to one
        # call at a time. isolation_level=None: transactions are explicit.
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise DatabaseError(_describe(path, exc)) from exc
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            # The first read of the file: a file that is not a database
            # fails here, and is reported below.
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                # Some file systems (network mounts) cannot share the WAL
                # index; the rollback journal with synchronous=FULL is just
                # as durable, only slower to read beside a writer.
                log.warning("store_journal_mode path=%s mode=%s", path, mode)
        # FULL: a commit returns only once the WAL is fsynced. NORMAL would
        # already survive `kill -9` (the committed WAL frames sit in the page
        # cache, which outlives the process), but not a power cut or a
        # kernel crash; transitions come at the rate state changes, not
        # probes, so the fsync per commit costs nothing that matters.
        connection.execute("PRAGMA synchronous = FULL")
        # What is deleted or rewritten is overwritten with zeros, not left in
        # free pages: a row rewritten without a secret (a file written by an
        # older version) keeps no copy of it.
        connection.execute("PRAGMA secure_delete = ON")
        _check_owner(connection, path)
    except sqlite3.Error as exc:
        connection.close()
        raise DatabaseError(_describe(path, exc)) from exc
    except BaseException:
        connection.close()
        raise
    return SQLiteDatabase(connection, path)


@contextmanager
def _errors() -> Iterator[None]:
    # A full disk, a lock held past the busy timeout or a file damaged under
    # us reach the store as one error type; it adds the path.
    try:
        yield
    except sqlite3.Error as exc:
        raise DatabaseError(str(exc)) from exc


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
    """Raise `DatabaseError` unless the file at `path` may become or already
    is a watchdog state file: absent or empty (a new store), or an SQLite
    database that is the watchdog's (its application id) or holds nothing
    yet. Only reads: the header as bytes, and the schema, when needed,
    through a read-only, immutable connection (no lock, no journal, no -wal
    or -shm file). A file that cannot be read is left to `connect`, which
    says why."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(_HEADER_BYTES)
    except OSError:
        return
    if not header:
        return
    if len(header) < _HEADER_BYTES or not header.startswith(_SQLITE_MAGIC):
        raise DatabaseError(f"{path}: not a watchdog state file: it is not an SQLite database")
    application_id = int.from_bytes(header[_APPLICATION_ID_AT : _APPLICATION_ID_AT + 4], "big")
    version = int.from_bytes(header[_USER_VERSION_AT : _USER_VERSION_AT + 4], "big")
    if application_id == APPLICATION_ID:
        return
    if application_id != 0:
        raise DatabaseError(
            f"{path}: not a watchdog state file: it belongs to another application"
            f" (application id {application_id:#x})"
        )
    if version != 0:
        # The watchdog sets both in its first migration: a schema version
        # without the id is another application's.
        raise DatabaseError(
            f"{path}: not a watchdog state file: it holds schema version {version}"
            " of another application"
        )
    if _has_tables(path):
        raise DatabaseError(
            f"{path}: not a watchdog state file: it holds tables of another application"
        )


def _has_tables(path: str) -> bool:
    """Whether the database at `path` holds any table, read without a lock
    or a journal: `immutable=1` makes SQLite treat the file as read-only
    media. (A store of ours being created by another process may show no
    table yet: `connect` checks again under its lock.)"""
    uri = Path(path).absolute().as_uri() + "?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return False  # connect reports what is wrong
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


def _check_owner(connection: sqlite3.Connection, path: str) -> None:
    """Refuse a database of another application: another application id,
    or tables without ours."""
    version = _user_version(connection)
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    if application_id not in (0, APPLICATION_ID):
        raise DatabaseError(
            f"{path}: not a watchdog state file: it belongs to another application"
            f" (application id {application_id:#x})"
        )
    if version == 0 and application_id == 0:
        (tables,) = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()
        if tables:
            raise DatabaseError(
                f"{path}: not a watchdog state file: it holds tables of another application"
            )


def _migrate(
    connection: sqlite3.Connection, path: str, steps: Sequence[Sequence[str]], *, create: bool
) -> None:
    latest = len(steps)
    version = _user_version(connection)
    if version == 0 and not create:
        raise DatabaseError(
            f"{path}: no watchdog history in this file: the daemon has not run with it yet"
        )
    for target in range(version + 1, latest + 1):
        with _transaction(connection):
            # Read again under the write lock: another process opening the
            # same file may have migrated it meanwhile.
            current = _user_version(connection)
            _check_version(path, current, latest)
            if current >= target:
                continue
            if current == 0:
                # The first step marks the file as ours, in its transaction.
                # (Released versions wrote this pragma as step 1's first
                # statement: the file comes out the same.)
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            try:
                for statement in steps[target - 1]:
                    connection.execute(statement)
            except sqlite3.Error as exc:
                raise DatabaseError(
                    f"{path}: migration to schema version {target} failed: {exc}"
                ) from exc
            # Pragmas take no parameters; the value is our own integer.
            connection.execute(f"PRAGMA user_version = {int(target)}")
    _check_version(path, _user_version(connection), latest)


def _check_version(path: str, version: int, latest: int) -> None:
    if version > latest:
        raise DatabaseError(
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
