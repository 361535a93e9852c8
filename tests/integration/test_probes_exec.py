"""The exec probe with real Nagios plugins from Debian's
monitoring-plugins-basic and with scripts that misbehave: overrun their
timeout with a child, print perfdata, cannot be run, flood their output."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from topology import State
from watchdog.probes import ExecProbe, ExecSpec, ProbeResult

Serve = Callable[..., AbstractAsyncContextManager[Any]]

PLUGINS = Path("/usr/lib/nagios/plugins")
CHECK_DUMMY = PLUGINS / "check_dummy"
CHECK_TCP = PLUGINS / "check_tcp"
needs_plugins = pytest.mark.skipif(
    not (CHECK_DUMMY.exists() and CHECK_TCP.exists()),
    reason="Debian's monitoring-plugins-basic is not installed "
    "(apt-get install monitoring-plugins-basic)",
)
# Bounds on polling loops, never a time a test asserts.
POLLS = 200
POLL_INTERVAL_S = 0.01


async def run(*argv: str | Path, timeout_s: float = 10.0) -> ProbeResult:
    return await ExecProbe(ExecSpec(tuple(map(str, argv)), timeout_s=timeout_s)).check()


def script(tmp_path: Path, body: str, name: str = "check_script") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.mark.anyio
@needs_plugins
@pytest.mark.parametrize(
    ("argv", "state", "reason"),
    [
        (("0", "all fine"), State.UP, "OK: all fine"),
        (("1", "disk filling up"), State.DEGRADED, "WARNING: disk filling up"),
        (("2",), State.DOWN, "CRITICAL"),
        (("3",), State.UNKNOWN, "UNKNOWN"),
    ],
)
async def test_it_maps_nagios_exit_codes_to_states(
    argv: tuple[str, ...], state: State, reason: str
) -> None:
    result = await run(CHECK_DUMMY, *argv)
    assert (result.state, result.reason) == (state, reason)
    assert result.latency_s is not None


@pytest.mark.anyio
@needs_plugins
async def test_it_is_up_when_check_tcp_reaches_an_open_port(serve: Serve) -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serve(accept) as server:
        result = await run(CHECK_TCP, "-H", "127.0.0.1", "-p", str(server.port))
    assert result.state is State.UP
    assert result.reason.startswith("TCP OK - "), result.reason
    assert "|" not in result.reason  # check_tcp's perfdata is stripped


@pytest.mark.anyio
@needs_plugins
async def test_it_is_down_when_check_tcp_finds_the_port_closed(closed_port: int) -> None:
    result = await run(CHECK_TCP, "-H", "127.0.0.1", "-p", str(closed_port))
    assert (result.state, result.reason) == (
        State.DOWN,
        f"connect to address 127.0.0.1 and port {closed_port}: Connection refused",
    )


@pytest.mark.anyio
async def test_it_strips_performance_data_and_keeps_the_first_line(tmp_path: Path) -> None:
    check = script(
        tmp_path,
        "echo 'DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968'\n"
        "echo '/ 15272 MB (77%);'\n"
        "echo '/boot 68 MB (69%); | /boot=68MB;88;93;0;98'\n",
    )
    result = await run(check)
    assert (result.state, result.reason) == (State.UP, "DISK OK - free space: / 3326 MB (56%);")


@pytest.mark.anyio
async def test_it_kills_a_command_past_its_timeout_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    check = script(
        tmp_path,
        f"sleep 300 &\necho $! > {pids}.child\necho $$ > {pids}.leader\nsleep 300\n",
    )
    result = await run(check, timeout_s=1.0)
    assert result == ProbeResult(State.DOWN, "timeout after 1s", None)

    leader = int((tmp_path / "pids.leader").read_text())
    child = int((tmp_path / "pids.child").read_text())
    for _ in range(POLLS):
        if not any(alive_in_session(pid, session=leader) for pid in (leader, child)):
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    assert not alive_in_session(leader, session=leader)
    assert not alive_in_session(child, session=leader)


def alive_in_session(pid: int, session: int) -> bool:
    """True while `pid` runs (not a zombie) in the probe's session for its
    command; a recycled pid belongs to another session."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # Fields after the command name, which is in parentheses and may hold spaces.
    state, _ppid, _pgrp, sid = stat.rsplit(")", 1)[1].split()[:4]
    return state != "Z" and int(sid) == session


@pytest.mark.anyio
async def test_it_is_unknown_when_the_command_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "check_nothing"
    result = await run(missing, "-w", "1")
    assert result == ProbeResult(
        State.UNKNOWN, f"cannot run: {missing}: no such file or directory", None
    )


@pytest.mark.anyio
async def test_it_is_unknown_when_the_command_is_not_executable(tmp_path: Path) -> None:
    check = script(tmp_path, "echo OK\n")
    check.chmod(0o644)
    result = await run(check)
    assert result == ProbeResult(State.UNKNOWN, f"cannot run: {check}: permission denied", None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "state", "reason"),
    [
        ("echo 'BROKEN: odd'\nexit 42\n", State.UNKNOWN, "exit 42: BROKEN: odd"),
        ("exit 127\n", State.UNKNOWN, "exit 127"),
        ("echo 'half done'\nkill -KILL $$\n", State.UNKNOWN, "killed by SIGKILL: half done"),
        ("exit 2\n", State.DOWN, "no output (exit 2)"),
        ("exit 0\n", State.UP, "ok"),
        ("echo 'Traceback...' >&2\necho 'ValueError: bad config' >&2\nexit 2\n",
         State.DOWN, "ValueError: bad config"),
    ],
)  # fmt: skip
async def test_it_explains_unusual_exits(
    tmp_path: Path, body: str, state: State, reason: str
) -> None:
    result = await run(script(tmp_path, body))
    assert (result.state, result.reason) == (state, reason)


@pytest.mark.anyio
async def test_it_drains_a_flood_of_output_and_keeps_a_short_reason(tmp_path: Path) -> None:
    # 20 MB through a pipe: the command must not block on it, and the probe
    # must neither keep it nor make it the reason.
    check = script(tmp_path, "head -c 20000000 /dev/zero | tr '\\0' 'x'\necho\nexit 1\n")
    result = await run(check)
    assert result.state is State.DEGRADED
    assert result.reason == "x" * 199 + "…"


@pytest.mark.anyio
async def test_it_keeps_the_daemons_secrets_from_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-not-for-plugins")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    check = script(tmp_path, 'echo "token=${SLACK_BOT_TOKEN:-none} lc=${LC_ALL:-none}"\n')
    result = await run(check)
    assert (result.state, result.reason) == (State.UP, "token=none lc=C.UTF-8")


def test_it_refuses_a_spec_without_a_command() -> None:
    with pytest.raises(ValueError, match="a command is needed"):
        ExecSpec(())
