"""A real `watchdog run` process that alerted, stopped, and started again
after the farm came back while it was down: the restarted daemon resolves
the alert it had sent, exactly once (a third start sends nothing more)."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import answers, daemon, flagged
from waiting import free_port, until_blocking


class Receiver:
    """A webhook receiver on loopback that keeps every body it gets."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[tuple[str, str]]:
        return [(b["alert"]["key"], b["event"]) for b in list(self.bodies)]


@pytest.fixture
def receiver(no_proxy: None) -> Iterator[Receiver]:
    recv = Receiver()
    recv.thread.start()
    try:
        yield recv
    finally:
        recv.server.shutdown()
        recv.server.server_close()


def status(url: str, path: str) -> Any:
    try:
        answer = httpx.get(f"{url}{path}", timeout=2)
    except httpx.TransportError:
        return None
    return answer.json() if answer.status_code == 200 else None


def alert_rounds(url: str) -> float:
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.TransportError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("watchdog_alert_rounds_total "):
            return float(line.split()[1])
    return 0.0


def delivered(url: str) -> int:
    outbox = (status(url, "/api/v1/alerts") or {}).get("outbox", [])
    return sum(o["count"] for o in outbox if (o["sink"], o["state"]) == ("webhook", "delivered"))


def test_a_restart_resolves_what_recovered_meanwhile_exactly_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    flag = tmp_path / "farm-ok"
    flag.touch()
    port = free_port()
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
              webhook: {{url: "{receiver.url}"}}
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
    url, log = f"http://127.0.0.1:{port}", tmp_path / "daemon.log"
    with daemon(path, log):
        until_blocking(lambda: answers(url))
        flag.unlink()
        until_blocking(lambda: ("outage:farm", "firing") in receiver.events())
    flag.touch()  # the farm comes back while no daemon watches

    with daemon(path, log):
        until_blocking(lambda: ("outage:farm", "resolved") in receiver.events())
        until_blocking(lambda: delivered(url) == 2)
        assert status(url, "/api/v1/alerts")["alerts"] == []

    with daemon(path, log):
        until_blocking(lambda: answers(url))
        # Rounds of the alert loop once ready: a resolution would be in them.
        after = alert_rounds(url) + 3
        until_blocking(lambda: alert_rounds(url) >= after)
    assert receiver.events() == [("outage:farm", "firing"), ("outage:farm", "resolved")]
    [_, resolved] = receiver.bodies
    assert resolved["alert"]["summary"].startswith("farm down takes critical workflow")
