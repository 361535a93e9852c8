"""A real Postgres for the tests (Debian's `postgresql` package), and the
`backend` fixture that runs a store test on SQLite and on Postgres.

The server is made once per session: `initdb` in a temporary folder (as
the `postgres` user when the tests run as root: initdb refuses root), then
`pg_ctl start -w` listening on a free loopback port and on a Unix socket
in that folder, with fsync off (the tests never cut the power). The
superuser connects through the socket without a password; everyone else
comes over TCP with SCRAM, so the store's password really is checked.

Each test gets a schema of its own in one shared database, named in its
URL's libpq options (`?options=-csearch_path%3Dwd_7`): ids start at 1 and
nothing leaks between tests, for a millisecond where a database of its own
(`CREATE DATABASE`) costs a tenth of a second; a test about a database as a
whole (refusing connections) makes one. Skips, saying why, when the
binaries or psycopg are missing.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from watchdog.store import Store

__all__ = ["PASSWORD", "ROLE", "Backend", "PostgresServer", "backend", "postgres"]

ROLE = "watchdog_test"
PASSWORD = "pg-T3st-s3cret-9481"
# The database the tests' schemas live in.
SHARED = "watchdog"
# A bound on the server's start and stop, never on what a test asserts.
_START_S = 60
# Every table of the store, those that refer to others first, and those
# with generated ids.
_TABLES = (
    "transitions",
    "incidents",
    "outbox",
    "maneuvers",
    "silences",
    "probe_state",
    "alerts",
    "leases",
    "members",
    "observations",
)
_IDENTIFIED = ("transitions", "incidents", "outbox", "maneuvers", "silences")


def _binaries() -> Path | None:
    """The newest installed Postgres's bin folder (`/usr/lib/postgresql/15/bin`)."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class PostgresServer:
    """A running server: its TCP port on 127.0.0.1, its socket folder, and
    how to run SQL as its superuser."""

    bin: Path
    folder: Path
    port: int
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def sockets(self) -> Path:
        return self.folder / "sockets"

    @property
    def log(self) -> Path:
        return self.folder / "log" / "postgres.log"

    def url(self, database: str, schema: str | None = None, role: str = ROLE) -> str:
        """`postgresql://ROLE@127.0.0.1:PORT/DATABASE`, with the schema as
        the search path when given: no password in it."""
        url = f"postgresql://{role}@127.0.0.1:{self.port}/{database}"
        return url if schema is None else f"{url}?options=-csearch_path%3D{schema}"

    def admin(
        self,
        sql: str,
        parameters: tuple[Any, ...] = (),
        database: str = "postgres",
        schema: str | None = None,
    ) -> Any:
        """Run `sql` (psycopg's `%s` placeholders) as the superuser, in
        autocommit, through the socket, in `schema` when given; its rows
        when it has any."""
        import psycopg

        with psycopg.connect(
            host=str(self.sockets),
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
            options=f"-csearch_path={schema}" if schema else "",
        ) as connection:
            cursor = connection.execute(sql, parameters)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description is not None else None

    def create_database(self) -> str:
        """A new, empty database owned by the store's role; its name."""
        name = f"wd_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0 OWNER {ROLE}")
        return name

    def create_schema(self) -> str:
        """A new, empty schema of the store's role in the shared database;
        its name."""
        name = f"wd_{next(self._names)}"
        self.admin(f"CREATE SCHEMA {name} AUTHORIZATION {ROLE}", database=SHARED)
        return name

    def location(self) -> str:
        """The URL of a new, empty place for a store: a schema of its own."""
        return self.url(SHARED, self.create_schema())

    def pg_ctl(self, *args: str) -> None:
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), *args])


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` as the `postgres` user when we are root (initdb and the
    server refuse root), else as ourselves."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, timeout=_START_S, check=False)
    if done.returncode != 0:
        said = (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {said}")
    return done


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """`with running_postgres() as server:` a fresh server, stopped and
    removed when the block ends. Raises LookupError when the binaries, the
    `postgres` user (as root) or psycopg are missing."""
    binaries = _binaries()
    if binaries is None:
        raise LookupError("Postgres is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise LookupError("psycopg is not installed (pip install -e '.[dev]')") from None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise LookupError("no postgres user to run the server as") from None
    # Under /tmp, not pytest's root-only 0700 folders: the server, running
    # as postgres, must reach its data and sockets.
    folder = Path(tempfile.mkdtemp(prefix="watchdog-pg-", dir="/tmp"))
    try:
        os.chmod(folder, 0o755)
        server = PostgresServer(binaries, folder, _free_port())
        for part in (server.data, server.sockets, server.log.parent):
            part.mkdir()
            if os.geteuid() == 0:
                os.chown(part, owner.pw_uid, owner.pw_gid)
        _as_postgres(
            [
                str(binaries / "initdb"),
                "-D",
                str(server.data),
                "--username=postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        options = (
            f"-k {server.sockets} -h 127.0.0.1 -p {server.port}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        server.pg_ctl("-l", str(server.log), "-w", "-t", str(_START_S), "-o", options, "start")
        try:
            server.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            server.admin(f"CREATE DATABASE {SHARED} TEMPLATE template0 OWNER {ROLE}")
            yield server
        finally:
            server.pg_ctl("-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A Postgres server started once per session."""
    try:
        with running_postgres() as server:
            yield server
    except LookupError as err:
        pytest.skip(str(err))


@dataclass
class Backend:
    """Where a store test keeps its store: `sqlite` (a file in the test's
    folder) or `postgres` (a database of the test's own). Every store it
    opens is closed when the test ends."""

    name: Literal["sqlite", "postgres"]
    location: str
    password: str | None = None
    server: PostgresServer | None = None
    opened: list[Store] = field(default_factory=list)
    _emptied: Store | None = None

    def open(
        self,
        location: str | None = None,
        *,
        clock: Callable[[], float] = lambda: 0.0,
        create: bool = True,
    ) -> Store:
        """The store at `location` (by default the test's), opened."""
        store = Store.open(
            location or self.location, clock=clock, password=self.password, create=create
        )
        self.opened.append(store)
        return store

    @property
    def where(self) -> str:
        """The store's name in its messages: the path, or the URL without
        its query."""
        return self.location.partition("?")[0]

    def memory(self, clock: Callable[[], float] = lambda: 0.0) -> Store:
        """A store for one test: `:memory:` for SQLite, the test's own
        schema for Postgres."""
        if self.server is None:
            return self.open(":memory:", clock=clock)
        return self.open(clock=clock)

    def emptied(self, clock: Callable[[], float] = lambda: 0.0) -> Store:
        """A store with nothing in it, cheap enough to ask for per example
        of a property test (do not close it): a new `:memory:` one for
        SQLite; for Postgres, the same store each time, on the test's
        schema, every table emptied and its ids starting at 1 again."""
        if self.server is None:
            return self.open(":memory:", clock=clock)
        if self._emptied is None:
            self._emptied = self.open(clock=clock)
        # DELETE and setval: TRUNCATE makes new files, ten times slower here.
        with self._emptied.transaction("empty the tables") as tx:
            for table in _TABLES:
                tx.execute(f"DELETE FROM {table}")
            for table in _IDENTIFIED:
                tx.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1, false)")
        return self._emptied

    def raw(self, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
        """Run `sql` (`?` placeholders) on the test's database behind the
        store's back (as the superuser on Postgres); its rows."""
        if self.server is None:
            connection = sqlite3.connect(self.location)
            try:
                with connection:
                    return connection.execute(sql, parameters).fetchall()
            finally:
                connection.close()
        from watchdog.db.postgres import to_psycopg

        return self.server.admin(
            to_psycopg(sql), parameters, database=self.database, schema=self.schema
        )

    @property
    def database(self) -> str:
        """The Postgres database's name (the last part of the URL's path)."""
        return self.where.rpartition("/")[2]

    @property
    def schema(self) -> str | None:
        """The Postgres schema the URL's search path names, if any."""
        _, found, schema = self.location.partition("search_path%3D")
        return schema if found else None

    def version(self) -> int:
        """The schema version the test's store is at."""
        if self.server is None:
            [(version,)] = self.raw("PRAGMA user_version")
        else:
            [(version,)] = self.raw("SELECT version FROM watchdog_schema")
        return int(version)

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The test, once on SQLite and once on Postgres (skipped, saying why,
    where Postgres is not installed)."""
    if request.param == "sqlite":
        chosen = Backend("sqlite", str(tmp_path / "state.db"))
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        chosen = Backend("postgres", server.location(), password=PASSWORD, server=server)
    try:
        yield chosen
    finally:
        chosen.close()
