"""The Postgres backend (the `postgres` extra: psycopg 3): the history in a
server that several daemons can reach.

The schema's version is kept in a table of its own, `watchdog_schema` (one
row); each migration step runs in a transaction of its own that first takes
a transaction-scoped advisory lock, so that two daemons starting at once
migrate one after the other (the lock goes with the transaction: nothing is
held once the database is migrated). A database that holds tables but not
ours is refused untouched.

The connection runs in autocommit mode: a read is a statement of its own,
a write a `BEGIN ... COMMIT` of the store's. A connection that died while
idle (a server restart, a failover) is replaced at the next call, before
anything of that call was sent; a call it fails halfway raises
`DatabaseError` and is not tried again (a commit whose answer was lost may
or may not have happened).
"""

from __future__ import annotations

import contextlib
import functools
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import conninfo

from watchdog.db import DatabaseError, Dialect, Result

__all__ = ["MIGRATION_LOCK", "SCHEMA_TABLE", "PostgresDatabase", "connect", "to_psycopg"]

# The table that holds the schema's version, and the advisory lock key taken
# while migrating ("WDOG", as the SQLite files' application id).
SCHEMA_TABLE: Final = "watchdog_schema"
MIGRATION_LOCK: Final = 0x57444F47

# libpq settings the URL may override. A server that cannot be reached fails
# the start within seconds, not libpq's default of never; a peer that went
# away (a partition, a dead host) is noticed within about half a minute by
# TCP keepalives and the user timeout, instead of the kernel's 2 hours or 15
# minutes, and the call waiting on it fails with DatabaseError.
DEFAULTS: Final = {
    "connect_timeout": "10",
    "keepalives_idle": "15",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
    "application_name": "watchdog",
}

_Connection = psycopg.Connection[tuple[Any, ...]]


class _Named(DatabaseError):
    """A message that already names the database."""


@functools.lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    """`sql` with `?` placeholders as psycopg takes it: each `?` outside
    quotes becomes `%s`, and every literal `%` (psycopg reads the whole
    text for placeholders, quotes included) is doubled."""
    out: list[str] = []
    quote = ""
    for char in sql:
        if char == "%":
            out.append("%%")
        elif quote:
            out.append(char)
            if char == quote:
                quote = ""  # a doubled quote closes and opens again: the same
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def display(url: str) -> str:
    """The URL as messages name it: no password (there should be none), no
    query (libpq settings, some of them paths to keys), no fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url.partition("?")[0].partition("#")[0]
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hostport}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _say(exc: BaseException) -> str:
    """A driver error in one line: the server's primary message when it
    sent one (not its LINE/caret context), else libpq's words joined."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return " ".join(str(exc).split()) or repr(exc)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(_say(exc)) from exc


class _Transaction:
    """`watchdog.db.Transaction` on a psycopg connection inside BEGIN."""

    __slots__ = ("_connection",)

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Result:
        with _errors():
            cursor = self._connection.execute(to_psycopg(sql), tuple(parameters))
            rows = cursor.fetchall() if cursor.description is not None else []
            return Result(rows, max(cursor.rowcount, 0))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> int:
        with _errors(), self._connection.cursor() as cursor:
            # psycopg sums the changes of every row into rowcount.
            cursor.executemany(to_psycopg(sql), [tuple(row) for row in rows])
            return max(cursor.rowcount, 0)


class PostgresDatabase:
    """`watchdog.db.Database` on a Postgres server, through one connection
    (made again when it dies)."""

    __slots__ = ("_connection", "_parameters", "url")

    def __init__(self, url: str, parameters: dict[str, Any]) -> None:
        self.url = url
        self._parameters = parameters
        self._connection: _Connection | None = None

    @property
    def name(self) -> str:
        return display(self.url)

    @property
    def dialect(self) -> Dialect:
        return "postgres"

    def connect(self) -> None:
        """Connect now; `DatabaseError` saying why it cannot."""
        self._reconnect()

    def migrate(self, steps: Sequence[Sequence[str]], *, create: bool = True) -> None:
        try:
            self._migrate(steps, create=create)
        except _Named:
            raise
        except DatabaseError as exc:
            # A role that may not create tables there, a server gone meanwhile.
            raise _Named(f"{self.name}: cannot migrate the schema: {exc}") from exc

    def _migrate(self, steps: Sequence[Sequence[str]], *, create: bool) -> None:
        latest = len(steps)
        with self.transaction() as tx:
            tx.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            version = self._bootstrap(tx, create=create)
        if version == 0 and not create:
            raise _Named(f"{self.name}: {_NO_HISTORY}")
        for target in range(version + 1, latest + 1):
            with self.transaction() as tx:
                tx.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                # Read again under the lock: another process may have
                # migrated the database meanwhile.
                current = _version(tx)
                self._check_version(current, latest)
                if current >= target:
                    continue
                try:
                    for statement in steps[target - 1]:
                        tx.execute(statement)
                except DatabaseError as exc:
                    raise _Named(
                        f"{self.name}: migration to schema version {target} failed: {exc}"
                    ) from exc
                tx.execute(f"UPDATE {SCHEMA_TABLE} SET version = ? WHERE id = 1", (target,))
        with self.transaction() as tx:
            self._check_version(_version(tx), latest)

    def _bootstrap(self, tx: _Transaction, *, create: bool) -> int:
        """The schema's version; with `create`, a database without the
        version table is given it (at version 0) unless it holds tables of
        another application."""
        [(exists,)] = tx.execute("SELECT to_regclass(?) IS NOT NULL", (SCHEMA_TABLE,)).rows
        if exists:
            return _version(tx)
        if not create:
            raise _Named(f"{self.name}: {_NO_HISTORY}")
        [(tables,)] = tx.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        ).rows
        if tables:
            raise _Named(
                f"{self.name}: not a watchdog database: it holds tables of another application"
                " (give the watchdog a database, or a schema, of its own)"
            )
        tx.execute(
            f"CREATE TABLE {SCHEMA_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " version INTEGER NOT NULL)"
        )
        tx.execute(f"INSERT INTO {SCHEMA_TABLE} (id, version) VALUES (1, 0)")
        return 0

    def _check_version(self, version: int, latest: int) -> None:
        if version > latest:
            raise _Named(
                f"{self.name}: schema version {version} is newer than this build reads"
                f" (up to {latest}): upgrade the watchdog, or point state.url at another"
                " database"
            )

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        connection = self._begin()
        try:
            yield _Transaction(connection)
        except BaseException:
            if not connection.closed:
                # The error being raised says more than a failed rollback.
                with contextlib.suppress(psycopg.Error):
                    connection.execute("ROLLBACK")
            raise
        with _errors():
            connection.execute("COMMIT")

    def read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        query, values = to_psycopg(sql), tuple(parameters)
        connection = self._connected()
        try:
            return connection.execute(query, values).fetchall()
        except psycopg.OperationalError as exc:
            if not connection.closed:
                raise DatabaseError(_say(exc)) from exc
        except psycopg.Error as exc:
            raise DatabaseError(_say(exc)) from exc
        # The connection had died while idle: a read is safe to ask again.
        with _errors():
            return self._reconnect().execute(query, values).fetchall()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _begin(self) -> _Connection:
        """A live connection inside BEGIN."""
        connection = self._connected()
        try:
            connection.execute("BEGIN")
            return connection
        except psycopg.OperationalError as exc:
            if not connection.closed:
                raise DatabaseError(_say(exc)) from exc
        except psycopg.Error as exc:
            raise DatabaseError(_say(exc)) from exc
        # It had died while idle; nothing of this transaction was sent.
        connection = self._reconnect()
        with _errors():
            connection.execute("BEGIN")
        return connection

    def _connected(self) -> _Connection:
        if self._connection is None or self._connection.closed:
            return self._reconnect()
        return self._connection

    def _reconnect(self) -> _Connection:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        try:
            # No server-side prepared statements: a transaction pooler
            # (PgBouncer) may hand the next statement to another backend.
            self._connection = psycopg.connect(
                autocommit=True, prepare_threshold=None, **self._parameters
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect: {_say(exc)}") from exc
        return self._connection


_NO_HISTORY = "no watchdog history in this database: the daemon has not run with it yet"


def _version(tx: _Transaction) -> int:
    [(version,)] = tx.execute(f"SELECT version FROM {SCHEMA_TABLE} WHERE id = 1").rows
    return int(version)


def connect(url: str, *, password: str | None = None) -> PostgresDatabase:
    """Connect to the database the `postgresql://` URL names, with
    `password` (None: libpq's own ways, a passfile or none). Raises
    `DatabaseError`, naming the URL (without its query), when the URL is
    not one libpq reads or the server cannot be reached or refuses."""
    name = display(url)
    try:
        parameters: dict[str, Any] = conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise DatabaseError(f"{name}: not a Postgres URL libpq reads: {_say(exc)}") from exc
    for key, value in DEFAULTS.items():
        parameters.setdefault(key, value)
    if password is not None:
        parameters["password"] = password
    database = PostgresDatabase(url, parameters)
    try:
        database.connect()
    except DatabaseError as exc:
        raise DatabaseError(f"{name}: {exc}") from exc
    return database
