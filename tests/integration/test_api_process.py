"""The API's own process: started again when it dies (the daemon goes on
probing meanwhile), gone when its daemon is gone (no orphan holding the
port), and loud when it listens beyond this machine without a token."""

from __future__ import annotations

import logging
import os
import signal
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from daemons import started
from processes import answers, daemon
from waiting import PROCESS_DEADLINE_S, free_port, until, until_blocking

pytestmark = pytest.mark.anyio


def estate(path: Path, listen: str | None = None) -> Path:
    server = f'server: {{listen: "{listen}"}}\n' if listen else ""
    path.write_text(
        "version: 1\n"
        + server
        + f"state: {{path: {path.parent / 'state.db'}}}\n"
        + textwrap.dedent(
            """\
            nodes:
              farm:
                kind: farm
                probes:
                  - exec: [/bin/sh, -c, "echo 'OK - fine'"]
                    interval: 200ms
              web: {runs_on: [farm]}
            """
        )
    )
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purpose.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def test_an_api_process_that_dies_is_started_again(tmp_path: Path) -> None:
    async with started(estate(tmp_path / "estate.yaml")) as daemon:
        assert daemon._api is not None
        url = f"http://127.0.0.1:{daemon.port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            assert (await client.get("/-/healthy")).status_code == 200
            first = daemon._api._process
            assert first is not None
            os.kill(first.pid, signal.SIGKILL)

            async def serving_again() -> bool:
                try:
                    return (await client.get("/-/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(serving_again, awaited="a new API process serving")
            assert daemon._api.restarts == 1
            assert daemon._api._process is not first
            nodes = (await client.get("/api/v1/status")).json()["nodes"]
            assert {n["node"]: n["effective"] for n in nodes} == {"farm": "up", "web": "up"}


def test_the_api_process_ends_with_its_daemon(tmp_path: Path) -> None:
    port = free_port()
    path = estate(tmp_path / "estate.yaml", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    with daemon(path, tmp_path / "daemon.log") as process:
        until_blocking(lambda: answers(url, "/-/healthy"))
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        [child] = [int(pid) for pid in children]
        os.kill(process.pid, signal.SIGKILL)  # no goodbye: the pair just closes
        process.wait(timeout=PROCESS_DEADLINE_S)
        until_blocking(lambda: not alive(child))
        until_blocking(lambda: not answers(url, "/-/healthy"))


async def test_listening_beyond_loopback_without_a_token_is_a_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_API_TOKEN", raising=False)
    path = estate(tmp_path / "estate.yaml")
    with caplog.at_level(logging.WARNING, logger="watchdog.daemon"):
        async with started(path, listen=("0.0.0.0", 0), ready=False):
            pass
    [warning] = [r.getMessage() for r in caplog.records if "beyond this machine" in r.getMessage()]
    assert warning.startswith("the API listens on 0.0.0.0, beyond this machine, without a token")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="watchdog.daemon"):
        async with started(path, ready=False):
            time.sleep(0)
    assert not [r for r in caplog.records if "beyond this machine" in r.getMessage()]
