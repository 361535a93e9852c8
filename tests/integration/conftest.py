"""What the integration tests share: the anyio backend, real TCP servers on
loopback (port 0) that are always closed with their connections, and a port
that nothing listens on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import pytest
from prometheus_server import prometheus  # noqa: F401 (a session's real Prometheus)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[..., AbstractAsyncContextManager["Server"]]

# A bound on the teardown of a server, never on what a test asserts.
_CLOSE_GRACE_S = 2.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment: slack-sdk takes one from these
    (ignoring NO_PROXY), and the tests talk to loopback only; a daemon the
    test starts as a process inherits it."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Server:
    """A running test server: where it listens and how many connections it
    accepted."""

    host: str
    port: int
    connections: int = 0


@contextlib.asynccontextmanager
async def _serve(
    handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    """Serve each connection with `handler` until the block ends; then close
    the listener, stop the handlers still running and close every connection."""
    tasks: set[asyncio.Task[None]] = set()
    info = Server(host, 0)

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        info.connections += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the probe hung up: part of what is tested
        except asyncio.CancelledError:
            writer.transport.abort()  # torn down: no goodbyes (a TLS one waits for the peer)
            raise
        finally:
            await _close(writer)
            tasks.discard(task)

    server = await asyncio.start_server(connected, host, 0, ssl=tls)
    info.port = server.sockets[0].getsockname()[1]
    try:
        yield info
    finally:
        server.close()
        # The probe has its result by now; what a handler still does (wait
        # for the next request on a kept-alive connection) is of no interest.
        pending = set(tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        await server.wait_closed()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_GRACE_S):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


@pytest.fixture
def serve() -> Serve:
    """`async with serve(handler[, host=, tls=]) as server:` a real server
    on port 0 that runs `handler(reader, writer)` for each connection."""
    return _serve


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was just bound and closed: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), as a crashing
    server or a firewall does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture
def reset_connection() -> Callable[[asyncio.StreamWriter], None]:
    """`reset_connection(writer)`: end a connection with a TCP reset."""
    return reset
