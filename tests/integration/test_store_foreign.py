"""A `state.path` that names another application's SQLite file is refused
untouched: its ownership is read first (the header, then the schema through
an immutable read-only connection), so the file keeps every byte, is not
switched to WAL, and gets no -wal or -shm file beside it. Real SQLite files,
and a real daemon start."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from watchdog.cli import main
from watchdog.store import APPLICATION_ID, Store, StoreError


def foreign(path: Path, *statements: str) -> bytes:
    """Another application's database at `path` (rollback journal, as
    SQLite makes them by default); its bytes."""
    raw = sqlite3.connect(path)
    for statement in statements:
        raw.execute(statement)
    raw.commit()
    raw.close()
    return path.read_bytes()


def refused(path: Path) -> str:
    with pytest.raises(StoreError) as caught:
        Store.open(path, clock=time.time)
    return str(caught.value)


def beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


CASES: list[tuple[str, Callable[[Path], bytes], str]] = [
    (
        "tables",
        lambda p: foreign(p, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)"),
        "it holds tables of another application",
    ),
    (
        "application-id",
        lambda p: foreign(p, "PRAGMA application_id = 1234", "CREATE TABLE t (x)"),
        "it belongs to another application (application id 0x4d2)",
    ),
    (
        "user-version",
        lambda p: foreign(p, "PRAGMA user_version = 7"),
        "it holds schema version 7 of another application",
    ),
    (
        "wal-mode",
        lambda p: foreign(p, "PRAGMA journal_mode = WAL", "CREATE TABLE t (x)"),
        "it holds tables of another application",
    ),
]


@pytest.mark.parametrize(("make", "why"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_foreign_database_is_refused_and_left_as_it_was(
    tmp_path: Path, make: Callable[[Path], bytes], why: str
) -> None:
    path = tmp_path / "other.db"
    before = make(path)
    assert beside(path) == ["other.db"]

    assert refused(path) == f"{path}: not a watchdog state file: {why}"
    assert path.read_bytes() == before
    assert beside(path) == ["other.db"]


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"SQLite format 2\n" + b"x" * 200)
    assert refused(path) == f"{path}: not a watchdog state file: it is not an SQLite database"
    assert path.read_bytes() == b"SQLite format 2\n" + b"x" * 200
    assert beside(path) == ["notes.txt"]


def test_an_empty_database_becomes_a_store_and_a_store_opens_again(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    foreign(path, "PRAGMA page_size = 4096", "VACUUM")  # SQLite's header, no table
    Store.open(path, clock=time.time).close()
    header = path.read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == APPLICATION_ID
    Store.open(path, clock=time.time).close()  # ours: opened as it is


def test_run_refuses_a_foreign_state_file_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "billing.db"
    before = foreign(state, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    estate = tmp_path / "estate.yaml"
    estate.write_text(f"version: 1\nstate: {{path: {state.name}}}\nnodes:\n  a: {{}}\n")

    assert main(["run", str(estate)]) == 3
    assert capsys.readouterr().err == (
        f"watchdog run: {state}: not a watchdog state file: it holds tables of another "
        "application\n"
    )
    assert state.read_bytes() == before
    assert beside(state) == ["billing.db", "estate.yaml"]
