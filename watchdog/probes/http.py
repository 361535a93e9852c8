"""The `http` probe: one request, judged on its status, its body and its
latency; and `HttpClients`, the shared connection pools every HTTP probe uses."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Self, cast

import httpx

from topology import State, format_duration
from watchdog.probes.result import (
    ProbeResult,
    apply_latency_threshold,
    describe_os_error,
    shorten,
    timeout_reason,
)

__all__ = ["DEFAULT_LIMITS", "HttpClients", "HttpProbe", "HttpSpec"]

log = logging.getLogger(__name__)

# Connections are shared by every probe of the daemon: enough for thousands
# of probes at a 10s interval, bounded so a flood of stalled targets cannot
# exhaust file descriptors. The limit is per client (TLS-verifying or not).
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256)
DEFAULT_MAX_REDIRECTS = 10

# Health endpoints are small; asking for them uncompressed saves CPU on both
# sides and keeps `max_body_bytes` a bound on what the probe holds in memory.
_DEFAULT_HEADERS = {"User-Agent": "service-watchdog", "Accept-Encoding": "identity"}
_MAX_NEEDLE = 40


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """What an `http` probe asks and what it expects.

    `expect_status` empty means any 2xx. `max_body_bytes` caps what is read
    of the body; the body checks judge what was read. `timeout_s` is the
    deadline for the whole exchange, redirects and body included.
    """

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    expect_status: tuple[int, ...] = ()
    body_contains: str | None = None
    body_regex: re.Pattern[str] | None = None
    timeout_s: float = 5.0
    follow_redirects: bool = False
    verify_tls: bool = True
    max_body_bytes: int = 1_048_576
    latency_threshold_s: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout_s}")
        if self.max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must not be negative, not {self.max_body_bytes}")
        if self.latency_threshold_s is not None and self.latency_threshold_s <= 0:
            raise ValueError(f"latency_threshold must be positive, not {self.latency_threshold_s}")
        for status in self.expect_status:
            if not 100 <= status <= 599:
                raise ValueError(f"expected status {status} is not an HTTP status")

    def expects(self, status: int) -> bool:
        """True when `status` is one the probe accepts."""
        if self.expect_status:
            return status in self.expect_status
        return 200 <= status <= 299


class HttpClients:
    """The `httpx.AsyncClient`s shared by every HTTP probe, so thousands of
    probes share connections: one that verifies TLS (against `ssl_context`,
    by default the system's trust store), one that does not. Each is created
    on first use; `aclose()` closes both.

    Clients do not read proxy settings or `.netrc` from the environment: a
    probe reaches its target directly.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limits = limits
        self._max_redirects = max_redirects
        self._ssl_context = ssl_context
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._closed = False

    def get(self, *, verify_tls: bool) -> httpx.AsyncClient:
        """The shared client that does (or does not) verify TLS certificates."""
        if self._closed:
            raise RuntimeError("the HTTP clients are closed")
        client = self._clients.get(verify_tls)
        if client is None:
            verify: ssl.SSLContext | bool = False
            if verify_tls:
                # The system store, where operators add their internal CAs
                # (certifi's bundle, httpx's default, knows none of them).
                verify = self._ssl_context or ssl.create_default_context()
            client = httpx.AsyncClient(
                verify=verify,
                limits=self._limits,
                max_redirects=self._max_redirects,
                headers=_DEFAULT_HEADERS,
                trust_env=False,
            )
            self._clients[verify_tls] = client
        return client

    def client_for(self, spec: HttpSpec) -> httpx.AsyncClient:
        """The shared client that suits `spec`."""
        return self.get(verify_tls=spec.verify_tls)

    async def aclose(self) -> None:
        """Close every client and its connections; `get` fails afterwards."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Progress:
    """How far an exchange got, for naming what a failure interrupted."""

    __slots__ = ("answered", "queued")

    def __init__(self) -> None:
        self.queued = True  # waiting for a free connection in the shared pool
        self.answered = False  # response headers were received

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        # httpcore traces nothing while a request waits for a free connection,
        # so any event means the wait is over.
        self.queued = False


class HttpProbe:
    """Checks one HTTP target per `HttpSpec`, through a shared client."""

    def __init__(self, spec: HttpSpec, client: httpx.AsyncClient) -> None:
        self.spec = spec
        self._client = client

    async def check(self) -> ProbeResult:
        """One request to the target, judged: `up`, `degraded` when slow,
        `down` with the reason the target failed, `unknown` when the probe
        could not ask (invalid URL, no free connection in the shared pool)."""
        spec = self.spec
        progress = _Progress()
        try:
            async with asyncio.timeout(spec.timeout_s):
                result = await self._exchange(progress)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.PoolTimeout) or progress.queued:
                # Our own pool is full: says nothing about the target.
                waited = format_duration(spec.timeout_s)
                return ProbeResult(State.UNKNOWN, f"no free connection after {waited}")
            return ProbeResult(State.DOWN, timeout_reason(spec.timeout_s))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return ProbeResult(State.UNKNOWN, f"invalid url: {_sentence(str(exc))}")
        except httpx.HTTPError as exc:
            return ProbeResult(State.DOWN, _describe_http_error(exc, progress))
        except Exception as exc:
            # The URL is not logged: it may carry credentials.
            log.exception("probe=http host=%s unexpected error", _host(spec.url))
            return ProbeResult(State.UNKNOWN, f"probe error: {type(exc).__name__}")
        return apply_latency_threshold(result, spec.latency_threshold_s)

    async def _exchange(self, progress: _Progress) -> ProbeResult:
        spec = self.spec
        start = time.perf_counter()
        async with self._client.stream(
            spec.method,
            spec.url,
            headers=spec.headers,
            follow_redirects=spec.follow_redirects,
            # httpx's own timeouts are per phase (a trickling server resets
            # the read timeout with every byte); the deadline around the
            # exchange is what bounds it.
            timeout=spec.timeout_s,
            extensions={"trace": progress.trace},
        ) as response:
            progress.answered = True
            body, truncated = await _read_capped(response, spec.max_body_bytes)
            encoding = response.encoding or "utf-8"
        latency = time.perf_counter() - start

        if not spec.expects(response.status_code):
            return ProbeResult(State.DOWN, f"status {response.status_code}", latency)
        if spec.body_contains is None and spec.body_regex is None:
            return ProbeResult(State.UP, "ok", latency)
        text = body.decode(encoding, errors="replace")
        within = f" in first {_format_bytes(spec.max_body_bytes)}" if truncated else ""
        if spec.body_contains is not None and spec.body_contains not in text:
            needle = shorten(spec.body_contains, _MAX_NEEDLE)
            return ProbeResult(State.DOWN, f'body lacks "{needle}"{within}', latency)
        if spec.body_regex is not None and spec.body_regex.search(text) is None:
            pattern = shorten(spec.body_regex.pattern, _MAX_NEEDLE)
            return ProbeResult(State.DOWN, f"body does not match /{pattern}/{within}", latency)
        return ProbeResult(State.UP, "ok", latency)


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of the body, and whether there was more. Reading
    stops there: the rest is never received (the connection is then closed
    rather than reused)."""
    body = bytearray()
    # `aiter_bytes` is an async generator: closed here, not whenever the
    # garbage collector gets to it.
    chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with aclosing(chunks):
        async for chunk in chunks:
            body += chunk
            if len(body) > cap:
                return bytes(body[:cap]), True
    return bytes(body), False


def _describe_http_error(exc: httpx.HTTPError, progress: _Progress) -> str:
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, httpx.DecodingError):
        return "invalid body encoding"
    try:
        host: str | None = exc.request.url.host
    except RuntimeError:  # an error raised before its request was built
        host = None
    described = describe_os_error(exc, host)
    if described is not None:
        return described
    if isinstance(exc, httpx.RemoteProtocolError):
        message = str(exc)
        if progress.answered:
            if message.startswith("peer closed connection"):
                return "connection closed mid-response"
            return f"invalid http response body: {_protocol_detail(message)}"
        if message.startswith("Server disconnected"):
            return "connection closed without a response"
        return f"invalid http response: {_protocol_detail(message)}"
    return shorten(_sentence(str(exc)) or type(exc).__name__)


def _protocol_detail(message: str) -> str:
    # h11 quotes the offending bytes (`illegal status line: bytearray(b'...')`):
    # the kind of error is for people, the garbage itself is not.
    return shorten(_sentence(message.split(": bytearray(", 1)[0]), 80)


def _sentence(message: str) -> str:
    """httpx's messages as reasons: lower case first letter, no trailing period."""
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:]


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or "?"
    except httpx.InvalidURL:
        return "?"


def _format_bytes(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"
