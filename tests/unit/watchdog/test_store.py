"""The state store: schema migrations, refusal of files (and databases) it
cannot use, incidents opened, raised and closed by effective transitions,
the summary's figures, and history that survives a restart and `kill -9`.
Every test that takes `backend` runs on SQLite and on a real Postgres;
those about SQLite's files alone, and about Postgres's connection alone,
say so in their names."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from clocks import Clock
from hypothesis import given, settings
from hypothesis import strategies as st
from postgres_server import PASSWORD, Backend, PostgresServer

import watchdog.store as store_module
from alerts.transitions import Transition
from topology import State
from watchdog.store import (
    APPLICATION_ID,
    MIGRATIONS,
    POSTGRES_MIGRATIONS,
    Incident,
    NodeSummary,
    Store,
    StoreError,
)

ROOT = Path(__file__).resolve().parents[3]

UP, UNKNOWN, DEGRADED, DOWN = State.UP, State.UNKNOWN, State.DEGRADED, State.DOWN

TARGETS = {"orders-workflow": 600.0, "orders-search": 14_400.0, "farm-oms-1": 14_400.0}


def effective(node: str, old: State, new: State, at: float, *cause: str) -> Transition:
    return Transition(node, "effective", old, new, at, cause)


def observed(node: str, old: State, new: State, at: float) -> Transition:
    return Transition(node, "observed", old, new, at, (node,) if new > UNKNOWN else ())


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.memory(Clock(50_000.0))


def record(store: Store, *transitions: Transition) -> None:
    store.record(transitions, recovery_targets=TARGETS)


def refusal(path: Path) -> str:
    with pytest.raises(StoreError) as caught:
        Store.open(path, clock=Clock(50_000.0))
    return str(caught.value)


# Opening and migrating


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty"])
def test_it_migrates_a_new_or_empty_file_to_the_latest_schema(tmp_path: Path, exists: bool) -> None:
    path = tmp_path / "state.db"
    if exists:
        path.touch()
    Store.open(path, clock=Clock(50_000.0)).close()

    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert raw.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        assert tables.fetchall() == [
            ("alerts",),
            ("incidents",),
            ("leases",),
            ("maneuvers",),
            ("members",),
            ("observations",),
            ("outbox",),
            ("probe_state",),
            ("silences",),
            ("transitions",),
        ]
    finally:
        raw.close()


def test_it_keeps_history_when_the_store_is_reopened(backend: Backend) -> None:
    history = [
        observed("farm-oms-1", UP, DOWN, 100.0),
        effective("orders-workflow", UP, DOWN, 100.0, "farm-oms-1"),
        effective("orders-workflow", DOWN, UP, 400.0),
    ]
    with backend.open(clock=Clock(50_000.0)) as first:
        first.record(history, recovery_targets=TARGETS)
        incidents = first.incidents(since=0.0)

    with backend.open(clock=Clock(50_000.0)) as second:
        assert second.transitions(since=0.0) == history
        assert second.incidents(since=0.0) == incidents
        assert len(incidents) == 1


def test_both_backends_migrate_to_the_same_tables_and_columns(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    assert len(POSTGRES_MIGRATIONS) == len(MIGRATIONS)
    lite = Backend("sqlite", str(tmp_path / "state.db"))
    pg = Backend("postgres", postgres.location(), PASSWORD, postgres)
    for chosen in (lite, pg):
        chosen.open().close()
        assert chosen.version() == len(MIGRATIONS)
    tables = [name for (name,) in lite.raw("SELECT name FROM sqlite_master WHERE type = 'table'")]
    columns = {t: [row[1] for row in lite.raw(f"PRAGMA table_info({t})")] for t in tables}
    in_postgres = {
        t: [
            name
            for (name,) in pg.raw(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?"
                " ORDER BY ordinal_position",
                (t,),
            )
        ]
        for t in tables
    }
    assert in_postgres == columns
    # Times keep their precision: 8-byte floats, as SQLite's REAL.
    [(kind,)] = pg.raw(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'transitions' AND column_name = 'at'"
    )
    assert kind == "double precision"
    assert pg.raw(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        " AND indexname = 'incidents_open'"
    ) == [
        (
            f"CREATE UNIQUE INDEX incidents_open ON {pg.schema}.incidents USING btree (node)"
            " WHERE (ended_at IS NULL)",
        )
    ]


def test_it_applies_a_new_migration_step_to_an_existing_store(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with backend.open(clock=Clock(50_000.0)) as old:
        record(old, effective("orders-workflow", UP, DOWN, 100.0, "farm-oms-1"))
    step = ("CREATE TABLE scratch (id INTEGER PRIMARY KEY, node TEXT NOT NULL)",)
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, step))
    monkeypatch.setattr(store_module, "POSTGRES_MIGRATIONS", (*POSTGRES_MIGRATIONS, step))

    with backend.open(clock=Clock(50_000.0)) as new:
        assert [i.node for i in new.open_incidents()] == ["orders-workflow"]

    assert backend.version() == len(MIGRATIONS) + 1
    assert backend.raw("SELECT count(*) FROM scratch") == [(0,)]


TABLE_NAMED = {
    "sqlite": "SELECT name FROM sqlite_master WHERE name = ?",
    "postgres": "SELECT tablename FROM pg_tables WHERE tablename = ?"
    " AND schemaname = current_schema()",
}
# The first statement succeeds, the second fails: neither may remain.
FAILING_STEP = {
    "sqlite": (
        ("CREATE TABLE scratch (id INTEGER PRIMARY KEY)", "CREATE TABLE scratch (x)"),
        "table scratch already exists",
    ),
    "postgres": (
        ("CREATE TABLE scratch (id INTEGER PRIMARY KEY)", "CREATE TABLE scratch (x INTEGER)"),
        'relation "scratch" already exists',
    ),
}


def test_it_leaves_the_store_at_its_version_when_a_migration_step_fails(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.open().close()
    step, error = FAILING_STEP[backend.name]
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, step))
    monkeypatch.setattr(store_module, "POSTGRES_MIGRATIONS", (*POSTGRES_MIGRATIONS, step))

    with pytest.raises(StoreError) as caught:
        backend.open()
    assert str(caught.value) == (
        f"{backend.where}: migration to schema version {len(MIGRATIONS) + 1} failed: {error}"
    )
    assert backend.version() == len(MIGRATIONS)
    assert backend.raw(TABLE_NAMED[backend.name], ("scratch",)) == []


NEWER = {
    "sqlite": ("PRAGMA user_version = {}", "point state.path at another file"),
    "postgres": ("UPDATE watchdog_schema SET version = {}", "point state.url at another database"),
}


def test_it_refuses_a_store_with_a_newer_schema(backend: Backend) -> None:
    backend.open().close()
    setting, hint = NEWER[backend.name]
    backend.raw(setting.format(len(MIGRATIONS) + 6))

    with pytest.raises(StoreError) as caught:
        backend.open()
    assert str(caught.value) == (
        f"{backend.where}: schema version {len(MIGRATIONS) + 6} is newer than this build"
        f" reads (up to {len(MIGRATIONS)}): upgrade the watchdog, or {hint}"
    )


def test_a_file_of_an_older_release_opens_and_migrates_as_it_always_did(tmp_path: Path) -> None:
    # What a release at schema version 2 wrote: its application id, the
    # first two steps, an incident still open.
    path = tmp_path / "state.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        raw.execute(statement)
    raw.execute("PRAGMA user_version = 2")
    raw.execute(
        "INSERT INTO incidents (node, started_at, worst, root_cause, recovery_target_s)"
        " VALUES ('orders-workflow', 100.0, 'down', '[\"farm-oms-1\"]', 600.0)"
    )
    raw.close()

    with Store.open(path, clock=Clock(50_000.0)) as store:
        [resumed] = store.open_incidents()
        assert (resumed.id, resumed.node, resumed.root_cause) == (
            1,
            "orders-workflow",
            ("farm-oms-1",),
        )
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert raw.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert raw.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
    finally:
        raw.close()


def test_it_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text("version: 1\nnodes:\n  a: {}\n" * 50)

    assert refusal(path) == f"{path}: not a watchdog state file: it is not an SQLite database"
    assert path.read_text() == "version: 1\nnodes:\n  a: {}\n" * 50


def test_it_refuses_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path, clock=Clock(50_000.0)).close()
    data = bytearray(path.read_bytes())
    # Past the 100-byte header, page 1 holds the schema: wipe it.
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(data)

    assert refusal(path) == (
        f"{path}: the state file is corrupt (database disk image is malformed): "
        "move it aside to start a new history"
    )


def test_it_refuses_a_database_of_another_application(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    raw.close()

    assert refusal(path) == (
        f"{path}: not a watchdog state file: it holds tables of another application"
    )


def test_it_says_when_the_file_cannot_be_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "state.db"

    assert refusal(path) == (
        f"{path}: cannot open the state file: does its directory exist, and is it writable?"
    )


def test_postgres_refuses_a_database_of_another_application_untouched(
    postgres: PostgresServer,
) -> None:
    other = Backend("postgres", postgres.location(), PASSWORD, postgres)
    other.raw("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")

    with pytest.raises(StoreError) as caught:
        other.open()
    assert str(caught.value) == (
        f"{other.where}: not a watchdog database: it holds tables of another application"
        " (give the watchdog a database, or a schema, of its own)"
    )
    assert other.raw("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()") == [
        ("invoices",)
    ]


NO_HISTORY = {
    "sqlite": "no state file there: the daemon has not run with it yet",
    "postgres": "no watchdog history in this database: the daemon has not run with it yet",
}


def test_without_create_a_store_that_does_not_exist_yet_is_refused_not_made(
    backend: Backend,
) -> None:
    with pytest.raises(StoreError) as caught:
        backend.open(create=False)
    assert str(caught.value) == f"{backend.where}: {NO_HISTORY[backend.name]}"
    if backend.name == "sqlite":
        assert not Path(backend.location).exists()
    else:
        assert (
            backend.raw("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()") == []
        )

    backend.open().close()
    with backend.open(create=False) as store:
        assert store.open_incidents() == []


def test_it_refuses_calls_after_close(backend: Backend) -> None:
    store = backend.open(clock=Clock(50_000.0))
    store.close()
    store.close()

    with pytest.raises(StoreError) as caught:
        store.open_incidents()
    assert str(caught.value) == f"{backend.where}: the state store is closed"


# Incidents


def test_it_opens_an_incident_when_the_effective_state_fails(store: Store) -> None:
    record(store, effective("orders-workflow", UP, DEGRADED, 100.0, "antifraud"))

    assert store.open_incidents() == [
        Incident(
            id=1,
            node="orders-workflow",
            started_at=100.0,
            ended_at=None,
            worst=DEGRADED,
            root_cause=("antifraud",),
            recovery_target_s=600.0,
        )
    ]


def test_it_makes_degraded_then_down_then_up_one_incident_with_worst_down(
    store: Store,
) -> None:
    record(store, effective("orders-workflow", UP, DEGRADED, 100.0, "antifraud"))
    record(store, effective("orders-workflow", DEGRADED, DOWN, 160.0, "farm-oms-1"))
    record(store, effective("orders-workflow", DOWN, DEGRADED, 200.0, "antifraud"))
    record(store, effective("orders-workflow", DEGRADED, UP, 400.0))

    assert store.open_incidents() == []
    assert store.incidents(since=0.0) == [
        Incident(
            id=1,
            node="orders-workflow",
            started_at=100.0,
            ended_at=400.0,
            worst=DOWN,
            root_cause=("antifraud", "farm-oms-1"),
            recovery_target_s=600.0,
        )
    ]


def test_it_opens_a_new_incident_after_the_node_recovered(store: Store) -> None:
    record(
        store,
        effective("orders-search", UNKNOWN, DOWN, 100.0, "search-index"),
        effective("orders-search", DOWN, UP, 130.0),
        effective("orders-search", UP, DEGRADED, 500.0, "search-index"),
    )

    assert [(i.id, i.started_at, i.ended_at, i.worst) for i in store.incidents(0.0)] == [
        (1, 100.0, 130.0, DOWN),
        (2, 500.0, None, DEGRADED),
    ]


def test_it_keeps_an_incident_open_while_the_state_is_unknown(store: Store) -> None:
    record(
        store,
        effective("orders-workflow", UP, DOWN, 100.0, "farm-oms-1"),
        effective("orders-workflow", DOWN, UNKNOWN, 150.0),
        effective("orders-workflow", UNKNOWN, DOWN, 200.0, "farm-oms-1"),
    )

    [incident] = store.incidents(since=0.0)
    assert (incident.started_at, incident.ended_at, incident.worst) == (100.0, None, DOWN)


def test_it_stores_observed_transitions_without_opening_incidents(store: Store) -> None:
    record(store, observed("farm-oms-1", UP, DOWN, 100.0), observed("kv-a", UP, DEGRADED, 110.0))

    assert store.incidents(since=0.0) == []
    assert store.transitions(since=0.0) == [
        observed("farm-oms-1", UP, DOWN, 100.0),
        observed("kv-a", UP, DEGRADED, 110.0),
    ]


def test_it_ignores_a_recovery_with_no_open_incident(store: Store) -> None:
    record(store, effective("orders-workflow", UNKNOWN, UP, 100.0))

    assert store.incidents(since=0.0) == []
    assert store.transitions(since=0.0) == [effective("orders-workflow", UNKNOWN, UP, 100.0)]


def test_it_computes_the_breach_against_the_recovery_target(store: Store) -> None:
    record(
        store,
        effective("orders-workflow", UP, DOWN, 1_000.0, "farm-oms-1"),
        effective("orders-workflow", DOWN, UP, 1_600.0),
        effective("orders-workflow", UP, DOWN, 2_000.0, "farm-oms-1"),
        effective("orders-workflow", DOWN, UP, 2_601.0),
        effective("orders-workflow", UP, DOWN, 3_000.0, "farm-oms-1"),
    )
    on_target, late, ongoing = store.incidents(since=0.0)

    assert (on_target.duration_s(9_999.0), on_target.breached(9_999.0)) == (600.0, False)
    assert (late.duration_s(9_999.0), late.breached(9_999.0)) == (601.0, True)
    assert (ongoing.duration_s(3_600.0), ongoing.breached(3_600.0)) == (600.0, False)
    assert (ongoing.duration_s(3_600.5), ongoing.breached(3_600.5)) == (600.5, True)


def test_it_keeps_the_recovery_target_an_incident_opened_with(store: Store) -> None:
    record(store, effective("orders-workflow", UP, DOWN, 100.0, "farm-oms-1"))
    # A reload lengthens the target while the incident is open.
    store.record(
        [effective("orders-workflow", DOWN, DOWN, 150.0, "farm-oms-1")],
        recovery_targets={"orders-workflow": 3_600.0},
    )

    [incident] = store.open_incidents()
    assert (incident.recovery_target_s, incident.breached(701.0)) == (600.0, True)


def test_it_resumes_open_incidents_after_a_restart(backend: Backend) -> None:
    with backend.open(clock=Clock(50_000.0)) as before:
        record(
            before,
            effective("orders-search", UP, DOWN, 50.0, "farm-oms-1"),
            effective("orders-search", DOWN, UP, 60.0),
            effective("orders-workflow", UP, DEGRADED, 100.0, "antifraud"),
        )

    with backend.open(clock=Clock(50_000.0)) as after:
        [resumed] = after.open_incidents()
        assert (resumed.node, resumed.started_at, resumed.worst) == (
            "orders-workflow",
            100.0,
            DEGRADED,
        )
        # A restarted daemon starts from unknown: the same incident goes on.
        record(after, effective("orders-workflow", UNKNOWN, DOWN, 900.0, "farm-oms-1"))
        record(after, effective("orders-workflow", DOWN, UP, 1_000.0))

        assert [(i.node, i.started_at, i.ended_at, i.worst) for i in after.incidents(0.0)] == [
            ("orders-search", 50.0, 60.0, DOWN),
            ("orders-workflow", 100.0, 1_000.0, DOWN),
        ]


def test_it_writes_nothing_of_a_batch_that_fails(store: Store) -> None:
    record(store, observed("farm-oms-1", UP, DOWN, 100.0))

    with pytest.raises(StoreError) as caught:
        record(
            store,
            observed("orders-workflow", UP, DOWN, 110.0),
            effective("farm-oms-1", UP, DOWN, 110.0, "farm-oms-1"),
            effective("checkout", UP, DOWN, 110.0, "farm-oms-1"),
        )

    assert str(caught.value) == "no recovery target for node 'checkout'"
    assert store.transitions(since=0.0) == [observed("farm-oms-1", UP, DOWN, 100.0)]
    assert store.incidents(since=0.0) == []


def test_it_refuses_a_transition_time_that_is_not_finite(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        record(store, observed("farm-oms-1", UP, DOWN, float("nan")))

    assert str(caught.value) == (
        "transition of node 'farm-oms-1': time nan is not a finite number of seconds"
    )


def test_it_stamps_each_batch_with_the_injected_clock(backend: Backend) -> None:
    clock = Clock(7_000.0)
    with backend.open(clock=clock) as store:
        record(store, observed("farm-oms-1", UP, DOWN, 100.0))
        clock.now = 7_005.0
        record(store, observed("farm-oms-1", DOWN, UP, 101.0))

    stamps = backend.raw("SELECT at, recorded_at FROM transitions ORDER BY id")
    assert stamps == [(100.0, 7_000.0), (101.0, 7_005.0)]


def test_times_keep_their_sub_millisecond_precision(store: Store) -> None:
    at = 1_780_000_000.123456  # a timestamp of 2026, to the microsecond
    record(store, effective("orders-workflow", UP, DOWN, at, "farm-oms-1"))

    assert store.transitions(since=at)[0].at == at
    assert store.open_incidents()[0].started_at == at


def test_it_opens_one_incident_per_failure_however_the_batches_are_cut(backend: Backend) -> None:
    @given(
        st.lists(st.sampled_from([UP, UNKNOWN, DEGRADED, DOWN]), max_size=30),
        st.sets(st.integers(min_value=1, max_value=29)),
    )
    @settings(max_examples=200, deadline=None)
    def batches(states: list[State], cuts: set[int]) -> None:
        one_incident_per_failure(backend, states, cuts)

    batches()


def one_incident_per_failure(backend: Backend, states: list[State], cuts: set[int]) -> None:
    transitions = []
    previous = UNKNOWN
    for second, state in enumerate(states):
        transitions.append(effective("orders-workflow", previous, state, float(second), "x"))
        previous = state
    # The model: a failure opens, a worse failure raises, only up closes.
    expected: list[tuple[float, float | None, State]] = []
    for t in transitions:
        is_open = bool(expected) and expected[-1][1] is None
        if t.new in (DEGRADED, DOWN):
            if is_open:
                start, _, worst = expected[-1]
                expected[-1] = (start, None, max(worst, t.new))
            else:
                expected.append((t.at, None, t.new))
        elif t.new == UP and is_open:
            expected[-1] = (expected[-1][0], t.at, expected[-1][2])

    store = backend.emptied(Clock(50_000.0))
    bounds = [0, *sorted(c for c in cuts if c < len(transitions)), len(transitions)]
    for start, end in itertools.pairwise(bounds):
        store.record(transitions[start:end], recovery_targets=TARGETS)
    got = [(i.started_at, i.ended_at, i.worst) for i in store.incidents(since=0.0)]
    assert got == expected
    assert len(store.open_incidents()) == (1 if expected and expected[-1][1] is None else 0)


# Reading back: since, node, limit, summary


def test_it_filters_incidents_by_since_and_node(store: Store) -> None:
    record(
        store,
        effective("orders-search", UP, DOWN, 100.0, "search-index"),
        effective("orders-search", DOWN, UP, 200.0),
        effective("orders-workflow", UP, DOWN, 300.0, "farm-oms-1"),
        effective("orders-workflow", DOWN, UP, 900.0),
        effective("farm-oms-1", UP, DOWN, 50.0, "farm-oms-1"),
    )

    def spans(incidents: list[Incident]) -> list[tuple[str, float]]:
        return [(i.node, i.started_at) for i in incidents]

    # Ended before `since`: out; ended at or after it, or still open: in.
    assert spans(store.incidents(since=200.0)) == [
        ("farm-oms-1", 50.0),
        ("orders-search", 100.0),
        ("orders-workflow", 300.0),
    ]
    assert spans(store.incidents(since=200.5)) == [
        ("farm-oms-1", 50.0),
        ("orders-workflow", 300.0),
    ]
    assert spans(store.incidents(since=901.0)) == [("farm-oms-1", 50.0)]
    assert spans(store.incidents(since=0.0, node="orders-search")) == [("orders-search", 100.0)]
    assert store.incidents(since=201.0, node="orders-search") == []


def test_it_filters_transitions_by_since_node_and_limit(store: Store) -> None:
    history = [observed("farm-oms-1", UP, DOWN, 100.0 + i) for i in range(5)]
    history.insert(2, observed("kv-a", UP, DOWN, 101.5))
    record(store, *history)

    assert store.transitions(since=102.0) == [h for h in history if h.at >= 102.0]
    assert store.transitions(since=0.0, node="kv-a") == [history[2]]
    # The latest ones, in time order.
    assert store.transitions(since=0.0, limit=2) == history[-2:]
    assert store.transitions(since=0.0, node="farm-oms-1", limit=3) == [
        history[3],
        history[4],
        history[5],
    ]
    with pytest.raises(StoreError) as caught:
        store.transitions(since=0.0, limit=0)
    assert str(caught.value) == "limit must be at least 1, got 0"


@pytest.fixture
def history(store: Store) -> Store:
    record(
        store,
        # Three small incidents on a non-critical node: the recurring pattern.
        effective("orders-search", UP, DEGRADED, 100.0, "search-index"),
        effective("orders-search", DEGRADED, UP, 160.0),
        effective("orders-search", UP, DOWN, 1_000.0, "search-index"),
        effective("orders-search", DOWN, UP, 1_030.0),
        effective("orders-search", UP, DOWN, 5_000.0, "search-index"),
        effective("orders-search", DOWN, UP, 5_090.0),
        # A breach of the 10m target, then an incident still open.
        effective("orders-workflow", UP, DOWN, 2_000.0, "farm-oms-1"),
        effective("orders-workflow", DOWN, UP, 2_900.0),
        effective("orders-workflow", UP, DOWN, 9_700.0, "farm-oms-1"),
        effective("farm-oms-1", UP, DOWN, 9_000.0, "farm-oms-1"),
    )
    return store


def test_it_summarises_count_downtime_mttr_breaches_and_recurrence(history: Store) -> None:
    assert history.summary(since=0.0, now=10_000.0) == [
        NodeSummary("orders-search", 3, downtime_s=180.0, mttr_s=60.0, breaches=0, recurring=True),
        NodeSummary(
            "orders-workflow", 2, downtime_s=1_200.0, mttr_s=900.0, breaches=1, recurring=False
        ),
        NodeSummary("farm-oms-1", 1, downtime_s=1_000.0, mttr_s=None, breaches=0, recurring=False),
    ]


def test_it_clips_downtime_to_the_window_and_sorts_ties_by_downtime(history: Store) -> None:
    # The workflow's first incident straddles `since`: 400s of it are inside;
    # its time to recover stays the whole 900s. The open one has now breached.
    assert history.summary(since=2_500.0, now=10_400.0, recurring_at=2) == [
        NodeSummary(
            "orders-workflow", 2, downtime_s=1_100.0, mttr_s=900.0, breaches=2, recurring=True
        ),
        NodeSummary("farm-oms-1", 1, downtime_s=1_400.0, mttr_s=None, breaches=0, recurring=False),
        NodeSummary("orders-search", 1, downtime_s=90.0, mttr_s=90.0, breaches=0, recurring=False),
    ]


def test_it_leaves_out_incidents_that_start_after_now(history: Store) -> None:
    assert [s.node for s in history.summary(since=0.0, now=8_000.0)] == [
        "orders-search",
        "orders-workflow",
    ]


# Threads and crashes


def test_it_takes_calls_from_worker_threads(store: Store) -> None:
    async def main() -> None:
        await asyncio.gather(
            *(
                asyncio.to_thread(record, store, observed(f"kv-{i}", UP, DOWN, float(i)))
                for i in range(20)
            )
        )

    asyncio.run(main())
    assert sorted(t.node for t in store.transitions(since=0.0)) == sorted(
        f"kv-{i}" for i in range(20)
    )


CRASH = """
import os, signal, sys
from alerts.transitions import Transition
from topology import State
from watchdog.store import Store

class KillOnLookup(dict):
    # Looked up inside the transaction of a batch, after its first row.
    def __getitem__(self, node):
        if node == "farm-oms-1":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(node)

def t(node, view, old, new, at, *cause):
    return Transition(node, view, State.parse(old), State.parse(new), at, cause)

targets = KillOnLookup({"orders-workflow": 600.0, "orders-search": 14400.0})
store = Store.open(
    sys.argv[1], clock=lambda: 5000.0, password=os.environ.get("WATCHDOG_TEST_PASSWORD")
)
store.record([t("orders-search", "effective", "up", "down", 100.0, "search-index")],
             recovery_targets=targets)
store.record([t("search-index", "observed", "down", "up", 200.0),
              t("orders-search", "effective", "down", "up", 200.0)], recovery_targets=targets)
store.record([t("orders-workflow", "effective", "up", "degraded", 300.0, "antifraud")],
             recovery_targets=targets)
print("committed", flush=True)
store.record([t("farm-oms-1", "observed", "up", "down", 400.0, "farm-oms-1"),
              t("farm-oms-1", "effective", "up", "down", 400.0, "farm-oms-1")],
             recovery_targets=targets)
print("not reached", flush=True)
"""


def test_it_keeps_every_committed_transition_through_kill_9(backend: Backend) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CRASH, backend.location],
        cwd=ROOT,
        env={**os.environ, "WATCHDOG_TEST_PASSWORD": backend.password or ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (child.returncode, child.stdout, child.stderr) == (-signal.SIGKILL, "committed\n", "")
    if backend.name == "sqlite":
        # Nothing was checkpointed: what follows is read back from the WAL.
        assert Path(f"{backend.location}-wal").stat().st_size > 0

    with backend.open(clock=Clock(50_000.0)) as store:
        assert store.transitions(since=0.0) == [
            effective("orders-search", UP, DOWN, 100.0, "search-index"),
            Transition("search-index", "observed", DOWN, UP, 200.0),
            effective("orders-search", DOWN, UP, 200.0),
            effective("orders-workflow", UP, DEGRADED, 300.0, "antifraud"),
        ]
        assert store.open_incidents() == [
            Incident(
                id=2,
                node="orders-workflow",
                started_at=300.0,
                ended_at=None,
                worst=DEGRADED,
                root_cause=("antifraud",),
                recovery_target_s=600.0,
            )
        ]
        assert [(i.node, i.ended_at) for i in store.incidents(since=0.0)] == [
            ("orders-search", 200.0),
            ("orders-workflow", None),
        ]


def test_it_ends_the_open_incidents_of_nodes_a_reload_removed(backend: Backend) -> None:
    with backend.open() as store:
        down = [
            Transition("gone", "effective", State.UP, State.DOWN, 100.0, ("gone",)),
            Transition("kept", "effective", State.UP, State.DOWN, 100.0, ("kept",)),
        ]
        store.record(down, recovery_targets={"gone": 600.0, "kept": 600.0})
        assert store.end_incidents(["gone", "never-seen"], 50.0) == 1
        assert [(i.node, i.ended_at) for i in store.incidents(0)] == [
            ("gone", 100.0),  # never before it started
            ("kept", None),
        ]


# Postgres: daemons starting together, a server that goes away


def test_postgres_stores_opened_at_once_migrate_once(postgres: PostgresServer) -> None:
    url = postgres.location()
    go, stores, errors = threading.Barrier(4), [], []

    def start() -> None:
        go.wait()
        try:
            stores.append(Store.open(url, clock=lambda: 0.0, password=PASSWORD))
        except StoreError as err:
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert (errors, len(stores)) == ([], 4)
        record(stores[0], effective("orders-workflow", UP, DOWN, 100.0, "farm-oms-1"))
        assert [i.node for i in stores[3].open_incidents()] == ["orders-workflow"]
    finally:
        for store in stores:
            store.close()
    assert Backend("postgres", url, PASSWORD, postgres).version() == len(POSTGRES_MIGRATIONS)


def test_postgres_outage_is_a_store_error_and_the_store_reconnects_after(
    postgres: PostgresServer,
) -> None:
    # A database of its own: the test makes it refuse connections.
    backend = Backend("postgres", postgres.url(postgres.create_database()), PASSWORD, postgres)
    server, database = postgres, backend.database
    store = backend.open()
    record(store, effective("orders-workflow", UP, DOWN, 100.0, "farm-oms-1"))

    def cut(allow: bool) -> None:
        server.admin(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {str(allow).lower()}")
        server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        )

    # The connection dies while idle (a server restart, a failover) and the
    # server is back at once: the next call does not notice.
    cut(allow=True)
    assert [i.node for i in store.open_incidents()] == ["orders-workflow"]
    cut(allow=True)
    record(store, effective("orders-workflow", DOWN, UP, 200.0))

    # The server refuses: every call says so, as StoreError, in one line.
    cut(allow=False)
    with pytest.raises(StoreError) as writing:
        record(store, effective("orders-search", UP, DOWN, 300.0, "search-index"))
    assert str(writing.value).startswith(
        f"{backend.where}: cannot record transitions: cannot connect: "
    )
    assert f'database "{database}" is not currently accepting connections' in str(writing.value)
    assert "\n" not in str(writing.value)
    with pytest.raises(StoreError) as reading:
        store.incidents(since=0.0)
    assert str(reading.value).startswith(f"{backend.where}: cannot read incidents: ")

    # Back: the store carries on, nothing of the refused batch written.
    cut(allow=True)
    assert [(i.node, i.ended_at) for i in store.incidents(since=0.0)] == [
        ("orders-workflow", 200.0)
    ]
    record(store, effective("orders-search", UP, DOWN, 300.0, "search-index"))
    assert [i.node for i in store.open_incidents()] == ["orders-search"]
    store.close()


def test_postgres_that_will_not_take_the_tables_is_refused_naming_where_and_why(
    postgres: PostgresServer,
) -> None:
    # A schema the store's role may use but not create in (the superuser's).
    theirs = postgres.create_schema()
    postgres.admin(f"ALTER SCHEMA {theirs} OWNER TO postgres", database="watchdog")
    postgres.admin(f"GRANT USAGE ON SCHEMA {theirs} TO watchdog_test", database="watchdog")
    place = Backend("postgres", postgres.url("watchdog", theirs), PASSWORD, postgres)

    with pytest.raises(StoreError) as caught:
        place.open()
    assert str(caught.value) == (
        f"{place.where}: cannot migrate the schema: permission denied for schema {theirs}"
    )
