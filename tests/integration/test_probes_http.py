"""The HTTP probe against real targets on loopback: servers that answer,
fail, stall, trickle, reset, send garbage or huge bodies, redirect."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_wire import MAX_REQUESTS_PER_CONNECTION, Request, read_request, response

from topology import State
from watchdog.probes import HttpClients, HttpProbe, HttpSpec, ProbeResult

pytestmark = pytest.mark.anyio

Serve = Callable[..., AbstractAsyncContextManager[Any]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Short deadlines for targets that never answer: they bound the tests, no
# test asserts how long anything took.
STALL_TIMEOUT_S = 0.5
# Bounds on the test servers' own loops.
EVENT_WAIT_S = 10.0


Route = Callable[[Request], bytes]


def app(route: Route) -> Handler:
    """A keep-alive HTTP/1.1 server answering each request with `route`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                return  # the client closed its connection
            writer.write(route(request))
            await writer.drain()

    return handle


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    async with HttpClients() as shared:
        yield shared


async def check(clients: HttpClients, url: str, **spec: Any) -> ProbeResult:
    probe_spec = HttpSpec(url, **spec)
    return await HttpProbe(probe_spec, clients.client_for(probe_spec)).check()


async def test_it_is_up_when_the_target_answers_200_with_the_expected_body(
    serve: Serve, clients: HttpClients
) -> None:
    async with serve(app(lambda _: response(200, b"status: ok\n"))) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/health", body_contains="ok")
    assert (result.state, result.reason) == (State.UP, "ok")
    assert result.latency_s is not None


async def test_it_is_down_when_the_target_answers_500(serve: Serve, clients: HttpClients) -> None:
    async with serve(app(lambda _: response(500, b"oops"))) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/")
    assert (result.state, result.reason) == (State.DOWN, "status 500")
    assert result.latency_s is not None


@pytest.mark.parametrize(
    ("status", "expect_status", "judged"),
    [
        (201, (), (State.UP, "ok")),
        (299, (), (State.UP, "ok")),
        (404, (404,), (State.UP, "ok")),
        (200, (200, 204), (State.UP, "ok")),
        (204, (200, 201), (State.DOWN, "status 204")),
        (200, (503,), (State.DOWN, "status 200")),
        (301, (), (State.DOWN, "status 301")),
    ],
)
async def test_it_accepts_only_the_expected_status_codes(
    serve: Serve,
    clients: HttpClients,
    status: int,
    expect_status: tuple[int, ...],
    judged: tuple[State, str],
) -> None:
    async with serve(app(lambda _: response(status))) as server:
        result = await check(
            clients, f"http://127.0.0.1:{server.port}/", expect_status=expect_status
        )
    assert (result.state, result.reason) == judged


async def test_it_sends_the_method_and_headers_of_the_spec(
    serve: Serve, clients: HttpClients
) -> None:
    seen: list[Request] = []

    def route(request: Request) -> bytes:
        seen.append(request)
        authorized = request.method == "POST" and request.headers.get("x-token") == "s3cret"
        return response(200 if authorized else 403)

    async with serve(app(route)) as server:
        result = await check(
            clients,
            f"http://127.0.0.1:{server.port}/api",
            method="POST",
            headers={"X-Token": "s3cret"},
        )
    assert (result.state, result.reason) == (State.UP, "ok")
    assert seen[0].headers["user-agent"] == "service-watchdog"
    assert seen[0].headers["accept-encoding"] == "identity"


async def test_it_times_out_when_the_target_stalls(serve: Serve, clients: HttpClients) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the probe gives up and closes

    async with serve(stall) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/", timeout_s=STALL_TIMEOUT_S)
    assert result == ProbeResult(State.DOWN, "timeout after 500ms", None)


async def test_it_times_out_when_the_target_trickles_bytes(
    serve: Serve, clients: HttpClients
) -> None:
    # Each byte would reset httpx's per-read timeout: only the overall
    # deadline stops this one.
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"o")
            await writer.drain()
            await asyncio.sleep(0.02)

    async with serve(trickle) as server:
        result = await check(
            clients,
            f"http://127.0.0.1:{server.port}/",
            timeout_s=STALL_TIMEOUT_S,
            body_contains="ok",
        )
    assert result == ProbeResult(State.DOWN, "timeout after 500ms", None)


async def test_it_reports_a_reset_connection(
    serve: Serve,
    clients: HttpClients,
    reset_connection: Callable[[asyncio.StreamWriter], None],
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset_connection(writer)

    async with serve(reset) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/")
    assert result == ProbeResult(State.DOWN, "connection reset", None)


async def test_it_reports_garbage_instead_of_http(serve: Serve, clients: HttpClients) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    async with serve(garbage) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/")
    assert result == ProbeResult(State.DOWN, "invalid http response: illegal status line", None)


async def test_it_reports_a_connection_closed_without_a_response(
    serve: Serve, clients: HttpClients
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with serve(hang_up) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/")
    assert result == ProbeResult(State.DOWN, "connection closed without a response", None)


async def test_it_reports_a_connection_closed_mid_response(
    serve: Serve, clients: HttpClients
) -> None:
    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nstatus: ok")
        await writer.drain()

    async with serve(truncate) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/", body_contains="ok")
    assert result == ProbeResult(State.DOWN, "connection closed mid-response", None)


async def test_it_stops_reading_a_huge_body_at_the_cap_and_judges_what_it_read(
    serve: Serve, clients: HttpClients
) -> None:
    chunk = b"status: ok\n" + b"x" * (65536 - 11)
    total = 4096 * len(chunk)  # 256 MiB, far more than socket buffers hold
    sent: list[int] = [0]

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()  # raises once the probe has hung up
            sent[0] += len(chunk)

    async with serve(huge) as server:
        result = await check(
            clients,
            f"http://127.0.0.1:{server.port}/",
            body_contains="status: ok",
            max_body_bytes=65536,
        )
    assert (result.state, result.reason) == (State.UP, "ok")
    assert sent[0] < total


async def test_it_says_the_body_was_cut_when_the_text_may_lie_past_the_cap(
    serve: Serve, clients: HttpClients
) -> None:
    body = b"x" * 100_000 + b"status: ok"
    async with serve(app(lambda _: response(200, body))) as server:
        result = await check(
            clients,
            f"http://127.0.0.1:{server.port}/",
            body_contains="status: ok",
            max_body_bytes=65536,
        )
    assert (result.state, result.reason) == (State.DOWN, 'body lacks "status: ok" in first 64 KiB')


async def test_it_does_not_mention_the_cap_when_the_whole_body_was_read(
    serve: Serve, clients: HttpClients
) -> None:
    async with serve(app(lambda _: response(200, b"status: starting"))) as server:
        result = await check(
            clients, f"http://127.0.0.1:{server.port}/", body_contains="status: ok"
        )
    assert (result.state, result.reason) == (State.DOWN, 'body lacks "status: ok"')


@pytest.mark.parametrize(
    ("body", "state", "reason"),
    [
        (b'{"version": 42, "ready": true}', State.UP, "ok"),
        (b'{"version": "unknown"}', State.DOWN, 'body does not match /"version": \\d+/'),
    ],
)
async def test_it_matches_the_body_against_a_regex(
    serve: Serve, clients: HttpClients, body: bytes, state: State, reason: str
) -> None:
    async with serve(app(lambda _: response(200, body))) as server:
        result = await check(
            clients,
            f"http://127.0.0.1:{server.port}/",
            body_regex=re.compile(r'"version": \d+'),
        )
    assert (result.state, result.reason) == (state, reason)


def redirects(request: Request) -> bytes:
    if request.target == "/old":
        return response(302, headers={"Location": "/new"})
    if request.target == "/loop":
        return response(302, headers={"Location": "/loop"})
    return response(200, b"ok")


@pytest.mark.parametrize(
    ("follow", "state", "reason"),
    [(True, State.UP, "ok"), (False, State.DOWN, "status 302")],
)
async def test_it_follows_redirects_only_when_asked(
    serve: Serve, clients: HttpClients, follow: bool, state: State, reason: str
) -> None:
    async with serve(app(redirects)) as server:
        result = await check(
            clients, f"http://127.0.0.1:{server.port}/old", follow_redirects=follow
        )
    assert (result.state, result.reason) == (state, reason)


async def test_it_reports_too_many_redirects(serve: Serve, clients: HttpClients) -> None:
    async with serve(app(redirects)) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/loop", follow_redirects=True)
    assert result == ProbeResult(State.DOWN, "too many redirects", None)


async def test_it_is_degraded_when_slower_than_the_latency_threshold(
    serve: Serve, clients: HttpClients
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.2)
        writer.write(response(200, b"ok"))
        await writer.drain()

    async with serve(slow) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/", latency_threshold_s=0.05)
    assert result.state is State.DEGRADED
    assert re.fullmatch(r"slow: [\d.]+m?s over 50ms", result.reason), result.reason


async def test_it_stays_up_when_faster_than_the_latency_threshold(
    serve: Serve, clients: HttpClients
) -> None:
    async with serve(app(lambda _: response(200, b"ok"))) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}/", latency_threshold_s=30)
    assert (result.state, result.reason) == (State.UP, "ok")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_it_reports_connect_refused(
    clients: HttpClients, closed_port: int, host: str
) -> None:
    # `localhost` may stand for ::1 and 127.0.0.1: refused on every address.
    result = await check(clients, f"http://{host}:{closed_port}/")
    assert result == ProbeResult(State.DOWN, "connect refused", None)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/", "invalid url: request URL has an unsupported protocol 'ftp://'"),
        (
            "127.0.0.1:8080/health",
            "invalid url: request URL is missing an 'http://' or 'https://' protocol",
        ),
        ("http://[::1/", "invalid url: invalid port: ':1'"),
    ],
)
async def test_it_reports_an_invalid_url_as_unknown(
    clients: HttpClients, url: str, reason: str
) -> None:
    assert await check(clients, url) == ProbeResult(State.UNKNOWN, reason, None)


async def test_it_is_unknown_when_no_shared_connection_is_free(serve: Serve) -> None:
    # One connection for everyone, held by a probe of a stalled target: the
    # next probe cannot ask its target, which says nothing about that target.
    accepted, release = asyncio.Event(), asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        accepted.set()
        async with asyncio.timeout(EVENT_WAIT_S):
            await release.wait()
        writer.write(response(200, b"ok"))
        await writer.drain()

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with HttpClients(limits=limits) as clients, serve(held) as server:
        url = f"http://127.0.0.1:{server.port}/"
        holder = asyncio.create_task(check(clients, url, timeout_s=EVENT_WAIT_S))
        async with asyncio.timeout(EVENT_WAIT_S):
            await accepted.wait()
        waiting = await check(clients, url, timeout_s=0.3)
        release.set()
        held_result = await holder
    assert waiting == ProbeResult(
        State.UNKNOWN,
        "no verdict: no free connection after 300ms",
        None,
        inconclusive="connections",
    )
    assert (held_result.state, held_result.reason) == (State.UP, "ok")


async def test_it_reuses_connections_across_checks(serve: Serve, clients: HttpClients) -> None:
    async with serve(app(lambda _: response(200, b"ok"))) as server:
        spec = HttpSpec(f"http://127.0.0.1:{server.port}/")
        probe = HttpProbe(spec, clients.client_for(spec))
        results = [await probe.check() for _ in range(3)]
    assert [r.state for r in results] == [State.UP] * 3
    assert server.connections == 1


async def test_it_refuses_to_hand_out_clients_once_closed() -> None:
    clients = HttpClients()
    clients.get(verify_tls=True)
    await clients.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        clients.get(verify_tls=False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"timeout_s": 0}, "timeout must be positive"),
        ({"max_body_bytes": -1}, "max_body_bytes must not be negative"),
        ({"latency_threshold_s": 0}, "latency_threshold must be positive"),
        ({"expect_status": (200, 99)}, "expected status 99 is not an HTTP status"),
    ],
)
def test_it_refuses_a_spec_out_of_range(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpSpec("http://127.0.0.1/", **spec)


# TLS: a self-signed certificate made for the test by the openssl command,
# valid longer than the default expiry warning (14 days): these tests are
# about verification (expiry: test_probes_tls.py).

OPENSSL = shutil.which("openssl")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed: no certificate for the TLS tests")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "30", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize(
    ("verify_tls", "trust_certificate", "state"),
    [(True, False, State.DOWN), (False, False, State.UP), (True, True, State.UP)],
)
async def test_it_verifies_tls_only_when_asked(
    serve: Serve,
    certificate: tuple[Path, Path],
    verify_tls: bool,
    trust_certificate: bool,
    state: State,
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert)) if trust_certificate else None
    async with (
        HttpClients(ssl_context=client_tls) as clients,
        serve(app(lambda _: response(200, b"ok")), tls=server_tls) as server,
    ):
        result = await check(clients, f"https://127.0.0.1:{server.port}/", verify_tls=verify_tls)
    assert result.state is state
    if state is State.DOWN:
        assert re.fullmatch(r"tls: self[- ]signed certificate", result.reason), result.reason


OUT_OF_DESCRIPTORS = """
import asyncio, json, os, resource, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from watchdog.probes import HttpClients, HttpProbe, HttpSpec

class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/health"
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

async def main():
    spec = HttpSpec(url, timeout_s=2)
    async with HttpClients() as clients:
        probe = HttpProbe(spec, clients.client_for(spec))  # as the daemon builds it, at start
        hog = []
        try:
            for _ in range(1000):  # bounded: the limit is 256
                hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        result = await probe.check()
        for fd in hog:
            os.close(fd)
        after = await probe.check()
    print(json.dumps([[str(r.state), r.reason, r.inconclusive] for r in (result, after)]))
    server.shutdown()

asyncio.run(main())
"""


def test_an_http_probe_out_of_descriptors_is_inconclusive_not_down() -> None:
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
