"""The API's HTTP server: uvicorn (h11) on a thread of its own with its own
event loop, so that no request can stall the probes, defended against
clients that hold connections: a cap on open connections, deadlines on the
request head, the request body, idle keep-alive and a reader that stopped
reading, and a cap on the request body.

Reliance on uvicorn internals is kept to `H11Protocol` (built as uvicorn's
`Server` builds it, and its hooks: connection_made/lost, data_received,
on_response_complete, pause/resume_writing, shutdown), `ServerState` (the
open connections and running tasks, the default headers) and `Config`;
each use is marked. Its `Server` is not used: the accept loop is ours."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Literal

import h11  # uvicorn's HTTP/1.1 parser (a dependency of uvicorn): its states tell the phase
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

__all__ = [
    "MAX_BODY_BYTES",
    "ApiCounts",
    "ApiLimits",
    "ApiServer",
    "Asgi",
    "ListenError",
    "listen",
]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application, such as the Starlette app of `watchdog.api`."""

# The defaults of ApiLimits.
MAX_CONNECTIONS = 128
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 1024 * 1024
# uvicorn's default: connections waiting in the kernel's queue cost the
# process no descriptor.
_BACKLOG = 2048
# How long accept() rests after failing for want of descriptors (asyncio's
# own server waits 1 s too).
_ACCEPT_RETRY_S = 1.0
# A bound on waiting for the server thread to serve (importing nothing, it
# takes milliseconds; a machine out of memory may take longer).
_START_TIMEOUT_S = 10.0

# What a connection waits for from its client; the timed ones have a deadline.
Timed = Literal["head", "body", "idle"]
Phase = Literal["new", "serving"] | Timed


class ListenError(OSError):
    """The API cannot listen where it is told (the port is taken, the
    address is not one of this machine's): `str()` is one line for people,
    `cannot listen on 127.0.0.1:9120: address already in use`."""

    def __init__(self, host: str, port: int, err: OSError) -> None:
        reason = (err.strerror or str(err)).lower()
        super().__init__(err.errno, reason)
        self.host = host
        self.port = port
        self.message = f"cannot listen on {_address(host, port)}: {reason}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """What clients may hold of the API server: at most `max_connections`
    open connections (more are closed as soon as accepted). A request's head
    must arrive within `header_timeout_s` of connecting, or of its first
    byte on a kept-alive connection (between requests a connection may idle
    for `idle_timeout_s`); its body within `body_timeout_s` of its head. A
    client that stops reading its answer is dropped after `idle_timeout_s`;
    a body over `max_body_bytes` gets 413."""

    max_connections: int = MAX_CONNECTIONS
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_body_bytes: int = MAX_BODY_BYTES

    def problems(self) -> list[str]:
        """What is wrong with these limits, for people (none when valid)."""
        return [
            f"{name}: expected a positive number, got {value!r}"
            for name, value in (
                ("max_connections", self.max_connections),
                ("header_timeout_s", self.header_timeout_s),
                ("body_timeout_s", self.body_timeout_s),
                ("idle_timeout_s", self.idle_timeout_s),
                ("max_body_bytes", self.max_body_bytes),
            )
            if not value > 0
        ]


@dataclass(frozen=True, slots=True)
class ApiCounts:
    """What the server did to defend itself since it started (for metrics
    and the self-alert): connections open now, and totals of connections
    refused at the cap, closed for a late head, a late body, idling, or a
    reader that stopped reading, and of bodies refused as too large."""

    open_connections: int
    refused: int
    head_timeouts: int
    body_timeouts: int
    idle_timeouts: int
    stalled: int
    too_large: int


class _Tally:
    """The running counts, written on the server thread only."""

    def __init__(self) -> None:
        self.refused = 0
        self.timeouts = {"head": 0, "body": 0, "idle": 0}
        self.stalled = 0
        self.too_large = 0
        # Set at the forced end of a stop: requests cut then end quietly.
        self.stopping = False


class _Config(uvicorn.Config):
    """uvicorn's config carrying what the protocol needs (uvicorn builds
    the protocol from its config alone)."""

    def __init__(self, app: Asgi, limits: ApiLimits, tally: _Tally, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits
        self.tally = tally


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines.

    One deadline runs at a time, by phase: `head` (waiting for a complete
    request head), `body` (the head came, the body has not ended), `idle`
    (between requests, nothing received yet), none while `serving` (the
    request is in, the app answers). Apart from it, a client that stops
    reading its answer is dropped after `idle_timeout_s`."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, _Config)  # built by ApiServer only
        self._limits = config.limits
        self._tally = config.tally
        self._phase: Phase = "new"
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._discarded = 0

    # uvicorn internal: the protocol's hooks, each calling uvicorn's own.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP connection's
        super().connection_made(transport)
        self._enter("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(stall=True)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle":
            self._enter("head")  # the next request began: its head is timed from now
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY:
            # Answered before the body ended (a 413): uvicorn reads the rest
            # and drops it, but only so much of it.
            self._discarded += len(data)
            if self._discarded > self._limits.max_body_bytes:
                self.transport.close()
                return
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self._limits.idle_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    # The deadlines.

    def _follow(self) -> None:
        """Move to the phase that h11's view of the client says."""
        if self.transport is None or self.transport.is_closing():
            self._cancel(stall=False)
            return
        theirs = self.conn.their_state
        if theirs is h11.IDLE:
            if self._phase not in ("head", "idle"):
                # A response ended: a head already begun (pipelined) is timed
                # from now, else the connection idles until its first byte.
                begun = bool(self.conn.trailing_data[0])
                self._enter("head" if begun else "idle")
        elif theirs is h11.SEND_BODY:
            if self._phase != "body":
                self._discarded = 0
                self._enter("body")
        elif self._phase != "serving":
            self._enter("serving")  # the request is in (or the client closes)

    def _enter(self, phase: Phase) -> None:
        self._cancel(stall=False)
        self._phase = phase
        if phase == "head":
            self._deadline = self.loop.call_later(
                self._limits.header_timeout_s, self._expired, phase
            )
        elif phase == "body":
            self._deadline = self.loop.call_later(self._limits.body_timeout_s, self._expired, phase)
        elif phase == "idle":
            self._deadline = self.loop.call_later(self._limits.idle_timeout_s, self._expired, phase)

    def _expired(self, phase: Timed) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self._close(phase)

    def _close(self, phase: Timed) -> None:
        self._tally.timeouts[phase] += 1
        log.debug("api connection closed phase=%s client=%s", phase, self.client)
        # Nothing is owed to a client that did not send its request in time;
        # an app waiting for the body is told the client left.
        self.transport.close()

    def _stalled(self) -> None:
        self._stall = None
        self._tally.stalled += 1
        log.debug("api connection dropped: the client stopped reading client=%s", self.client)
        # abort(): what is still buffered for it would never be read.
        self.transport.abort()

    def _cancel(self, *, stall: bool) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if stall and self._stall is not None:
            self._stall.cancel()
            self._stall = None


class _BodyLimit:
    """413 for a request body over `max_bytes`: at once when its
    Content-Length says so (none of it read), else as soon as what streamed
    in passes the limit (the app is then told the client left). The rest of
    the body is never buffered: uvicorn drops it as it comes. An app's error
    after its client left (or was answered 413) is not the app's fault and
    is not logged as one."""

    def __init__(self, app: Asgi, max_bytes: int, tally: _Tally) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_bytes:
            self._tally.too_large += 1
            await self._refuse(send)
            return
        received = 0
        started = answered = gone = False

        async def limited_receive() -> Message:
            nonlocal received, answered, gone
            if answered or gone:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_bytes:
                    self._tally.too_large += 1
                    if not started:
                        await self._refuse(send)
                        answered = True
                    gone = True
                    return {"type": "http.disconnect"}
            elif message["type"] == "http.disconnect":
                gone = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 was the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, limited_receive, guarded_send)
        except asyncio.CancelledError:
            if not self._tally.stopping:
                raise
            # Cut by a forced stop: its connection is already closed.
        except Exception as err:
            if not (answered or gone):
                raise
            log.debug("api request ended after its client left error=%s", type(err).__name__)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "problems": [
                    {
                        "file": None,
                        "line": None,
                        "path": "",
                        "message": f"request body too large: at most {self._max_bytes} bytes",
                    }
                ]
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 refuses such a request before it gets here
    return None


class ApiServer:
    """Serves `app` on `host`:`port` from a thread of its own, with its own
    asyncio loop, within `ApiLimits` (see there; the keywords here are its
    fields).

    `start()` binds in the caller's thread (a busy port raises `ListenError`
    there) and returns once the server answers. `port` is the port bound,
    `loop` the server thread's loop (for `asyncio.run_coroutine_threadsafe`),
    `counts()` what the defences did. `stop()` returns within its timeout.

    Connections are accepted one at a time by the server's own loop: past
    `max_connections` one is closed as soon as accepted (nothing read, no
    task), so that a flood holds at most one descriptor more than the cap;
    the rest wait in the kernel's queue, which costs the process none. When
    accept() itself fails for want of descriptors it says so in one line
    and tries again a little later. uvicorn's `Server` is not used: nothing
    installs a signal handler, and there is no access log."""

    def __init__(
        self,
        app: Asgi,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        body_timeout_s: float = BODY_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_body_bytes: int = MAX_BODY_BYTES,
        sock: socket.socket | None = None,
    ) -> None:
        self._sock = sock  # already listening (bound by another process), or None
        self.limits = ApiLimits(
            max_connections, header_timeout_s, body_timeout_s, idle_timeout_s, max_body_bytes
        )
        problems = self.limits.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.host = host
        self._port = port
        self._tally = _Tally()
        self._app = _BodyLimit(app, max_body_bytes, self._tally)
        self._state = ServerState()  # uvicorn internal: its open connections and tasks
        self._serving = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._grace_s = 0.0
        self._stop_asked = False
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The port bound once started (the one asked for before)."""
        return self._port

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server thread's event loop (closed once stopped);
        RuntimeError before `start()`."""
        if self._loop is None:
            raise RuntimeError("the api server is not started")
        return self._loop

    @property
    def running(self) -> bool:
        """The server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def counts(self) -> ApiCounts:
        """What the defences did so far (readable from any thread)."""
        tally = self._tally
        return ApiCounts(
            open_connections=len(self._state.connections),
            refused=tally.refused,
            head_timeouts=tally.timeouts["head"],
            body_timeouts=tally.timeouts["body"],
            idle_timeouts=tally.timeouts["idle"],
            stalled=tally.stalled,
            too_large=tally.too_large,
        )

    def start(self) -> None:
        """Listen, start the server thread and return once it serves.
        `ListenError` when the address cannot be bound; RuntimeError when
        started twice or when the thread fails to serve."""
        if self._thread is not None:
            raise RuntimeError("the api server is already started")
        sock = self._sock if self._sock is not None else listen(self.host, self._port)
        self._port = int(sock.getsockname()[1])
        config = _Config(
            self._app,
            self.limits,
            self._tally,
            host=self.host,
            port=self._port,
            http=_Protocol,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            # uvicorn's own keep-alive timer, a backstop behind the idle
            # deadline (it takes whole seconds).
            timeout_keep_alive=math.ceil(self.limits.idle_timeout_s) + 1,
        )
        config.load()
        self._loop = loop = asyncio.new_event_loop()
        self._thread = thread = threading.Thread(
            target=self._run, args=(loop, sock, config), name="watchdog-api", daemon=True
        )
        thread.start()
        for _ in range(int(_START_TIMEOUT_S / 0.05)):
            if self._serving.wait(0.05) or not thread.is_alive():
                break
        if not self._serving.is_set():
            self.stop()
            raise RuntimeError(f"the api server did not start: {self._failure or 'timed out'}")

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop serving and return within `timeout_s`: the listener closed,
        idle connections closed at once, requests still running given half
        of it to end and then cut, the thread joined. A thread stuck past it
        (an app blocking its loop) is left behind, logged: a daemon thread,
        it ends with the process. Does nothing when not running."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it ended
            loop.call_soon_threadsafe(self._begin_stop, timeout_s / 2)
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning(
                "api server thread still running %gs after stop, left behind "
                "(a daemon thread, it ends with the process)",
                timeout_s,
            )

    # On the server thread.

    def _run(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, config: _Config) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock, config))
        except BaseException as err:  # the thread's end: told to start() or logged
            self._failure = err
            if self._serving.is_set():
                log.error("api server failed", exc_info=err)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                sock.close()

    async def _serve(self, sock: socket.socket, config: _Config) -> None:
        self._stop = asyncio.Event()
        if self._stop_asked:  # before this coroutine began
            self._stop.set()
        sock.setblocking(False)
        accepting = asyncio.create_task(self._accept(sock, config))
        dating = asyncio.create_task(self._date(config))
        stopping = asyncio.create_task(self._stop.wait())
        self._serving.set()
        try:
            await asyncio.wait({accepting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if accepting.done() and not accepting.cancelled() and accepting.exception():
                # A bug, not a client: serving no more, the thread ends
                # (`running` turns false) rather than linger deaf.
                log.error("api server stopped accepting", exc_info=accepting.exception())
        finally:
            for task in (accepting, dating, stopping):
                task.cancel()
            await asyncio.wait({accepting, dating, stopping})
            sock.close()  # from now on the kernel refuses new connections
            await self._close_all(self._grace_s)

    async def _accept(self, listener: socket.socket, config: _Config) -> None:
        loop = asyncio.get_running_loop()
        state, limit = self._state, self.limits.max_connections

        def protocol() -> asyncio.Protocol:
            # uvicorn internal: how its Server builds a connection's protocol.
            return _Protocol(config=config, server_state=state, app_state={}, _loop=loop)

        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as err:
                if err.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the client left before it was accepted
                log.error(
                    "api cannot accept connections, retrying in %gs error=%s",
                    _ACCEPT_RETRY_S,
                    os.strerror(err.errno) if err.errno else err,
                )
                # Left in the kernel's queue meanwhile, they cost nothing.
                await asyncio.sleep(_ACCEPT_RETRY_S)
                continue
            if len(state.connections) >= limit:
                self._tally.refused += 1  # counted first: the client sees the close
                conn.close()
                log.warning("api connection refused max_connections=%d", limit)
                # sock_accept returns without yielding when a connection
                # waits: a flood must not keep the loop to itself.
                await asyncio.sleep(0)
                continue
            try:
                await loop.connect_accepted_socket(protocol, conn)
            except OSError:
                conn.close()  # the client left already

    async def _date(self, config: _Config) -> None:
        """What uvicorn's Server does each second: the Date header (and its
        Server header) of every answer."""
        while True:
            date = formatdate(time.time(), usegmt=True).encode()
            # uvicorn internal: the headers every answer starts with.
            self._state.default_headers = [(b"date", date), *config.encoded_headers]
            await asyncio.sleep(1.0)

    async def _close_all(self, grace_s: float) -> None:
        """Close idle connections now, let answers in progress end within
        `grace_s`, then cut what is left."""
        state = self._state
        loop = asyncio.get_running_loop()
        for connection in list(state.connections):
            try:
                # uvicorn internal: closes an idle connection, or one after
                # its answer (as uvicorn's own Server does at shutdown).
                connection.shutdown()
            except h11.LocalProtocolError:
                connection.transport.abort()  # in no state to say goodbye
        end = loop.time() + grace_s
        while (state.connections or state.tasks) and loop.time() < end:
            await asyncio.sleep(0.02)
        if not (state.connections or state.tasks):
            return
        self._tally.stopping = True
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        tasks = set(state.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=0.5)
        await asyncio.sleep(0)  # the aborted transports' connection_lost

    def _begin_stop(self, grace_s: float) -> None:
        self._grace_s = grace_s
        self._stop_asked = True
        if self._stop is not None:
            self._stop.set()


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host`:`port`, or `ListenError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock: socket.socket | None = None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        # A restart must not wait for the last run's connections in TIME_WAIT
        # (on Linux this never lets two servers share a port).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError as err:
        if sock is not None:
            sock.close()
        raise ListenError(host, port, err) from None
    return sock


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
