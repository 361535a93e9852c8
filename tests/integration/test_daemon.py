"""The daemon end to end on loopback: real targets, real scheduler, real API
over HTTP, real SQLite file. Every wait is bounded by a deadline on a
condition; nothing asserts a duration."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemons import started
from prometheus_client.parser import text_string_to_metric_families
from waiting import until

from alerts.codec import loads
from topology import Action, State
from watchdog.daemon import WATCH_INTERVAL_S, Daemon
from watchdog.probes import ProbeResult
from watchdog.store import Store

pytestmark = pytest.mark.anyio


class Target:
    """A TCP target that can be taken down and brought back (the 'farm'),
    answering every connection with a line."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0

    async def up(self) -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"ok\n")
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(answer, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        self.server = None


@pytest.fixture
async def farm() -> AsyncIterator[Target]:
    target = Target()
    await target.up()
    yield target
    if target.server is not None:
        await target.down()


def estate(farm_port: int, state: Path) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        state: {{path: {state}}}
        nodes:
          farm:
            kind: farm
            probes:
              - tcp: 127.0.0.1:{farm_port}
                interval: 100ms
                timeout: 1s
                failure_threshold: 1
                success_threshold: 1
          workflow:
            critical: true
            runs_on: [farm]
            probes:
              - exec: [/bin/sh, -c, "echo 'OK - fine|time=1'"]
                interval: 100ms
                failure_threshold: 1
          search: {{runs_on: [farm]}}
        """
    )


async def status(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/v1/status")
    assert response.status_code == 200
    return {n["node"]: n for n in response.json()["nodes"]}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


TOKEN = "api-T0KEN-for-tests-9911"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def problem(path: str, message: str) -> dict[str, Any]:
    """A problem of a request as the API answers it (the CLI's JSON shape)."""
    return {"file": None, "line": None, "path": path, "message": message}


@pytest.fixture
async def running(
    tmp_path: Path, farm: Target, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    monkeypatch.setenv("WATCHDOG_API_TOKEN", TOKEN)
    path = tmp_path / "estate.yaml"
    path.write_text(estate(farm.port, tmp_path / "history.db"))
    async with started(path, ready=False) as daemon:
        url = f"http://127.0.0.1:{daemon.port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            yield daemon, client


async def test_it_becomes_ready_and_shows_every_node(
    running: tuple[Daemon, httpx.AsyncClient],
) -> None:
    _, client = running
    assert (await client.get("/-/healthy")).status_code == 200

    async def ready() -> bool:
        return (await client.get("/-/ready")).status_code == 200

    await until(ready)
    nodes = await status(client)
    assert {n: (v["observed"], v["effective"]) for n, v in nodes.items()} == {
        "farm": ("up", "up"),
        "search": (None, "up"),
        "workflow": ("up", "up"),
    }
    [probe] = nodes["workflow"]["probes"]
    assert (probe["probe"], probe["verdict"], probe["last_state"], probe["last_reason"]) == (
        "workflow#0",
        "up",
        "up",
        "OK - fine",
    )
    assert "latency" not in probe  # an exec probe has no latency baseline

    # The TCP probe's latency: percentiles of its window, learning its baseline.
    async def sampled() -> dict[str, Any] | None:
        [farm] = (await status(client))["farm"]["probes"]
        return farm["latency"] if farm["latency"]["samples"] >= 2 else None

    latency = await until(sampled)
    assert 0 < latency["p50_s"] <= latency["p95_s"] <= latency["p99_s"]
    assert (latency["baseline_p95_s"], latency["regression"]) == (None, None)  # learning
    text = (await client.get("/metrics")).text
    assert (
        'watchdog_probe_latency_recent_seconds{node="farm",percentile="95",probe="farm#0"}' in text
    )
    assert 'watchdog_probe_latency_regression{node="farm",probe="farm#0"} 0.0' in text


async def test_a_farm_going_down_takes_the_critical_service_down_naming_the_farm(
    running: tuple[Daemon, httpx.AsyncClient], farm: Target
) -> None:
    daemon, client = running
    await until(daemon.ready)
    await farm.down()

    async def workflow_down() -> dict[str, Any] | None:
        node = (await status(client))["workflow"]
        return node if node["effective"] == "down" else None

    workflow = await workflow_down() or await until(workflow_down)
    assert (workflow["observed"], workflow["causes"]) == ("up", ["farm"])
    drift = (await client.get("/api/v1/status")).json()["drift"]
    assert [d["node"] for d in drift] == ["workflow"]

    metrics = samples((await client.get("/metrics")).text)
    assert (
        metrics[("watchdog_node_effective_state", (("critical", "true"), ("node", "workflow")))]
        == 3
    )
    assert metrics[("watchdog_node_observed_state", (("node", "farm"),))] == 3
    assert metrics[("watchdog_topology_drift", (("node", "workflow"),))] == 1
    assert (
        metrics[("watchdog_transitions_total", (("node", "workflow"), ("view", "effective")))] >= 1
    )

    incidents = (await client.get("/api/v1/incidents?since=1h")).json()["incidents"]
    assert {(i["node"], i["worst"], tuple(i["root_cause"]), i["ended_at"]) for i in incidents} >= {
        ("workflow", "down", ("farm",), None)
    }

    await farm.up()

    async def workflow_up() -> bool:
        return (await status(client))["workflow"]["effective"] == "up"

    await until(workflow_up)
    incidents = (await client.get("/api/v1/incidents?since=1h")).json()["incidents"]
    ended = {i["node"]: i["ended_at"] is not None for i in incidents}
    assert {"farm", "workflow"} <= set(ended)  # not an empty list passing for ended
    assert all(ended.values())


async def test_status_takes_filters_and_refuses_bad_ones(
    running: tuple[Daemon, httpx.AsyncClient], farm: Target
) -> None:
    daemon, client = running
    await until(daemon.ready)
    await farm.down()

    async def down() -> list[str]:
        answer = await client.get("/api/v1/status", params={"state": "down"})
        assert answer.status_code == 200, answer.text
        return sorted(n["node"] for n in answer.json()["nodes"])

    assert await until(down) == ["farm", "search", "workflow"]

    async def names(**params: Any) -> list[str]:
        answer = await client.get("/api/v1/status", params=params)
        assert answer.status_code == 200
        return [n["node"] for n in answer.json()["nodes"]]

    assert await names(state="down", critical="true") == ["workflow"]
    assert await names(critical="false", node=["farm", "search"]) == ["farm", "search"]
    assert await names(state=["up", "degraded"]) == []
    bad = await client.get(
        "/api/v1/status", params={"state": "sideways", "critical": "yes", "node": "wrkflow"}
    )
    assert bad.status_code == 400
    assert bad.json()["problems"] == [
        problem("state", "expected one of up, unknown, degraded, down, got 'sideways'"),
        problem("critical", "expected true or false, got 'yes'"),
        problem("node", "unknown node 'wrkflow' (did you mean 'workflow'?)"),
    ]
    unknown = await client.get("/api/v1/status", params={"nodes": "farm"})
    assert unknown.json()["problems"] == [
        problem("", "unknown parameter 'nodes': use node, state, critical")
    ]


async def test_blast_radius_answers_on_live_state(
    running: tuple[Daemon, httpx.AsyncClient],
) -> None:
    daemon, client = running
    await until(daemon.ready)
    answer = (await client.get("/api/v1/blast-radius?shutdown=farm")).json()
    assert (answer["verdict"], answer["exit_code"]) == ("critical", 2)
    assert [i["node"] for i in answer["impacted"] if i["critical"]] == ["workflow"]

    wrong = await client.get("/api/v1/blast-radius?shutdown=frm&reboot=x")
    assert wrong.status_code == 400
    assert wrong.json()["problems"] == [
        problem("shutdown", "unknown node 'frm' (did you mean 'farm'?)"),
        problem("", "unknown parameter 'reboot': use shutdown, drain, restart"),
    ]


async def test_mutating_endpoints_want_the_daemons_token_and_nothing_else(
    running: tuple[Daemon, httpx.AsyncClient],
    tmp_path: Path,
    farm: Target,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, client = running
    missing = "a bearer token is required: Authorization: Bearer $WATCHDOG_API_TOKEN"
    wrong = "wrong token: it is not the daemon's $WATCHDOG_API_TOKEN"
    for headers, wanted in (
        ({}, missing),
        ({"Authorization": TOKEN}, missing),  # the token without its scheme
        ({"Authorization": "Basic " + TOKEN}, missing),
        ({"Authorization": "Bearer not-the-token"}, wrong),
        ({"Authorization": "Bearer " + TOKEN + "x"}, wrong),
    ):
        for method, url in (("POST", "/-/reload"), ("POST", "/api/v1/maneuvers")):
            answer = await client.request(method, url, headers=headers, json={})
            assert (answer.status_code, answer.json()["problems"]) == (
                401,
                [problem("", wanted)],
            ), headers
    assert (await client.get("/api/v1/maneuvers")).status_code == 200  # reads need none

    # No token in the daemon's environment: mutating endpoints are off.
    monkeypatch.delenv("WATCHDOG_API_TOKEN")
    path = tmp_path / "tokenless.yaml"
    path.write_text(estate(farm.port, tmp_path / "tokenless.db"))
    async with started(path, ready=False) as tokenless:
        url = f"http://127.0.0.1:{tokenless.port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as other:
            off = await other.post("/-/reload", headers=AUTH)
    assert (off.status_code, off.json()["problems"]) == (
        403,
        [
            problem(
                "",
                "mutating endpoints are disabled: set WATCHDOG_API_TOKEN"
                " in the daemon's environment",
            )
        ],
    )


async def test_a_bad_reload_keeps_the_running_topology_and_says_why(
    running: tuple[Daemon, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, client = running
    path = tmp_path / "estate.yaml"
    good = path.read_text()
    path.write_text(good.replace("runs_on: [farm]\n    probes", "runs_on: [frm]\n    probes"))

    assert (await client.post("/-/reload")).status_code == 401
    refused = await client.post("/-/reload", headers=AUTH)
    assert refused.status_code == 400
    # Where in which file, as the CLI's JSON says it.
    assert refused.json()["problems"] == [
        {
            "file": str(path),
            "line": 14,
            "path": "nodes.workflow.runs_on[0]",
            "message": "unknown node 'frm' (did you mean 'farm'?)",
        }
    ]
    metrics = samples((await client.get("/metrics")).text)
    assert metrics[("watchdog_config_last_reload_successful", ())] == 0
    assert set(await status(client)) == {"farm", "search", "workflow"}

    path.write_text(good + "  reporting: {runs_on: [farm]}\n")
    assert (await client.post("/-/reload", headers=AUTH)).status_code == 200
    assert set(await status(client)) == {"farm", "search", "workflow", "reporting"}
    metrics = samples((await client.get("/metrics")).text)
    assert metrics[("watchdog_config_last_reload_successful", ())] == 1


async def test_a_restart_resumes_open_incidents(tmp_path: Path, farm: Target) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(estate(farm.port, tmp_path / "history.db"))
    await farm.down()

    for _ in range(2):
        async with started(path) as daemon:
            await until(lambda d=daemon: d.live.states["workflow"].name == "DOWN")

    with Store.open(tmp_path / "history.db", clock=lambda: 0.0) as store:
        open_incidents = {(i.node, i.root_cause) for i in store.open_incidents()}
        assert ("workflow", ("farm",)) in open_incidents
        assert len([i for i in store.incidents(0) if i.node == "workflow"]) == 1


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) is not installed"
)
async def test_promtool_accepts_the_metrics(running: tuple[Daemon, httpx.AsyncClient]) -> None:
    daemon, client = running
    await until(daemon.ready)
    text = (await client.get("/metrics")).text
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_maneuver_that_takes_a_critical_node_down_is_refused_unless_forced(
    running: tuple[Daemon, httpx.AsyncClient], farm: Target
) -> None:
    daemon, client = running
    await until(daemon.ready)
    body = {
        "actions": [{"action": "shutdown", "node": "farm"}],
        "by": "alice",
        "reason": "relieve search",
    }
    assert (await client.post("/api/v1/maneuvers", json=body)).status_code == 401

    refused = await client.post("/api/v1/maneuvers", json=body, headers=AUTH)
    assert refused.status_code == 409
    assert (refused.json()["state"], refused.json()["verdict"]) == ("refused", "critical")
    assert [i["node"] for i in refused.json()["impact"]["impacted"] if i["critical"]] == [
        "workflow"
    ]

    forced = await client.post("/api/v1/maneuvers", json={**body, "force": True}, headers=AUTH)
    assert (forced.status_code, forced.json()["state"], forced.json()["forced"]) == (
        201,
        "running",
        True,
    )
    ident = forced.json()["id"]

    await farm.down()  # the maneuver happens

    async def down() -> bool:
        return (await status(client))["workflow"]["effective"] == "down"

    await until(down)
    assert daemon.watched == {"workflow"}  # watched closely while it runs
    ended = await client.post(f"/api/v1/maneuvers/{ident}/end", headers=AUTH)
    assert ended.json()["outcome"] == "not recovered: farm, search, workflow"
    assert daemon.watched == frozenset()

    listed = (await client.get("/api/v1/maneuvers")).json()["maneuvers"]
    assert [(m["id"], m["state"], m["by"]) for m in listed] == [
        (ident, "ended", "alice"),
        (ident - 1, "refused", "alice"),
    ]
    # Each step announced through the sinks, naming who tried what.
    rows = daemon.store.query(
        "test", "SELECT notification FROM outbox WHERE sink = 'console' ORDER BY id"
    )
    said = [n.alert.summary for n in map(loads, (row[0] for row in rows))]
    assert [s for s in said if "alice" in s] == [
        "alice tried to shutdown farm (relieve search): refused, it takes critical workflow down",
        "alice forced shutdown farm (relieve search): it takes critical workflow down",
        f"maneuver {ident} by alice (shutdown farm) ended: not recovered: farm, search, workflow",
    ]

    unknown = await client.post(
        "/api/v1/maneuvers",
        json={"actions": [{"action": "shutdown", "node": "frm"}], "by": "bob"},
        headers=AUTH,
    )
    assert unknown.json() == {
        "problems": [problem("actions[0].node", "unknown node 'frm' (did you mean 'farm'?)")]
    }


async def test_silences_are_refused_on_what_critical_nodes_need_unless_forced(
    running: tuple[Daemon, httpx.AsyncClient],
) -> None:
    daemon, client = running
    body = {"node": "farm", "for": "2h", "by": "bob", "reason": "rack move"}
    refused = await client.post("/api/v1/silences", json=body, headers=AUTH)
    assert (refused.status_code, refused.json()["problems"]) == (
        409,
        [
            problem(
                "",
                "farm is needed by critical nodes: a silence there would hide their outage; "
                '--force ("force": true) to silence anyway',
            )
        ],
    )
    forced = await client.post("/api/v1/silences", json={**body, "force": True}, headers=AUTH)
    assert (forced.status_code, forced.json()["node"], forced.json()["forced"]) == (
        201,
        "farm",
        True,
    )
    plain = await client.post(
        "/api/v1/silences",
        json={"node": "search", "for": "30m", "by": "bob", "reason": "reindex"},
        headers=AUTH,
    )
    assert plain.status_code == 201
    listed = (await client.get("/api/v1/silences")).json()["silences"]
    assert [(s["node"], s["forced"]) for s in listed] == [("farm", True), ("search", False)]

    expired = await client.delete(f"/api/v1/silences/{plain.json()['id']}", headers=AUTH)
    assert expired.json()["expired"] is True
    listed = (await client.get("/api/v1/silences")).json()["silences"]
    assert [s["node"] for s in listed] == ["farm"]
    bad = await client.post(
        "/api/v1/silences", json={"node": "search", "for": "soon"}, headers=AUTH
    )
    assert bad.json() == {
        "problems": [
            problem(
                "for",
                "bad duration 'soon': expected a number and a unit (ms, s, m, h, d, w), "
                "e.g. '10m' or '1h30m'",
            )
        ]
    }
    announced = sum(n for (sink, _), n in daemon.outbox.counts().items() if sink == "console")
    assert announced == 3  # both silences (the forced one as a warning) and the expiry


def test_a_running_maneuver_makes_the_probes_of_its_critical_nodes_run_more_often(
    tmp_path: Path,
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(
        estate(9, tmp_path / "state.db")
        .replace("interval: 100ms", "interval: 1m")
        .replace(
            "search: {runs_on: [farm]}",
            "search:\n    runs_on: [farm]\n    probes: [{tcp: '127.0.0.1:9', interval: 1m}]",
        )
    )
    daemon = Daemon(path)
    try:
        maneuver, _ = daemon.maneuvers.start(
            daemon.live, [Action("shutdown", "farm")], by="alice", reason="r", force=True, at=1.0
        )
        daemon.watch(daemon.maneuvers.watched())
        intervals = {k: p.schedule.interval_s for k, p in daemon.scheduler.probes.items()}
        # workflow is critical and impacted; search is impacted but not critical.
        assert intervals == {"farm#0": 60.0, "workflow#0": WATCH_INTERVAL_S, "search#0": 60.0}
    finally:
        daemon.store.close()

    # A restart resumes the watch of a maneuver still running, then its end lifts it.
    daemon = Daemon(path)
    try:
        assert daemon.scheduler.probes["workflow#0"].schedule.interval_s == WATCH_INTERVAL_S
        daemon.maneuvers.end(daemon.live, maneuver.id, 2.0)
        daemon.watch(daemon.maneuvers.watched())
        assert daemon.scheduler.probes["workflow#0"].schedule.interval_s == 60.0
    finally:
        daemon.store.close()


class Hanging:
    """A probe that ignores its own timeout: it never answers."""

    async def check(self) -> ProbeResult:
        await asyncio.Event().wait()
        raise AssertionError("never set")


async def test_a_run_cut_off_at_its_deadline_is_inconclusive_never_down(
    tmp_path: Path,
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(
        f"version: 1\nstate: {{path: {tmp_path / 's.db'}}}\nnodes:\n"
        "  db:\n    probes: [{tcp: '127.0.0.1:9', timeout: 200ms, interval: 300ms}]\n"
    )
    daemon = Daemon(path, listen=("127.0.0.1", 0))
    daemon._checks["db#0"] = Hanging()  # in place of the TCP probe, before any run
    running = asyncio.create_task(daemon.run())
    try:

        def cut_off() -> bool:
            last = daemon.live.status(["db"])[0].probes[0]
            return last.last_reason == (
                "no verdict: the check did not end within its deadline of 1.2s"  # timeout + 1s
            )

        await until(cut_off)
        # Reported (the daemon gets ready), but no news about the target.
        assert daemon.ready()
        [status] = daemon.live.status(["db"])
        assert (status.observed, status.effective) == (State.UNKNOWN, State.UNKNOWN)
        assert status.probes[0].last_state is State.UNKNOWN
        assert list(daemon.impairment.counts(daemon.now())) == ["cut_off"]
        impaired = daemon.impairment.alert(daemon.now())
        assert impaired is not None
        assert impaired.summary.startswith("the watchdog cannot judge part of the estate: ")
        assert "cut off at the deadline: " in impaired.summary
    finally:
        daemon.stop()
        await asyncio.wait_for(running, 20)
