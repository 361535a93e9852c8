"""What the daemon keeps and shows holds no secret: a real daemon probes a
target with credentials in its URL, a token in its query and an
Authorization header, and follows a log that is a symlink to a config file
with a password in it. The state file it creates is its owner's alone, and
none of its tables (nor the WAL) holds any of those secrets; the status API,
which anyone may read, shows the password line masked."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import stat
import textwrap
import zlib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from conftest import Serve
from daemons import started
from http_wire import Recorder
from waiting import until

from topology import State
from watchdog.anomalies import LogRules
from watchdog.config import ProbeConfig, Schedule
from watchdog.latency_watch import LatencyWatch
from watchdog.probe_state import ProbeState
from watchdog.probes import HttpSpec, ProbeResult
from watchdog.probes.log import LogProbe, LogSpec
from watchdog.store import Store

pytestmark = pytest.mark.anyio

SECRETS = ("s3cret-pw", "q-tok-123", "hdr-xyz-456", "k3y-789", "hunter2-pw", "0ther-pw")


def assert_clean(data: bytes) -> None:
    for secret in SECRETS:
        assert secret.encode() not in data


def estate(tmp_path: Path, port: int, closed_port: int, log: Path) -> Path:
    path = tmp_path / "estate.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            state: {{path: state.db}}
            alerts: {{settle: 0s}}
            nodes:
              api:
                probes:
                  - http: "http://alice:s3cret-pw@127.0.0.1:{port}/health?token=q-tok-123"
                    interval: 100ms
                  - http: "http://127.0.0.1:{port}/ready"
                    headers: {{Authorization: Bearer hdr-xyz-456, X-Api-Key: k3y-789}}
                    interval: 100ms
              db:
                probes:
                  - http: "http://bob:0ther-pw@127.0.0.1:{closed_port}/x?token=q-tok-123"
                    interval: 100ms
                    failure_threshold: 1
              conf:
                probes:
                  - log: {log}
                    from: start
                    interval: 100ms
                    watch: [password]
            """
        )
    )
    return path


def every_row(path: Path) -> bytes:
    """Every value of every table, the compressed ones opened."""
    out = []
    connection = sqlite3.connect(path)
    try:
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = [row[0] for row in connection.execute(query)]
        for table in tables:
            assert table.isidentifier()  # our own names, safe in the query
            for row in connection.execute(f"SELECT * FROM {table}"):
                for value in row:
                    data = value if isinstance(value, bytes) else str(value).encode()
                    with contextlib.suppress(zlib.error):
                        data += zlib.decompress(data)  # the template miner's state
                    out.append(data)
    finally:
        connection.close()
    return b"\n".join(out)


async def test_the_state_file_is_private_and_holds_no_secret(
    tmp_path: Path, serve: Serve, closed_port: int
) -> None:
    config = tmp_path / "app.ini"
    config.write_text("[db]\nuser = bob\npassword=hunter2-pw\n")
    (tmp_path / "app.log").symlink_to(config)
    recorder = Recorder()
    async with serve(recorder) as server:
        path = estate(tmp_path, server.port, closed_port, tmp_path / "app.log")
        async with (
            started(path) as daemon,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}", timeout=5) as c,
        ):

            async def conf() -> dict[str, Any] | None:
                nodes = (await c.get("/api/v1/status")).json()["nodes"]
                node: dict[str, Any] = next(n for n in nodes if n["node"] == "conf")
                return node if node["effective"] == "degraded" else None

            node = await until(conf)
            # An outage alert of db went into the outbox.
            await until(daemon.outbox.counts)
            files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("state.db"))
            modes = {n: stat.S_IMODE((tmp_path / n).stat().st_mode) for n in files}
            status = (await c.get("/api/v1/status")).content

    assert modes == {"state.db": 0o600, "state.db-shm": 0o600, "state.db-wal": 0o600}
    [anomaly] = node["probes"][0]["log"]["anomalies"]
    assert (anomaly["kind"], anomaly["sample"]) == ("watched_pattern", "password=***")
    assert_clean(status)

    # The probes did carry their credentials.
    sent = {r.target: r.headers.get("authorization") for r in recorder.requests}
    assert sent["/health?token=q-tok-123"] == "Basic YWxpY2U6czNjcmV0LXB3"  # alice:s3cret-pw
    assert sent["/ready"] == "Bearer hdr-xyz-456"

    # Stopped: what was learned is saved. Neither the files nor any row holds
    # a secret.
    for name in sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("state.db")):
        assert_clean((tmp_path / name).read_bytes())
    rows = every_row(tmp_path / "state.db")
    assert b"latency" in rows  # baselines were saved, with a digest of their probe
    assert b"sha256:" in rows
    assert_clean(rows)


def test_an_existing_state_file_keeps_its_mode_and_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Store.open(path, clock=lambda: 0.0).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert f"store_permissions path={path} mode=0644: other users may read" in caplog.text

    caplog.clear()
    path.chmod(0o600)
    Store.open(path, clock=lambda: 0.0).close()
    assert "store_permissions" not in caplog.text


async def test_a_log_probe_saves_no_secret_and_shows_it_only_in_private(tmp_path: Path) -> None:
    config = tmp_path / "app.ini"
    config.write_text("FATAL cannot log in: password=hunter2-pw\n")
    link = tmp_path / "current.log"
    link.symlink_to(config)
    with Store.open(tmp_path / "state.db", clock=lambda: 0.0) as store:
        rules = LogRules(learning_s=0.0, watched=("password",))
        spec = LogSpec(str(link), rules=rules, from_start=True)
        probe = LogProbe(spec, "conf#0", state=ProbeState(store), clock=lambda: 0.0)
        await probe.check()
        shown = probe.details()["anomalies"]
        private = probe.details(private=True)["anomalies"]
        probe.close()
        rows = every_row(tmp_path / "state.db")

    masked, raw = "FATAL cannot log in: password=***", "FATAL cannot log in: password=hunter2-pw"
    assert {a["kind"]: a["sample"] for a in shown} == {
        "watched_pattern": masked,
        "new_error_template": masked,
    }
    assert {a["kind"]: a["sample"] for a in private} == {
        "watched_pattern": raw,
        "new_error_template": raw,
    }
    assert [a["template"] for a in shown] == [None, masked]
    assert [a["reason"] for a in shown] == [
        "watched pattern 'password': 1 line",
        f"new error template: {masked!r} (1 line)",
    ]
    assert_clean(rows)


def test_a_baseline_saved_with_its_probes_settings_is_kept_and_rewritten_without_them(
    tmp_path: Path,
) -> None:
    """A file written by an older version holds a probe's settings in plain
    text: the baseline is still its own, and the next save leaves no copy of
    them in the file (rewritten rows are zeroed, not left in free pages)."""
    spec = HttpSpec(
        url="http://alice:s3cret-pw@127.0.0.1:1/x?token=q-tok-123",
        headers=MappingProxyType({"Authorization": "Bearer hdr-xyz-456"}),
    )
    probe = ProbeConfig("api", 0, "http", spec, Schedule(), 1)
    with Store.open(tmp_path / "scratch.db", clock=lambda: 0.0) as scratch:
        learned = LatencyWatch(ProbeState(scratch))
        learned.replace([probe])
    for i in range(5):
        learned.track("api#0", ProbeResult(State.UP, "ok", 0.010), float(i))
    baseline = learned.baseline("api#0")
    assert baseline is not None
    old = json.dumps({"spec": repr(spec), "baseline": baseline.state()}).encode()

    path = tmp_path / "state.db"
    with Store.open(path, clock=lambda: 0.0) as store:
        ProbeState(store).save("api#0", {"latency": old}, 0.0)
    assert b"s3cret-pw" in path.read_bytes()

    with Store.open(path, clock=lambda: 0.0) as store:
        watch = LatencyWatch(ProbeState(store))
        watch.replace([probe])
        assert watch.details("api#0") == learned.details("api#0")
        watch.save(1.0)
    data = path.read_bytes()
    assert b"sha256:" in data
    assert_clean(data)
