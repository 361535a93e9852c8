"""The database under the state store: one interface, two backends.

SQLite (`watchdog.db.sqlite`) keeps one daemon's history in a file; Postgres
(`watchdog.db.postgres`, the `postgres` extra) keeps it in a server that
several daemons can reach. The store and the modules that keep tables of
their own (outbox, probe state, maneuvers, silences, alert state) write
their SQL once, portable to both: `?` placeholders, `INSERT ... ON CONFLICT`,
`RETURNING` for generated ids, the count of changed rows from the driver.
Anything only one engine understands (pragmas, advisory locks, how a
schema's version is kept) stays inside its backend.

A `Database` is used one call at a time: the `Store` serialises calls with
its lock. Every error of the driver comes out as `DatabaseError`, one line
for people.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "EXTRA_NEEDED",
    "POSTGRES_SCHEMES",
    "Database",
    "DatabaseError",
    "Dialect",
    "Result",
    "Transaction",
    "is_url",
    "open_database",
]

Dialect = Literal["sqlite", "postgres"]

# What `state.url` may start with: both are libpq's.
POSTGRES_SCHEMES = ("postgresql", "postgres")


class DatabaseError(Exception):
    """The database cannot do what was asked; the message, one line, is for
    people (the store adds where and what it was doing)."""


@dataclass(frozen=True, slots=True)
class Result:
    """What one statement gave: its rows (those of a SELECT, or of a
    RETURNING clause), and how many rows an INSERT, UPDATE or DELETE
    changed (a row an `ON CONFLICT DO NOTHING` skipped is not counted)."""

    rows: list[tuple[Any, ...]]
    changed: int

    def first(self) -> tuple[Any, ...] | None:
        """The first row, or None when there is none."""
        return self.rows[0] if self.rows else None


class Transaction(Protocol):
    """The statements of one transaction. SQL is written once, with `?`
    placeholders; the backend translates it for its driver."""

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Result:
        """Run one statement with its parameters."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> int:
        """Run one statement once per row of parameters (none: nothing
        runs); how many rows it changed in all."""
        ...


class Database(Protocol):
    """A connection to the store's database, its schema migrated."""

    @property
    def name(self) -> str:
        """Where it is, for messages: the file's path, or the URL without
        its query (never a password: none is ever in it)."""
        ...

    @property
    def dialect(self) -> Dialect:
        """Which engine: the store picks its schema steps by it."""
        ...

    def migrate(self, steps: Sequence[Sequence[str]], *, create: bool = True) -> None:
        """Bring the schema to `len(steps)`: step i takes it from version i
        to i + 1, each in a transaction of its own, re-reading the version
        under a lock first (another process may be migrating too). Raises
        `DatabaseError` when the database belongs to another application,
        has a newer schema, or a step fails (the database then stays at the
        version before that step). With `create` False, a database without
        the watchdog's schema is refused instead of given it."""
        ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """One write transaction: committed when the block ends, rolled back
        (and the exception passed on) when it raises."""
        ...

    def read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read, outside any write transaction."""
        ...

    def close(self) -> None:
        """Close the connection. Idempotent."""
        ...


def is_url(location: str) -> bool:
    """Whether `location` names a Postgres server (`postgresql://...`)
    rather than an SQLite file."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


# What a Postgres URL needs when psycopg is missing.
EXTRA_NEEDED = (
    "state.url postgresql://... needs the postgres extra: pip install 'service-watchdog[postgres]'"
)


def open_database(location: str, *, password: str | None = None, create: bool = True) -> Database:
    """Connect to the database at `location`: a `postgresql://` URL (its
    password given apart, never in the URL), else an SQLite file path or
    `:memory:` (with `create` False, a missing file is refused, not made).
    The schema is not touched: see `Database.migrate`.

    Raises `DatabaseError`, naming the location, when it cannot be opened or
    reached, and when a URL is given without the `postgres` extra."""
    if is_url(location):
        try:
            from watchdog.db import postgres
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] not in ("psycopg", "psycopg_binary"):
                raise
            raise DatabaseError(EXTRA_NEEDED) from exc
        return postgres.connect(location, password=password)
    from watchdog.db import sqlite

    return sqlite.connect(location, create=create)
