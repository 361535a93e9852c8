"""A real `watchdog run` process killed with SIGKILL just after Slack took
its message (the answer never came back), then started again on the same
state file while the outage goes on: nothing lost, nothing sent twice, and
the recovery still updates the original message. The real slack-sdk client
in the daemon, a Slack-compatible server on loopback in the test."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import answers, daemon, flagged
from slack_server import Fault, SlackServer
from waiting import PROCESS_DEADLINE_S, WATCHDOG, free_port, until_blocking

TOKEN = "xoxb-kill-T0KEN-9999"


@pytest.fixture
def slack(no_proxy: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackServer]:
    monkeypatch.setenv("WATCHDOG_TEST_SLACK_TOKEN", TOKEN)
    with SlackServer(token=TOKEN, channels={"#incidents": "C0INC", "#ops": "C0OPS"}) as server:
        yield server


def start(path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([WATCHDOG, "run", str(path)], stdout=out, stderr=out)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def counts(url: str) -> dict[tuple[str, str], int]:
    try:
        outbox = httpx.get(f"{url}/api/v1/alerts", timeout=2).json()["outbox"]
    except httpx.TransportError:
        return {}
    return {(o["sink"], o["state"]): o["count"] for o in outbox}


def write_estate(tmp_path: Path, flag: Path, port: int, slack: SlackServer) -> Path:
    """A farm probed every 200 ms (up while `flag` exists), a critical
    workflow on it, alerts to `slack` at once; the daemon's API on `port`."""
    probe = flagged(flag)
    path = tmp_path / "estate.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            server: {{listen: "127.0.0.1:{port}"}}
            state: {{path: state.db}}
            alerts:
              settle: 0s
              slack:
                token_env: WATCHDOG_TEST_SLACK_TOKEN
                base_url: {slack.base_url}
                channels: {{critical: "#incidents", default: "#ops"}}
            nodes:
              farm:
                kind: farm
                probes:
                  - exec: [/bin/sh, -c, "{probe}"]
                    interval: 200ms
                    failure_threshold: 1
                    success_threshold: 1
              workflow: {{critical: true, runs_on: [farm]}}
            """
        )
    )
    return path


def test_a_daemon_killed_mid_delivery_and_restarted_sends_nothing_twice(
    tmp_path: Path, slack: SlackServer
) -> None:
    flag = tmp_path / "farm-ok"
    flag.touch()
    port = free_port()
    path = write_estate(tmp_path, flag, port, slack)
    url, log = f"http://127.0.0.1:{port}", tmp_path / "daemon.log"
    slack.fail_next(Fault.lost_answer())  # Slack takes the first post, never answers
    first = start(path, log)
    try:
        until_blocking(lambda: ready(url))
        flag.unlink()
        until_blocking(lambda: slack.messages)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=PROCESS_DEADLINE_S) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=PROCESS_DEADLINE_S)
    slack.release.set()

    second = start(path, log)  # the outage goes on
    try:
        until_blocking(lambda: counts(url).get(("slack", "delivered")) == 1)
        [original] = slack.messages
        assert len(slack.calls_to("chat.postMessage")) == 1
        assert "farm" in original.text

        flag.touch()  # recovered: the original message is updated, its thread told
        [update] = until_blocking(lambda: slack.calls_to("chat.update"))
        assert (update.params["channel"], update.params["ts"]) == ("C0INC", original.ts)
        until_blocking(lambda: counts(url).get(("slack", "delivered")) == 2)
        [_, reply] = slack.messages
        assert reply.thread_ts == original.ts
        assert TOKEN not in log.read_text()
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=PROCESS_DEADLINE_S)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(timeout=PROCESS_DEADLINE_S)


def test_a_secret_quoted_back_by_the_slack_server_never_reaches_the_daemons_log(
    tmp_path: Path, slack: SlackServer
) -> None:
    # A proxy's error pages quote the request's Authorization header, then
    # one answer under a 200 that is not JSON, then Slack is itself again.
    slack.fail_next(
        Fault.quoting(502),
        Fault.quoting(200, "application/json"),
        Fault.quoting(500, "text/plain"),
    )
    flag = tmp_path / "farm-ok"
    port = free_port()
    path = write_estate(tmp_path, flag, port, slack)
    url, log = f"http://127.0.0.1:{port}", tmp_path / "daemon.log"
    with daemon(path, log, prefix=()):
        until_blocking(lambda: answers(url))  # the farm is down from the start
        # Three refusals, retried with backoff (1 s, 2 s, 4 s), then posted.
        until_blocking(lambda: counts(url).get(("slack", "delivered")) == 1, deadline=60)
    assert [c.status for c in slack.calls[:3]] == [502, 200, 500]  # each quoted the token
    assert len(slack.messages) == 1
    text = log.read_text()
    assert "delivery failed sink=slack" in text
    assert TOKEN not in text
    assert "Bearer" not in text
