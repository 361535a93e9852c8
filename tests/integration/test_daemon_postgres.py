"""The daemon with its store in a real Postgres (`state: {url: ...}`, the
password from the environment): a real `watchdog run` process records an
incident when a target dies, is killed with SIGKILL, starts again and
carries on the same incident; `watchdog incidents` reads it from there;
an outage mid-run is a 503 from the API (why, in the log) and the daemon
carries on once the server is back; `run` refuses to start, in one line,
when the server cannot be reached or turns the password down. Every wait is
bounded; nothing asserts a duration."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import httpx
import pytest
from daemons import started
from postgres_server import PASSWORD, Backend, PostgresServer
from processes import accepting, answers, start, stop
from waiting import PROCESS_DEADLINE_S, free_port, until_blocking

from watchdog.cli import main

VARIABLE = "WATCHDOG_TEST_PG_PASSWORD"


def estate(path: Path, url: str, target: int, listen: int) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            server: {{listen: "127.0.0.1:{listen}"}}
            state:
              url: "{url}"
              password_env: {VARIABLE}
            nodes:
              farm:
                kind: farm
                probes:
                  - tcp: 127.0.0.1:{target}
                    interval: 100ms
                    timeout: 1s
                    failure_threshold: 1
                    success_threshold: 1
              workflow:
                critical: true
                runs_on: [farm]
            """
        )
    )
    return path


@pytest.fixture
def place(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """A schema of the test's own; its password in the environment, where
    the daemons the test starts find it."""
    monkeypatch.setenv(VARIABLE, PASSWORD)
    return Backend("postgres", postgres.location(), PASSWORD, postgres)


def recorded(place: Backend, node: str) -> list[tuple[int, int | None]]:
    """(id, incident) of the node's effective transitions, oldest first."""
    rows = place.raw(
        "SELECT id, incident_id FROM transitions WHERE node = ? AND view = 'effective' ORDER BY id",
        (node,),
    )
    return [(row[0], row[1]) for row in rows]


def test_a_killed_daemon_resumes_its_open_incident_from_postgres(
    tmp_path: Path, place: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "daemon.log"
    with accepting() as target:
        path = estate(tmp_path / "estate.yaml", place.location, target, port)
        first = start(path, log)
        try:
            until_blocking(lambda: answers(url))
        except BaseException:
            stop(first)
            raise
    try:  # the target is gone: the farm is down, and the workflow with it
        [(_, incident)] = until_blocking(lambda: recorded(place, "workflow"))
        assert incident is not None
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=PROCESS_DEADLINE_S) == -signal.SIGKILL
    finally:
        stop(first)

    second = start(path, log)
    try:
        # Its first picture of the workflow (down) is recorded against the
        # incident the first daemon opened, not a new one.
        until_blocking(lambda: len(recorded(place, "workflow")) == 2)
        assert [i for _, i in recorded(place, "workflow")] == [incident, incident]
        with place.open() as store:
            [still] = [i for i in store.open_incidents() if i.node == "workflow"]
            assert (still.id, still.root_cause, still.ended_at) == (incident, ("farm",), None)
            assert len([i for i in store.incidents(0) if i.node == "workflow"]) == 1

        assert main(["incidents", str(path), "--format", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)["incidents"]
        assert [(i["node"], i["id"], i["ended_at"]) for i in listed if i["node"] == "workflow"] == [
            ("workflow", incident, None)
        ]
    finally:
        assert stop(second) == 0
    assert PASSWORD not in log.read_text()


@pytest.mark.anyio
async def test_a_postgres_outage_mid_run_is_a_503_and_the_daemon_carries_on_after(
    tmp_path: Path,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(VARIABLE, PASSWORD)
    database = postgres.create_database()  # of its own: the test makes it refuse connections

    def cut(allow: bool) -> None:
        postgres.admin(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {str(allow).lower()}")
        postgres.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        )

    with accepting() as target:
        path = estate(tmp_path / "estate.yaml", postgres.url(database), target, 1)
        async with (
            started(path) as daemon,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{daemon.port}", timeout=5, trust_env=False
            ) as client,
        ):
            assert (await client.get("/api/v1/incidents?since=1h")).status_code == 200
            cut(allow=False)
            gone = await client.get("/api/v1/incidents?since=1h")
            assert gone.status_code == 503
            assert "the state store cannot answer now: see the daemon's log" in gone.text
            assert database not in gone.text
            cut(allow=True)
            assert (await client.get("/api/v1/incidents?since=1h")).status_code == 200
    said = [r.getMessage() for r in caplog.records if "cannot use the store" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith("api call cannot use the store op=incidents: postgresql://")
    assert "is not currently accepting connections" in said[0]


def test_run_refuses_to_start_when_postgres_cannot_be_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(VARIABLE, PASSWORD)
    closed = free_port()
    path = estate(
        tmp_path / "estate.yaml", f"postgresql://watchdog@127.0.0.1:{closed}/estate", 1, 1
    )

    assert main(["run", str(path)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        f"watchdog run: postgresql://***@127.0.0.1:{closed}/estate: cannot connect: "
        f'connection failed: connection to server at "127.0.0.1", port {closed} failed: '
        "Connection refused"
    )
    assert err.count("\n") == 1


def test_run_refuses_a_password_the_server_turns_down(
    tmp_path: Path,
    place: Backend,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(VARIABLE, "not-the-password")
    path = estate(tmp_path / "estate.yaml", place.location, 1, 1)

    assert main(["run", str(path)]) == 3
    err = capsys.readouterr().err
    assert 'password authentication failed for user "watchdog_test"' in err
    assert (err.count("\n"), "not-the-password" in err) == (1, False)


def test_incidents_on_a_database_the_daemon_never_wrote_says_so_and_creates_nothing(
    tmp_path: Path, place: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    path = estate(tmp_path / "estate.yaml", place.location, 1, 1)

    assert main(["incidents", str(path)]) == 3
    assert capsys.readouterr().err == (
        f"watchdog incidents: {place.where.replace('watchdog_test', '***')}: no watchdog "
        "history in this database: the daemon has not run with it yet\n"
    )
    assert place.raw("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()") == []
