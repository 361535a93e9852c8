"""The API's HTTP server, defended: a real ApiServer serving a tiny
Starlette app on 127.0.0.1:0, driven by raw sockets that hold connections,
send half a request, send too much or stop reading. And in a process with
1,024 descriptors, 1,100 idle connections to it make no probe fail.

Every wait is bounded (socket timeouts, `until_blocking`); nothing asserts
how long something took."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import queue
import re
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from waiting import until_blocking

from watchdog.http_server import ApiServer, ListenError

# A bound on every socket operation of the tests: they fail, never hang.
SOCKET_TIMEOUT_S = 10.0
# Short deadlines, so that the tests see them pass.
SHORT_S = 0.3
HALF_HEAD = b"GET /ping HTTP/1.1\r\nHost: test\r\n"
GET_PING = HALF_HEAD + b"\r\n"


async def ping(request: Request) -> Response:
    return PlainTextResponse("pong")


async def echo(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


async def big(request: Request) -> Response:
    async def chunks() -> Any:
        for _ in range(512):  # 32 MiB: more than any socket buffers hold
            yield b"x" * 65536

    return StreamingResponse(chunks())


async def hang(request: Request) -> Response:
    await asyncio.Event().wait()  # never set: only a stop ends it
    return PlainTextResponse("never")


async def where(request: Request) -> Response:
    return PlainTextResponse(threading.current_thread().name)


APP = Starlette(
    routes=[
        Route("/ping", ping),
        Route("/echo", echo, methods=["POST"]),
        Route("/big", big),
        Route("/hang", hang),
        Route("/where", where),
    ]
)

Start = Callable[..., ApiServer]


@pytest.fixture
def api() -> Iterator[Start]:
    """`api(**limits)`: a started ApiServer on 127.0.0.1:0, stopped after."""
    started: list[ApiServer] = []

    def start(**limits: Any) -> ApiServer:
        server = ApiServer(APP, "127.0.0.1", 0, **limits)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def connect(server: ApiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_S)


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the next answer on `sock` (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of an answer")
        body += chunk
    return status, body


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed `sock` (reading it gives the end or a reset);
    TimeoutError if it stays open past the socket's timeout."""
    try:
        for _ in range(10_000):  # a bound; what is read before the end is dropped
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    return False


def get(server: ApiServer, path: str = "/ping") -> tuple[int, bytes]:
    with connect(server) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        return read_answer(sock)


# --- the cap on connections -------------------------------------------------


def test_a_connection_past_the_cap_is_closed_at_once_and_one_leaving_makes_room(
    api: Start,
) -> None:
    server = api(max_connections=4)
    with contextlib.ExitStack() as held:
        idle = [held.enter_context(connect(server)) for _ in range(4)]
        until_blocking(lambda: server.counts().open_connections == 4)

        with connect(server) as extra:
            extra.sendall(GET_PING)  # never read: closed as soon as accepted
            assert closed_by_server(extra)
        assert server.counts().refused == 1
        assert server.counts().open_connections == 4

        idle[0].close()
        until_blocking(lambda: server.counts().open_connections == 3)
        assert get(server) == (200, b"pong")


# --- deadlines --------------------------------------------------------------


def test_a_half_sent_request_head_is_closed_after_the_header_timeout(api: Start) -> None:
    server = api(header_timeout_s=SHORT_S)
    with connect(server) as sock:
        sock.sendall(HALF_HEAD)
        assert closed_by_server(sock)
    assert server.counts().head_timeouts == 1
    assert server.counts().open_connections == 0


def test_a_head_trickled_byte_by_byte_does_not_reset_the_deadline(api: Start) -> None:
    server = api(header_timeout_s=SHORT_S)
    closed = False
    # One header that never ends: valid however late the deadline fires.
    endless = HALF_HEAD + b"X-Slow: " + b"a" * 2000
    with connect(server) as sock:
        for byte in endless:  # a bound, far longer than the deadline
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if select.select([sock], [], [], 0.02)[0]:
                closed = closed_by_server(sock)
                break
    assert closed
    assert server.counts().head_timeouts == 1


def test_a_kept_alive_connection_may_idle_before_its_next_head(api: Start) -> None:
    server = api(header_timeout_s=SHORT_S, idle_timeout_s=30.0)
    with connect(server) as sock:
        sock.sendall(GET_PING)
        assert read_answer(sock) == (200, b"pong")
        # Idle for longer than the header timeout: that one starts with the
        # next request's first byte.
        assert not select.select([sock], [], [], SHORT_S * 3)[0]
        sock.sendall(GET_PING)
        assert read_answer(sock) == (200, b"pong")
    assert server.counts().head_timeouts == 0


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(api: Start) -> None:
    server = api(idle_timeout_s=SHORT_S)
    with connect(server) as sock:
        sock.sendall(GET_PING)
        assert read_answer(sock) == (200, b"pong")
        assert closed_by_server(sock)
    assert server.counts().idle_timeouts == 1


def test_a_body_that_stops_coming_is_closed_after_the_body_timeout_without_an_error_logged(
    api: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = api(body_timeout_s=SHORT_S)
    with connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789")
        assert closed_by_server(sock)
    assert server.counts().body_timeouts == 1
    until_blocking(lambda: server.counts().open_connections == 0)
    assert get(server) == (200, b"pong")  # the app's task ended too
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_client_that_stops_reading_its_answer_is_dropped(api: Start) -> None:
    server = api(idle_timeout_s=SHORT_S)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(SOCKET_TIMEOUT_S)
    with sock:
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
        until_blocking(lambda: server.counts().stalled == 1)
        until_blocking(lambda: server.counts().open_connections == 0)
        assert closed_by_server(sock)


# --- the body limit ---------------------------------------------------------

TOO_LARGE = (
    b'{"problems": [{"file": null, "line": null, "path": "", '
    b'"message": "request body too large: at most 1048576 bytes"}]}'
)


def test_a_body_declared_too_large_gets_413_before_any_of_it_is_sent(api: Start) -> None:
    server = api()
    with connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2097152\r\n\r\n")
        assert read_answer(sock) == (413, TOO_LARGE)
    assert server.counts().too_large == 1


def test_a_body_streamed_past_the_limit_gets_413(api: Start) -> None:
    server = api()
    chunk = b"y" * 65536
    with connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(32):  # 2 MiB at most: it is answered before the end
            sock.sendall(b"10000\r\n" + chunk + b"\r\n")
            if select.select([sock], [], [], 0)[0]:
                break
        assert read_answer(sock) == (413, TOO_LARGE)
    assert server.counts().too_large == 1


def test_a_body_within_the_limit_reaches_the_app(api: Start) -> None:
    server = api()
    body = b"z" * (512 * 1024)
    with connect(server) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        assert read_answer(sock) == (200, b"524288")
    assert server.counts().too_large == 0


# --- start and stop ---------------------------------------------------------


def test_a_busy_port_fails_the_start_at_once_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ApiServer(APP, "127.0.0.1", port)
        with pytest.raises(ListenError) as raised:
            server.start()
    assert str(raised.value) == f"cannot listen on 127.0.0.1:{port}: address already in use"
    assert isinstance(raised.value, OSError)
    assert raised.value.errno == errno.EADDRINUSE
    assert not server.running


def test_bad_limits_are_refused_for_people() -> None:
    with pytest.raises(ValueError, match=r"^max_connections: expected a positive number, got 0$"):
        ApiServer(APP, "127.0.0.1", 0, max_connections=0)


def test_it_serves_from_a_thread_and_loop_of_its_own(api: Start) -> None:
    server = api()
    assert get(server, "/where") == (200, b"watchdog-api")

    async def name() -> str:
        return threading.current_thread().name

    future = asyncio.run_coroutine_threadsafe(name(), server.loop)
    assert future.result(SOCKET_TIMEOUT_S) == "watchdog-api"
    with pytest.raises(RuntimeError, match="already started"):
        server.start()


def test_stop_returns_with_50_idle_connections_open_and_closes_them(
    api: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = api()
    with contextlib.ExitStack() as held:
        silent = [held.enter_context(connect(server)) for _ in range(20)]
        halfway = [held.enter_context(connect(server)) for _ in range(20)]
        for sock in halfway:
            sock.sendall(HALF_HEAD)
        kept = [held.enter_context(connect(server)) for _ in range(10)]
        for sock in kept:
            sock.sendall(GET_PING)
            assert read_answer(sock) == (200, b"pong")
        until_blocking(lambda: server.counts().open_connections == 50)

        server.stop(timeout_s=2.0)
        assert not server.running
        for sock in silent + halfway + kept:
            assert closed_by_server(sock)
    assert server.loop.is_closed()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    server.stop()  # again: nothing to do


def test_stop_cuts_a_request_that_never_ends_quietly(
    api: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = api()
    with connect(server) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        until_blocking(lambda: server.counts().open_connections == 1)
        server.stop(timeout_s=1.0)
        assert not server.running
        assert closed_by_server(sock)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- descriptors ------------------------------------------------------------

# A daemon in miniature: on its main loop a probe opens and closes a TCP
# connection to a local listener every few ms; the API runs beside it. It
# answers "counts" on stdin with what it counted, and prints the final
# counts when told anything else.
_SIEGED = r"""
import asyncio, dataclasses, json, resource, sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from watchdog.http_server import ApiServer
from watchdog.logs import configure

async def ping(request):
    return PlainTextResponse("pong")

async def main():
    configure("text")
    counts = {"ok": 0, "failed": 0, "errors": {}}

    async def answer(reader, writer):
        writer.close()

    target = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    api = ApiServer(
        Starlette(routes=[Route("/ping", ping)]), "127.0.0.1", 0,
        header_timeout_s=float(sys.argv[1]), max_connections=int(sys.argv[2]),
    )
    api.start()
    stop = asyncio.Event()

    async def probe():
        for _ in range(1_000_000):
            if stop.is_set():
                return
            try:
                async with asyncio.timeout(5):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    await writer.wait_closed()
                counts["ok"] += 1
            except (OSError, TimeoutError) as err:
                counts["failed"] += 1
                name = f"{type(err).__name__} {getattr(err, 'errno', '')}"
                counts["errors"][name] = counts["errors"].get(name, 0) + 1
            await asyncio.sleep(0.003)

    probing = asyncio.create_task(probe())
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(json.dumps({"port": api.port, "limit": limit}), flush=True)
    loop = asyncio.get_running_loop()
    for _ in range(10_000):
        command = await loop.run_in_executor(None, sys.stdin.readline)
        if command.strip() != "counts":
            break
        print(json.dumps({**counts, "api": dataclasses.asdict(api.counts())}), flush=True)
    stop.set()
    await probing
    api.stop()
    target.close()
    await target.wait_closed()
    print(json.dumps({**counts, "api": dataclasses.asdict(api.counts())}), flush=True)

asyncio.run(main())
"""
SIEGE = 1100
DESCRIPTORS = 1024
# A bound on each answer of a child process (it starts an interpreter first).
CHILD_ANSWER_S = 30.0


class Child:
    """A Python process run with `RLIMIT_NOFILE` soft = hard = `descriptors`
    (set before anything else runs in it, as `ulimit -n` or systemd would),
    talked to by lines on stdin and stdout."""

    def __init__(self, code: str, *args: str, descriptors: int) -> None:
        limited = (
            "import resource\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({descriptors}, {descriptors}))\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", limited + code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        self._reader = threading.Thread(
            target=lambda: [self._lines.put(line) for line in stdout], daemon=True
        )
        self._reader.start()

    def read(self) -> Any:
        """The next line the child printed, as JSON."""
        try:
            return json.loads(self._lines.get(timeout=CHILD_ANSWER_S))
        except queue.Empty:
            raise AssertionError(f"no answer from the child: {self.stderr()}") from None

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        """What the child wrote to stderr (once it ended)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=CHILD_ANSWER_S)
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else "(still running)"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=CHILD_ANSWER_S)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def siege(port: int, held: list[socket.socket]) -> None:
    """`SIEGE` connections to `port` added to `held`, each sending half a
    request head."""
    for _ in range(SIEGE):
        sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
        held.append(sock)
        with contextlib.suppress(OSError):  # refused at once: the cap did its work
            sock.sendall(HALF_HEAD)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
            sock.sendall(GET_PING)
            return read_answer(sock) == (200, b"pong")
    except OSError:
        return False  # refused while the cap is full


def test_1100_half_sent_heads_under_1024_descriptors_make_no_probe_fail() -> None:
    # The default header timeout (10 s): the siege holds its connections for
    # as long as the test looks. Without the cap, about 1,000 are accepted
    # and the probes fail with EMFILE.
    child = Child(_SIEGED, "10.0", "128", descriptors=DESCRIPTORS)
    held: list[socket.socket] = []
    try:
        hello = child.read()
        assert hello["limit"] == [DESCRIPTORS, DESCRIPTORS]
        port = hello["port"]
        siege(port, held)

        def counts() -> Any:
            child.tell("counts")
            return child.read()

        def all_accepted() -> Any:
            now = counts()
            return now if now["api"]["refused"] == SIEGE - 128 else None

        # Every connection of the siege was accepted: 128 held, the rest refused.
        during = until_blocking(all_accepted)
        assert during["api"]["open_connections"] == 128
        # The probes go on while the siege holds its connections...
        until_blocking(lambda: counts()["ok"] >= during["ok"] + 100)
        # ...and once it lets them go, the API answers.
        for sock in held:
            sock.close()
        until_blocking(lambda: answers(port))
        child.tell("stop")
        final = child.read()
    finally:
        for sock in held:
            sock.close()
        child.close()
    assert final["errors"] == {}
    assert final["failed"] == 0
    assert final["ok"] > during["ok"]


# Out of descriptors on purpose: the API holds every descriptor it can get
# while a connection waits to be accepted, then lets them go.
_EXHAUSTED = r"""
import json, os, sys, time
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from watchdog.http_server import ApiServer
from watchdog.logs import configure

async def ping(request):
    return PlainTextResponse("pong")

configure("text", burst=1)  # one line per minute: a few failures show it
api = ApiServer(Starlette(routes=[Route("/ping", ping)]), "127.0.0.1", 0)
api.start()
print(json.dumps({"port": api.port}), flush=True)
held = []
for _ in range(100_000):
    try:
        held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        break
print(json.dumps({"held": len(held)}), flush=True)
sys.stdin.readline()  # the test connected
time.sleep(2.5)  # accept() fails, and is tried again, a few times
for fd in held:
    os.close(fd)
print(json.dumps({"freed": len(held)}), flush=True)
sys.stdin.readline()
api.stop()
print(json.dumps({"stopped": True}), flush=True)
"""


def test_accept_failing_for_want_of_descriptors_is_one_line_and_the_api_recovers() -> None:
    child = Child(_EXHAUSTED, descriptors=256)
    try:
        port = child.read()["port"]
        assert child.read()["held"] > 0
        with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
            sock.sendall(GET_PING)  # waits in the kernel's queue meanwhile
            child.tell("connected")
            assert child.read()["freed"] > 0
            assert read_answer(sock) == (200, b"pong")
        child.tell("stop")
        assert child.read() == {"stopped": True}
        stderr = child.stderr()
    finally:
        child.close()
    lines = [line.split(" ", 1)[1] for line in stderr.splitlines() if "cannot accept" in line]
    message = (
        "ERROR watchdog.http_server: api cannot accept connections, "
        "retrying in 1s error=Too many open files"
    )
    # One line, and at exit the last one held back (with the others counted).
    assert lines[0] == message
    assert len(lines) == 2
    assert lines[1].startswith(message)
    assert "Traceback" not in stderr
