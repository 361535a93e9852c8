"""`watchdog status`: the status page in a terminal, read from a daemon
(here a loopback server answering what the daemon answers), found as the
maneuver commands find it; critical first, colour only on a terminal, the
exit code a script gates on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from json_server import Server
from status_estate import ESTATE, NOW, RUNNING, farm_down, healthy, live_view, snapshot

from topology import loads
from watchdog.cli import main
from watchdog.render import Style
from watchdog.status_cmd import exit_code, render
from watchdog.web.model import History, page_model

ANSI = "\033["


def model(*, down: bool = True, public: bool = False) -> dict[str, Any]:
    topology = loads(ESTATE, "/srv/estate.yaml")
    live = farm_down(topology) if down else live_view(topology, healthy(topology))
    history = History((), (RUNNING,), fetched_at=NOW)
    return page_model(snapshot(live, history), public=public)


@pytest.fixture
def daemon() -> Iterator[Server]:
    """A loopback server answering /api/v1/status-page as the daemon does."""

    def route(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path != "/api/v1/status-page":
            return 404, {"problems": [{"message": "not found"}]}
        return 200, model(public=query.get("view") == ["public"])

    server = Server(route)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_daemon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_URL", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_status_prints_critical_services_first_with_their_cause(
    daemon: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--live", daemon.url])
    out = capsys.readouterr().out
    assert code == 2  # a critical service is down
    lines = out.splitlines()
    assert lines[1] == "2 critical services down: checkout and orders-workflow"
    assert lines.index("Critical services") < lines.index("Other services in trouble")
    assert "  DOWN      checkout         since " in out
    assert "over by 5m (target 5m)" in out  # down 10 minutes, target 5
    assert "            down because farm-oms-1 is down" in out
    assert "90 days: 99.99% up, 1 incident  [-----------------------------X]" in out
    assert "  DOWN      farm-oms-1  since " in out
    assert "takes critical checkout, orders-workflow down; 1 other: orders-search" in out
    assert "#7 drain farm-pay-1 by alice since" in out
    assert out.rstrip().endswith(": rack move")
    assert ANSI not in out  # not a terminal
    assert daemon.seen[0].query == {"view": ["internal"]}


def test_status_json_is_the_page_model(daemon: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["status", "--live", daemon.url, "--format", "json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 2
    assert answer["services"][0]["node"] == "checkout"
    assert answer["services"][0]["sentence"] == "down because farm-oms-1 is down"


def test_status_public_view(
    daemon: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_URL", daemon.url)
    code = main(["status", "--view", "public"])
    out = capsys.readouterr().out
    assert code == 2
    assert daemon.seen[0].query == {"view": ["public"]}
    assert out.splitlines()[0].startswith("public view, as of ")
    assert "Major outage: not working, because Orders is not working normally" in out
    for word in ("farm-oms-1", "alice", "antifraud"):
        assert word not in out


def test_status_finds_the_daemon_from_the_file(
    daemon: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = daemon.url.rsplit(":", 1)[1]
    path = tmp_path / "estate.yaml"
    path.write_text(
        ESTATE.replace("version: 1\n", f'version: 1\nserver: {{listen: "127.0.0.1:{port}"}}\n')
    )
    assert main(["status", str(path)]) == 2
    assert "Critical services" in capsys.readouterr().out


def test_status_exit_codes_follow_critical_services() -> None:
    assert exit_code(model(down=True)) == 2
    assert exit_code(model(down=False)) == 0
    degraded = model(down=False)
    degraded["services"][0]["state"] = "degraded"
    assert exit_code(degraded) == 1


def test_status_colours_only_for_a_terminal() -> None:
    coloured = render(model(), Style(colour=True))
    assert f"{ANSI}1;31mDOWN" in coloured
    plain = render(model(), Style(colour=False))
    assert ANSI not in plain
    assert "DOWN" in plain  # the word says it without colour


def test_status_when_the_daemon_cannot_be_reached(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--live", f"http://127.0.0.1:{closed_port}"])
    err = capsys.readouterr().err
    assert code == 3
    assert f"watchdog status: cannot reach the daemon at http://127.0.0.1:{closed_port}" in err


def test_status_needs_a_daemon(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 3
    assert "name the daemon: --live URL, $WATCHDOG_URL, or FILE" in capsys.readouterr().err


@pytest.fixture
def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
