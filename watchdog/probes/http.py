"""The `http` probe: one request, judged on its status, its body and its
latency; and `HttpClients`, the shared connection pools every HTTP probe uses."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import ssl
import time
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Self, TypeVar, cast

import aiohttp
import httpx
from aiohttp import http_exceptions
from httpx_aiohttp import AiohttpTransport

from topology import State, format_duration
from topology.document import redact_urls
from watchdog.probes.result import (
    ProbeResult,
    apply_latency_threshold,
    describe_os_error,
    inconclusive,
    local_trouble,
    shorten,
    timeout_reason,
)

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_BODY_BYTES_LIMIT",
    "HttpClients",
    "HttpProbe",
    "HttpSpec",
    "header_trouble",
    "method_trouble",
]

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

_E = TypeVar("_E", bound=BaseException)

# What a probe may hold of a body at most: a health answer is small, and
# every probe in flight holds its own.
MAX_BODY_BYTES_LIMIT = 64 * 1024 * 1024
# An HTTP method and a header name are RFC 9110 tokens: no space, no CR or
# LF that would end the request line or a header early.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MAX_METHOD_CHARS = 32
# A header value: visible ASCII, spaces and tabs (httpx sends ASCII).
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


def method_trouble(method: str) -> str | None:
    """Why `method` cannot be an HTTP method (an RFC 9110 token of at most
    32 characters: `GET`, `HEAD`, `PROPFIND`), or None."""
    if not _TOKEN.fullmatch(method):
        return "an HTTP method is one word of letters, digits and !#$%&'*+-.^_`|~"
    if len(method) > _MAX_METHOD_CHARS:
        return f"an HTTP method has at most {_MAX_METHOD_CHARS} characters"
    return None


def header_trouble(name: str, value: str) -> str | None:
    """Why `name: value` cannot be sent as a header, or None."""
    if not _TOKEN.fullmatch(name):
        return "a header name is one word of letters, digits and !#$%&'*+-.^_`|~"
    if not _FIELD_VALUE.fullmatch(value):
        return "a header value holds ASCII text and tabs only: no line break or control character"
    return None


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
        # `not x > 0` refuses NaN too; infinity has no deadline to compute.
        if not 0 < self.timeout_s < math.inf:
            raise ValueError(f"timeout must be positive and finite, not {self.timeout_s}")
        if self.max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must not be negative, not {self.max_body_bytes}")
        if self.max_body_bytes > MAX_BODY_BYTES_LIMIT:
            limit = MAX_BODY_BYTES_LIMIT
            raise ValueError(f"max_body_bytes must be at most {limit}, not {self.max_body_bytes}")
        if self.latency_threshold_s is not None and not 0 < self.latency_threshold_s < math.inf:
            raise ValueError(f"latency_threshold must be positive, not {self.latency_threshold_s}")
        trouble = method_trouble(self.method)
        if trouble is not None:
            raise ValueError(f"method {self.method!r}: {trouble}")
        for name, value in self.headers.items():
            trouble = header_trouble(name, value)
            if trouble is not None:
                raise ValueError(f"header {name!r}: {trouble}")
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

    The clients speak through aiohttp (the `httpx-aiohttp` transport): under
    thousands of probes it costs a fraction of the CPU of httpx's own
    transport (see benchmarks/probes.py). Clients do not read proxy settings
    or `.netrc` from the environment: a probe reaches its target directly.
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
                transport=_PooledTransport(verify=verify, limits=self._limits),
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


# The request extension through which the transport tells a probe that its
# request waits for a free connection in the shared pool.
_PROGRESS = "watchdog.progress"


class _Progress:
    """How far an exchange got, for naming what a failure interrupted."""

    __slots__ = ("answered", "queued")

    def __init__(self) -> None:
        self.queued = False  # waiting for a free connection in the shared pool
        self.answered = False  # response headers were received


class _PooledTransport(AiohttpTransport):
    """httpx-aiohttp's transport on one aiohttp session of our own (created
    in the running loop on first use, closed with the client), bounded to
    `limits.max_connections` exchanges at a time by a semaphore, so a probe
    knows when it waits for the pool rather than for its target.

    The slot is held from the request until the response is closed: aiohttp's
    connector (with the same limit, as a bound on sockets) never queues.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool, limits: httpx.Limits) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._slots = asyncio.Semaphore(limits.max_connections or _UNBOUNDED)
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # httpx keeps the client's cookies; a second jar would only cost.
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self.client = self._new_session()
        # A redirect's request carries its body as an unread stream, which
        # httpx-aiohttp would send chunked even when empty: probes send no
        # more than a small body, read it here.
        await request.aread()
        if request.url.userinfo:
            # httpx turned the URL's user info into an Authorization header
            # already; aiohttp refuses a URL that carries it as well.
            request.url = request.url.copy_with(username=None, password=None)
        progress = request.extensions.get(_PROGRESS)
        if self._slots.locked():
            if isinstance(progress, _Progress):
                progress.queued = True
            await self._slots.acquire()
            if isinstance(progress, _Progress):
                progress.queued = False
        else:
            await self._slots.acquire()
        try:
            response = await super().handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        response.stream = _SlotStream(response.stream, self._slots)
        return response


_UNBOUNDED = 1 << 30


class _SlotStream(httpx.AsyncByteStream):
    """A response body that gives its pool slot back when closed."""

    __slots__ = ("_slots", "_stream")

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, slots: asyncio.Semaphore
    ) -> None:
        self._stream = cast(httpx.AsyncByteStream, stream)
        self._slots: asyncio.Semaphore | None = slots

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            slots, self._slots = self._slots, None
            if slots is not None:
                slots.release()


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
        except Exception as exc:
            return self._judge_failure(exc, progress)
        return apply_latency_threshold(result, spec.latency_threshold_s)

    def _judge_failure(self, exc: Exception, progress: _Progress) -> ProbeResult:
        spec = self.spec
        # httpx-aiohttp maps aiohttp's errors onto httpx's classes loosely
        # (every connection error becomes a ConnectTimeout); the aiohttp
        # error it wraps says what happened.
        origin: BaseException = exc
        if isinstance(exc, httpx.TransportError) and isinstance(exc.__cause__, aiohttp.ClientError):
            origin = exc.__cause__
        local = local_trouble(exc)
        if local is not None:
            return inconclusive(*local)
        if isinstance(origin, TimeoutError | httpx.TimeoutException):
            if isinstance(origin, httpx.PoolTimeout) or progress.queued:
                # Our own pool is full: says nothing about the target.
                waited = format_duration(spec.timeout_s)
                return inconclusive("connections", f"no free connection after {waited}")
            return ProbeResult(State.DOWN, timeout_reason(spec.timeout_s))
        if isinstance(origin, httpx.InvalidURL):
            reason = redact_urls(_sentence(str(origin)))
            return ProbeResult(State.UNKNOWN, f"invalid url: {reason}")
        if isinstance(
            origin,
            httpx.UnsupportedProtocol | aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError,
        ):
            return ProbeResult(State.UNKNOWN, f"invalid url: {_unsupported_url(exc, spec.url)}")
        if isinstance(origin, aiohttp.ClientError):
            return ProbeResult(State.DOWN, _describe_aiohttp_error(origin, progress, spec.url))
        if isinstance(origin, httpx.HTTPError):
            return ProbeResult(State.DOWN, _describe_http_error(origin))
        # Neither the URL nor an error's text naming it is logged as it is:
        # it may carry credentials.
        trace = redact_urls("".join(traceback.format_exception(exc)).rstrip())
        log.error("probe=http host=%s unexpected error\n%s", _host(spec.url), trace)
        return ProbeResult(State.UNKNOWN, f"probe error: {type(exc).__name__}")

    async def _exchange(self, progress: _Progress) -> ProbeResult:
        spec = self.spec
        start = time.perf_counter()
        async with self._client.stream(
            spec.method,
            spec.url,
            headers=spec.headers,
            follow_redirects=spec.follow_redirects,
            # The transport's timeouts are per phase (aiohttp's connect and
            # per-read timeouts: a trickling server resets the read timeout
            # with every byte); the deadline around the exchange bounds it.
            timeout=spec.timeout_s,
            extensions={_PROGRESS: progress},
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


def _describe_http_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, httpx.DecodingError):
        return "invalid body encoding"
    try:
        host: str | None = exc.request.url.host
    except RuntimeError:  # an error raised before its request was built
        host = None
    described = describe_os_error(exc, host)
    return described or shorten(redact_urls(_sentence(str(exc))) or type(exc).__name__)


def _describe_aiohttp_error(exc: aiohttp.ClientError, progress: _Progress, url: str) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return describe_os_error(exc.certificate_error) or "tls: certificate verify failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {_host(url)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Its errno and text are the socket's, its cause the failure itself.
        described = describe_os_error(exc.os_error, _host(url))
        if described is not None:
            return described
    elif isinstance(exc, aiohttp.ClientOSError):
        described = describe_os_error(exc, _host(url))
        return described or shorten(
            redact_urls(_sentence(exc.strerror or "")) or "connection error"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        if progress.answered:
            return "connection closed mid-response"
        return "connection closed without a response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        described = describe_os_error(exc)
        if described is not None:
            return described
        # The body ended early: short of its Content-Length, or its chunks.
        chunked = _behind(exc, http_exceptions.TransferEncodingError)
        if _behind(exc, http_exceptions.ContentLengthError) is not None or (
            chunked is not None and chunked.message.startswith("Not enough data")
        ):
            return "connection closed mid-response"
        return f"invalid http response body: {_protocol_detail(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp's parser refused the response (its status line or headers).
        if _behind(exc, http_exceptions.BadStatusLine) is not None:
            return "invalid http response: illegal status line"
        return f"invalid http response: {_protocol_detail(exc)}"
    # aiohttp's messages often name the URL (the redirect it refused...).
    return shorten(redact_urls(_sentence(str(exc))) or type(exc).__name__)


def _protocol_detail(exc: BaseException) -> str:
    # aiohttp's parser quotes the offending bytes (`Bad status line:\n
    # Expected HTTP/...:\n\n  b'SSH-2.0'`): the kind of error is for people,
    # the garbage itself is not.
    error = _behind(exc, http_exceptions.HttpProcessingError)
    message = error.message if error is not None else str(exc)
    detail = redact_urls(_sentence(message.split(":", 1)[0].split("\n", 1)[0]))
    return shorten(detail, 80) or "unreadable"


def _behind(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first error of `kind` in `exc`'s chain of causes, `exc` included."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _unsupported_url(exc: Exception, url: str) -> str:
    """httpx's words for a URL that is not http(s), whoever refused it."""
    if isinstance(exc, httpx.RequestError):
        with suppress(RuntimeError):  # an error raised before its request was built
            url = str(exc.request.url)
    try:
        scheme = httpx.URL(url).scheme
    except httpx.InvalidURL:
        scheme = ""
    if not scheme:
        return "request URL is missing an 'http://' or 'https://' protocol"
    return f"request URL has an unsupported protocol '{scheme}://'"


def _sentence(message: str) -> str:
    """httpx's messages as reasons: lower case first letter, no trailing period."""
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:]


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or "?"
    except ValueError:  # httpx.InvalidURL, and idna's errors for a bad xn-- name
        return "?"


def _format_bytes(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"
