"""Alerts end to end: a real daemon, a farm with fifty dependents going down,
the real slack-sdk client posting to a Slack-compatible server on loopback.
One root cause gives one message naming it and the critical nodes; the
recovery updates it. Every wait is bounded; nothing asserts a duration."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemons import started
from http_wire import Recorder, response
from processes import flagged
from slack_server import Fault, SlackServer
from waiting import until

from alerts.model import Alert, Notification
from alerts.sinks.console import render_line
from watchdog.cli import main
from watchdog.daemon import Daemon

pytestmark = pytest.mark.anyio

TOKEN = "xoxb-daemon-test-T0KEN-5151"


def estate(flag: Path, slack_url: str, state: Path, routes: str = "", labels: str = "") -> str:
    probe = flagged(flag)
    services = "".join(f"  svc-{i:02}: {{runs_on: [farm]}}\n" for i in range(48))
    return (
        textwrap.dedent(
            f"""\
            version: 1
            state: {{path: {state}}}
            alerts:
              settle: 300ms
              slack:
                token_env: WATCHDOG_TEST_SLACK_TOKEN
                base_url: {slack_url}
                channels: {{critical: "#incidents", default: "#ops"}}
            {routes}
            nodes:
              farm:
                kind: farm
                labels: {{{labels}}}
                probes:
                  - exec: [/bin/sh, -c, "{probe}"]
                    interval: 100ms
                    failure_threshold: 1
                    success_threshold: 1
              workflow: {{critical: true, runs_on: [farm]}}
              checkout: {{critical: true, runs_on: [farm]}}
            """
        )
        + services
    )


@pytest.fixture
def slack(no_proxy: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("WATCHDOG_TEST_SLACK_TOKEN", TOKEN)
    with SlackServer(
        token=TOKEN, channels={"#incidents": "C0INC", "#ops": "C0OPS", "#pay": "C0PAY"}
    ) as server:
        yield server


@pytest.fixture
async def daemon(tmp_path: Path, slack: Any) -> AsyncIterator[Daemon]:
    (tmp_path / "farm-ok").touch()
    path = tmp_path / "estate.yaml"
    path.write_text(estate(tmp_path / "farm-ok", slack.base_url, tmp_path / "state.db"))
    async with started(path) as running:
        yield running


async def test_a_farm_with_fifty_dependents_gives_exactly_one_slack_message(
    daemon: Daemon, slack: Any, tmp_path: Path
) -> None:
    (tmp_path / "farm-ok").unlink()
    [post] = await until(lambda: slack.calls_to("chat.postMessage"))

    # Let the alert loop run more rounds: nothing else may be sent.
    rounds = daemon.alert_rounds
    await until(lambda: daemon.alert_rounds >= rounds + 3)
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert daemon.outbox.counts() == {("slack", "delivered"): 1}

    assert post.params["channel"] == "#incidents"
    text = post.params["text"]
    assert "farm" in text
    assert "checkout" in text
    assert "workflow" in text
    assert TOKEN not in str([call.params for call in slack.calls])

    port = daemon.port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        shown = (await client.get("/api/v1/alerts")).json()
        metrics = (await client.get("/metrics")).text
    [alert] = shown["alerts"]
    assert (alert["key"], alert["severity"], alert["critical"], alert["collateral"]) == (
        "outage:farm",
        "critical",
        ["checkout", "workflow"],
        48,
    )
    assert shown["outbox"] == [{"sink": "slack", "state": "delivered", "count": 1}]
    assert 'watchdog_outbox_notifications{sink="slack",state="delivered"} 1.0' in metrics

    (tmp_path / "farm-ok").touch()
    await until(lambda: slack.calls_to("chat.update"))
    [update] = slack.calls_to("chat.update")
    assert update.params["ts"] == slack.messages[0].ts


def test_run_refuses_to_start_without_the_slack_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WATCHDOG_TEST_SLACK_TOKEN", raising=False)
    path = tmp_path / "estate.yaml"
    path.write_text(estate(tmp_path / "flag", "http://127.0.0.1:9/api/", tmp_path / "state.db"))
    assert main(["run", str(path)]) == 3
    assert capsys.readouterr().err == (
        "watchdog run: alerts.slack.token_env: the environment variable "
        "WATCHDOG_TEST_SLACK_TOKEN is not set or empty\n"
    )
    assert not (tmp_path / "state.db").exists()


async def test_the_heartbeat_pings_while_the_daemon_lives(tmp_path: Path) -> None:
    pings: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        pings.append(request.decode().split()[1])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = tmp_path / "estate.yaml"
    path.write_text(
        "version: 1\n"
        f"state: {{path: {tmp_path / 'state.db'}}}\n"
        "alerts:\n"
        f"  heartbeat: {{url: 'http://127.0.0.1:{port}/ping/secret', interval: 100ms}}\n"
        "nodes:\n  a: {}\n"
    )
    try:
        async with started(path):
            await until(lambda: len(pings) >= 3)
    finally:
        server.close()
        await server.wait_closed()
    assert set(pings) == {"/ping/secret"}


async def test_a_route_on_the_farms_labels_picks_the_channel_and_adds_the_console(
    tmp_path: Path, slack: Any
) -> None:
    routes = (
        "  routes:\n"
        "                - match: {labels: {team: payments}, critical: true}\n"
        "                  sinks: [slack, console]\n"
        "                  slack_channel: '#pay'\n"
    )
    (tmp_path / "farm-ok").touch()
    path = tmp_path / "estate.yaml"
    text = estate(tmp_path / "farm-ok", slack.base_url, tmp_path / "s.db", routes, "team: payments")
    path.write_text(text)
    async with started(path) as daemon:
        (tmp_path / "farm-ok").unlink()
        [post] = await until(lambda: slack.calls_to("chat.postMessage"))
        assert post.params["channel"] == "#pay"
        # Each sink delivers on its own: wait for both.
        both = {("slack", "delivered"): 1, ("console", "delivered"): 1}
        await until(lambda: daemon.outbox.counts() == both, awaited="both sinks delivered")


def test_run_refuses_to_start_with_a_broken_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tpl" / "console").mkdir(parents=True)
    broken = tmp_path / "tpl" / "console" / "default.j2"
    broken.write_text("{% set line %}\n{{ alert.nodes }}{% endset %}\n")
    path = tmp_path / "estate.yaml"
    path.write_text(
        f"version: 1\nstate: {{path: {tmp_path / 's.db'}}}\nalerts: {{templates: tpl}}\n"
        "nodes:\n  a: {}\n"
    )
    assert main(["run", str(path)]) == 3
    assert capsys.readouterr().err == (
        f"watchdog run: alerts.templates: {broken}:2: "
        "'alerts.model.Alert object' has no attribute 'nodes'\n"
    )


NO_NOPE = "'alerts.model.Alert object' has no attribute 'nope'"


async def test_a_reload_reads_the_templates_again_and_refuses_a_broken_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "tpl" / "console").mkdir(parents=True)
    template = tmp_path / "tpl" / "console" / "default.j2"
    template.write_text("{% set line %}first {{ alert.key }}{% endset %}")
    path = tmp_path / "estate.yaml"
    path.write_text(
        f"version: 1\nstate: {{path: {tmp_path / 's.db'}}}\nalerts: {{templates: tpl}}\n"
        "nodes:\n  a: {}\n"
    )
    daemon = Daemon(path)
    try:
        [console] = daemon.sinks
        note = Notification(
            "n#1", Alert("outage:a", "outage", "warning", ("a",), "a down", 0.0), "firing", 1.0
        )
        assert render_line(note, daemon.templates) == "first outage:a"

        template.write_text("{% set line %}{{ alert.nope }}{% endset %}")
        refused = await daemon.reload()
        assert (refused.ok, refused.problems) == (
            False,
            (f"alerts.templates: {template}:1: {NO_NOPE}",),
        )
        assert render_line(note, daemon.templates) == "first outage:a"  # the running ones stay

        template.write_text("{% set line %}second {{ alert.key }}{% endset %}")
        assert (await daemon.reload()).ok
        assert render_line(note, daemon.templates) == "second outage:a"
        assert console is daemon.sinks[0]  # the same sink, speaking the new words
    finally:
        daemon.store.close()


class MovableClock:
    """The daemon's clock, real time plus what the test moved it on."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead_s


def posted(recorder: Recorder, alertname: str) -> list[dict[str, Any]]:
    """The alerts named `alertname` in every post `recorder` received."""
    return [
        alert
        for request in recorder.requests
        for alert in json.loads(request.body)
        if alert["labels"]["alertname"] == alertname
    ]


async def test_alertmanager_hears_the_heartbeat_and_firing_alerts_again_and_again(
    tmp_path: Path, serve: Any
) -> None:
    alertmanager = Recorder()
    webhook = Recorder(lambda _: response(400, b"no such hook\n"))  # a permanent refusal
    flag = tmp_path / "farm-ok"
    flag.touch()
    probe = flagged(flag)
    async with serve(alertmanager) as am, serve(webhook) as hook:
        path = tmp_path / "estate.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                version: 1
                state: {{path: {tmp_path / "state.db"}}}
                alerts:
                  settle: 0s
                  alertmanager: {{url: "http://127.0.0.1:{am.port}"}}
                  webhook: {{url: "http://127.0.0.1:{hook.port}/hook"}}
                  heartbeat: {{interval: 100ms}}
                nodes:
                  farm:
                    kind: farm
                    probes:
                      - exec: [/bin/sh, -c, "{probe}"]
                        interval: 100ms
                        failure_threshold: 1
                  workflow: {{critical: true, runs_on: [farm]}}
                """
            )
        )
        clock = MovableClock()
        async with started(path, clock=clock) as daemon:
            # The dead man's switch: the always-firing Watchdog alert, again and again.
            await until(lambda: len(posted(alertmanager, "Watchdog")) >= 2)

            flag.unlink()
            first, *_ = await until(lambda: posted(alertmanager, "WatchdogOutage"))
            assert first["labels"]["root_cause"] == "farm"
            # Past the resend interval: posted again, endsAt pushed on.
            clock.ahead_s += 80
            again = await until(lambda: posted(alertmanager, "WatchdogOutage")[1:])
            assert again[0]["labels"] == first["labels"]
            assert again[0]["endsAt"] > first["endsAt"]

            # The webhook refused for good: given up, and shown as such.
            await until(lambda: daemon.outbox.counts().get(("webhook", "failed")))
            port = daemon.port
            failed = 'watchdog_outbox_notifications{sink="webhook",state="failed"} 1.0'
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                outbox = (await c.get("/api/v1/alerts")).json()["outbox"]
                assert {"sink": "webhook", "state": "failed", "count": 1} in outbox

                # /metrics shows the outbox as of the last published round
                # (about a second behind), so it is polled, not read once.
                async def metrics_show_it() -> bool:
                    return failed in (await c.get("/metrics")).text

                await until(metrics_show_it, awaited="/metrics shows the failed notification")


async def test_a_hanging_slack_server_does_not_delay_the_webhook(
    tmp_path: Path, slack: Any, serve: Any
) -> None:
    slack.fail_next(*[Fault.hanging()] * 5)  # Slack takes requests and never answers
    hook = Recorder()
    (tmp_path / "farm-ok").touch()
    async with serve(hook) as receiver:
        text = estate(tmp_path / "farm-ok", slack.base_url, tmp_path / "state.db").replace(
            "  slack:\n", f"  webhook: {{url: 'http://127.0.0.1:{receiver.port}/hook'}}\n  slack:\n"
        )
        path = tmp_path / "estate.yaml"
        path.write_text(text)
        async with started(path) as daemon:

            def webhook_events() -> list[tuple[str, str]]:
                bodies = [json.loads(r.body) for r in hook.requests]
                return [(b["alert"]["key"], b["event"]) for b in bodies]

            (tmp_path / "farm-ok").unlink()
            await until(lambda: ("outage:farm", "firing") in webhook_events())
            (tmp_path / "farm-ok").touch()
            await until(lambda: ("outage:farm", "resolved") in webhook_events())
            # Slack still holds its first request: nothing of it was delivered.
            assert slack.calls == []  # a call is recorded when answered
            status = daemon.delivery.status()
            assert status["slack"].busy
            assert daemon.outbox.counts().get(("slack", "delivered")) is None
            # Marked delivered once its answer is in, a moment after.
            await until(lambda: daemon.outbox.counts().get(("webhook", "delivered")) == 2)
        slack.release.set()


def storm_estate(flag: Path, state: Path, hook: str) -> str:
    """A farm with dependents (one critical, one also failing its own
    probe), four replicated services whose probes fail with the farm though
    the topology says their other replica carries them, and nodes probed up
    that the topology says the farm, or those services, take down."""
    fails = flagged(flag)
    ok = "echo 'OK - fine'"

    def probe(command: str) -> str:
        return (
            f'    probes: [{{exec: [/bin/sh, -c, "{command}"], interval: 100ms, '
            "failure_threshold: 1, success_threshold: 1}]\n"
        )

    text = (
        f"version: 1\nstate: {{path: {state}}}\n"
        f"alerts: {{settle: 1s, webhook: {{url: '{hook}'}}}}\nnodes:\n"
        f"  farm:\n    kind: farm\n{probe(fails)}"
        "  farm-2: {kind: farm}\n"
        "  workflow: {critical: true, runs_on: [farm]}\n"
        f"  batch:\n    runs_on: [farm]\n{probe(fails)}"
    )
    text += "".join(f"  svc-{i:02}: {{runs_on: [farm]}}\n" for i in range(20))
    text += "".join(f"  rep-{i}:\n    runs_on: [farm, farm-2]\n{probe(fails)}" for i in range(4))
    text += "".join(f"  api-{i}:\n    runs_on: [farm]\n{probe(ok)}" for i in range(3))
    text += f"  web:\n    depends_on: [rep-1]\n{probe(ok)}"
    return text


async def test_a_farm_storm_gives_one_alert_per_root_cause_and_one_drift_alert_per_cause(
    tmp_path: Path, serve: Any
) -> None:
    hook = Recorder()
    flag = tmp_path / "farm-ok"
    flag.touch()
    async with serve(hook) as receiver:
        path = tmp_path / "estate.yaml"
        url = f"http://127.0.0.1:{receiver.port}/hook"
        path.write_text(storm_estate(flag, tmp_path / "state.db", url))
        async with started(path) as daemon:

            def sent() -> list[dict[str, Any]]:
                return [json.loads(r.body) for r in hook.requests]

            flag.unlink()
            await until(lambda: len(sent()) >= 4, awaited="four messages")
            rounds = daemon.alert_rounds
            await until(lambda: daemon.alert_rounds >= rounds + 3)
            fired = {b["alert"]["key"]: b["alert"] for b in sent()}
            assert [b["event"] for b in sent()] == ["firing"] * 4
            # Named after the first of them to fail: which one, the race decides.
            [first] = {k.rpartition(":")[2] for k in fired if ":unexplained:" in k}
            assert sorted(fired) == [
                "drift:farm",
                f"drift:unexplained:{first}",
                "outage:farm",
                f"outage:unexplained:{first}",
            ]
            farm = fired["outage:farm"]
            assert [c["node"] for c in farm["critical"]] == ["workflow"]
            assert "batch" in farm["collateral"]
            assert len(farm["collateral"]) == 1 + 20 + 3  # batch, svc-*, api-*
            folded = fired[f"outage:unexplained:{first}"]
            assert folded["root_cause"] == ["rep-0", "rep-1", "rep-2", "rep-3"]
            assert folded["summary"] == (
                "4 failures within 1s that the topology does not explain (rep-0, rep-1, rep-2, "
                "rep-3); 1 other node fail with them; they may share a cause the topology is "
                "missing: all 4 need farm (down), all 4 need farm-2"
            )
            assert fired["drift:farm"]["collateral"] == ["api-0", "api-1", "api-2"]
            assert fired[f"drift:unexplained:{first}"]["collateral"] == ["web"]

            flag.touch()
            await until(lambda: len(sent()) >= 8, awaited="four resolutions")
            assert [b["event"] for b in sent()[4:]] == ["resolved"] * 4
