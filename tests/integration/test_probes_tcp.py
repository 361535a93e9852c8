"""The TCP probe against real servers on loopback: one that answers a line,
one that never answers, one that resets, a closed port, IPv6; and the
registry that builds every kind of probe."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from topology import State
from watchdog.probes import (
    PROBE_KINDS,
    ExecProbe,
    ExecSpec,
    HttpClients,
    HttpProbe,
    HttpSpec,
    ProbeResult,
    PrometheusProbe,
    PrometheusSpec,
    TcpProbe,
    TcpSpec,
)
from watchdog.probes.prometheus import PrometheusServer
from watchdog.probes.result import describe_os_error

Serve = Callable[..., AbstractAsyncContextManager[Any]]

# Short deadlines for servers that never answer: they bound the tests, no
# test asserts how long anything took.
STALL_TIMEOUT_S = 0.3


async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A line server: `PING` gets `+PONG`, anything else an error."""
    line = await reader.readline()
    writer.write(b"+PONG\r\n" if line == b"PING\r\n" else b"-ERR unknown command\r\n")
    await writer.drain()
    await reader.read()  # until the probe closes


async def check(port: int, host: str = "127.0.0.1", **spec: Any) -> ProbeResult:
    return await TcpProbe(TcpSpec(host, port, **spec)).check()


@pytest.mark.anyio
async def test_it_is_up_when_the_port_accepts(serve: Serve) -> None:
    async with serve(pong) as server:
        result = await check(server.port)
    assert (result.state, result.reason) == (State.UP, "ok")
    assert result.latency_s is not None


@pytest.mark.anyio
async def test_it_is_up_when_the_reply_contains_the_expected_text(serve: Serve) -> None:
    async with serve(pong) as server:
        result = await check(server.port, send="PING", expect="PONG")
    assert (result.state, result.reason) == (State.UP, "ok")


@pytest.mark.anyio
async def test_it_is_down_when_the_reply_lacks_the_expected_text(serve: Serve) -> None:
    async with serve(pong) as server:
        result = await check(server.port, send="INFO", expect="PONG")
    assert result.state is State.DOWN
    assert result.reason == 'reply lacks "PONG" (got "-ERR unknown command")'


@pytest.mark.anyio
async def test_it_reads_the_greeting_when_nothing_is_sent(serve: Serve) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        await writer.drain()
        await reader.read()

    async with serve(greet) as server:
        result = await check(server.port, expect="SSH-2.0")
    assert (result.state, result.reason) == (State.UP, "ok")


@pytest.mark.anyio
async def test_it_closes_its_connection_after_the_exchange(serve: Serve) -> None:
    closed = asyncio.Event()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await pong(reader, writer)
        closed.set()  # `pong` returns at the end of the stream: the probe closed

    async with serve(watch) as server:
        result = await check(server.port, send="PING", expect="PONG")
        async with asyncio.timeout(10):
            await closed.wait()
    assert result.state is State.UP


@pytest.mark.anyio
async def test_it_times_out_when_the_server_never_answers(serve: Serve) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serve(mute) as server:
        result = await check(server.port, send="PING", expect="PONG", timeout_s=STALL_TIMEOUT_S)
    assert result == ProbeResult(State.DOWN, "timeout after 300ms", None)


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_it_reports_connect_refused(closed_port: int, host: str) -> None:
    # `localhost` may stand for ::1 and 127.0.0.1: refused on every address.
    result = await check(closed_port, host=host)
    assert result == ProbeResult(State.DOWN, "connect refused", None)


@pytest.mark.anyio
async def test_it_reports_a_server_that_closes_without_a_reply(serve: Serve) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()

    async with serve(hang_up) as server:
        result = await check(server.port, send="PING", expect="PONG")
    assert result == ProbeResult(State.DOWN, "connection closed without a reply", None)


@pytest.mark.anyio
async def test_it_reports_a_reset_connection(
    serve: Serve, reset_connection: Callable[[asyncio.StreamWriter], None]
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        reset_connection(writer)

    async with serve(reset) as server:
        result = await check(server.port, send="PING", expect="PONG")
    assert result == ProbeResult(State.DOWN, "connection reset", None)


@pytest.mark.anyio
async def test_it_judges_the_start_of_a_reply_that_never_ends_its_line(serve: Serve) -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"A" * 100_000)
        await writer.drain()
        await reader.read()

    async with serve(flood) as server:
        result = await check(server.port, send="PING", expect="PONG")
    assert result.state is State.DOWN
    assert result.reason == f'reply lacks "PONG" (got "{"A" * 59}…")'


@pytest.mark.anyio
async def test_it_is_degraded_when_slower_than_the_latency_threshold(serve: Serve) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await asyncio.sleep(0.2)
        writer.write(b"+PONG\r\n")
        await writer.drain()
        await reader.read()

    async with serve(slow) as server:
        result = await check(server.port, send="PING", expect="PONG", latency_threshold_s=0.05)
    assert result.state is State.DEGRADED
    assert re.fullmatch(r"slow: [\d.]+m?s over 50ms", result.reason), result.reason


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.anyio
@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
async def test_it_connects_to_an_ipv6_literal(serve: Serve, host: str) -> None:
    async with serve(pong, host="::1") as server:
        result = await check(server.port, host=host, send="PING", expect="PONG")
    assert (result.state, result.reason) == (State.UP, "ok")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"port": 0}, "port 0 out of range"),
        ({"port": 65536}, "port 65536 out of range"),
        ({"host": ""}, "host must not be empty"),
        ({"timeout_s": -1.0}, "timeout must be positive"),
    ],
)
def test_it_refuses_a_spec_out_of_range(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TcpSpec(**{"host": "127.0.0.1", "port": 5432, **spec})


@pytest.mark.anyio
async def test_it_builds_every_registered_kind_from_its_spec() -> None:
    specs = {
        "http": HttpSpec("http://127.0.0.1:8080/health"),
        "tcp": TcpSpec("127.0.0.1", 5432),
        "exec": ExecSpec(("/usr/lib/nagios/plugins/check_dummy", "0")),
        "prometheus": PrometheusSpec("up", PrometheusServer("http://127.0.0.1:9090")),
    }
    assert set(PROBE_KINDS) == set(specs)
    async with HttpClients() as clients:
        probes = {
            name: PROBE_KINDS[name].build(spec, clients)
            for name, spec in specs.items()
            if isinstance(spec, PROBE_KINDS[name].spec)
        }
    assert {name: type(probe) for name, probe in probes.items()} == {
        "http": HttpProbe,
        "tcp": TcpProbe,
        "exec": ExecProbe,
        "prometheus": PrometheusProbe,
    }


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        # asyncio before 3.12: one error for every address of a host, codes in the text
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 5432)"
            ),
            "connect refused",
        ),
        (
            OSError(
                "Multiple exceptions: [Errno 101] Network is unreachable, "
                "[Errno 111] Connect call failed ('127.0.0.1', 5432)"
            ),
            "network unreachable, connect refused",
        ),
        # anyio (under httpx): an exception group behind "All connection attempts failed"
        (
            ExceptionGroup("attempts", [ConnectionRefusedError(111, "a"), TimeoutError(110, "b")]),
            "connect refused, connect timed out",
        ),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "cannot resolve db"),
    ],
)
def test_it_names_the_socket_failure_behind_an_error(error: BaseException, reason: str) -> None:
    assert describe_os_error(error, "db") == reason


OUT_OF_DESCRIPTORS = """
import asyncio, json, os, resource, socket
from watchdog.probes.tcp import TcpProbe, TcpSpec

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
port = listener.getsockname()[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

async def main():
    hog = []
    try:
        for _ in range(1000):  # bounded: the limit is 256
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    result = await TcpProbe(TcpSpec("127.0.0.1", port, timeout_s=2)).check()
    for fd in hog:
        os.close(fd)
    after = await TcpProbe(TcpSpec("127.0.0.1", port, timeout_s=2)).check()
    print(json.dumps([[str(r.state), r.reason, r.inconclusive] for r in (result, after)]))

asyncio.run(main())
"""


def test_a_probe_out_of_descriptors_is_inconclusive_not_down() -> None:
    done = subprocess.run(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        ["unknown", "no verdict: the watchdog is out of file descriptors (EMFILE)", "descriptors"],
        ["up", "ok", ""],
    ]
