"""The `http` probe: one request, judged on its status, its body, its
latency and, over https, its certificate's expiry; and `HttpClients`, the
shared connection pools every HTTP probe uses.

**Certificates.** Every TLS connection the pools make has its peer's leaf
certificate read once, when it is made (`certificates.peer_expiry`: its
`notAfter`, from the DER, so also without verification); a run on a pooled
connection looks the answer up and parses nothing. An https probe's result
carries the expiry (`tls_expires_at`) of the newest connection its origin's
probes have used (of its own URL: a redirect's target is not read): a
renewed certificate shows on new connections only, and the pool may hand
the next run an older one. It is `degraded` when the certificate expires
within `tls_expiry_warning` (14 days by default; an anomaly, the early sign
of an outage to come, like a latency regression), `down` once it has
expired when `verify_tls` is off (with it on, the handshake fails already);
`tls_expiry_warning: 0s` judges nothing and still reports the expiry. A run
that made no TLS connection (refused, a failed handshake) carries none.
Only the leaf is read: Python 3.11 does not expose the peer's chain.

**Fresh connections.** Pooled connections hide two things: a renewed
certificate (a kept-alive connection goes on with the old one) and a server
that refuses new connections while the old ones still answer. So when no
run of the probes of an origin (scheme, host, port) has made a new
connection to it for `FRESH_CONNECTION_S` (5 minutes), the next run makes
one, from a sibling pool that never keeps its connections (aiohttp's
`force_close`), and is judged like any other. A run that opens a new
connection anyway (nothing idle in the pool: the common case at the
default 30s interval, past the 5s keep-alive) counts, so this costs one
TLS handshake per origin per 5 minutes at most, and only for origins whose
connections stay pooled. A forced run that cannot connect is down, and the
next run is forced again: the origin's probes stay down until new
connections work, rather than look healthy again on the old connection.
Five minutes is well within the days of notice a renewal gives, and bounds
how long a listener that refuses new connections goes unseen.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import itertools
import logging
import math
import re
import ssl
import time
import traceback
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass, field, replace
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar, cast

import aiohttp
import httpx
from aiohttp import http_exceptions
from aiohttp.connector import Connection
from httpx_aiohttp import AiohttpTransport

from topology import State, format_duration
from topology.document import redact_urls
from watchdog.probes.certificates import peer_expiry
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
    "DEFAULT_TLS_EXPIRY_WARNING_S",
    "FRESH_CONNECTION_S",
    "MAX_BODY_BYTES_LIMIT",
    "MAX_TLS_EXPIRY_WARNING_S",
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
_DAY = 86400.0
# Two weeks' notice, as Gatus and Uptime Kuma give by default; a year at most
# (certificates are issued for 398 days at most).
DEFAULT_TLS_EXPIRY_WARNING_S = 14 * _DAY
MAX_TLS_EXPIRY_WARNING_S = 365 * _DAY
# A probe makes a new connection to its target at least this often (see the
# module docstring).
FRESH_CONNECTION_S = 300.0
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
    deadline for the whole exchange, redirects and body included. An https
    probe is degraded when its certificate expires within
    `tls_expiry_warning_s` (0: its certificate is not judged).
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
    # Out of the repr: a saved latency baseline is matched to its probe by a
    # digest of the repr, and a warning threshold changes nothing of the
    # latency learned (nor should an upgrade that added it relearn them all).
    tls_expiry_warning_s: float = field(default=DEFAULT_TLS_EXPIRY_WARNING_S, repr=False)

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
        if not 0 <= self.tls_expiry_warning_s <= MAX_TLS_EXPIRY_WARNING_S:
            raise ValueError(
                "tls_expiry_warning must be from 0 to 365 days, "
                f"not {format_duration(self.tls_expiry_warning_s)}"
            )
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


# The request extensions through which the transport tells a probe how its
# exchange goes (`_Progress`), and a probe asks for a new connection.
_PROGRESS = "watchdog.progress"
_FRESH = "watchdog.fresh"


class _Progress:
    """How far an exchange got, for naming what a failure interrupted, and
    what its connections were."""

    __slots__ = ("answered", "new_connection", "queued", "tls")

    def __init__(self) -> None:
        self.queued = False  # waiting for a free connection in the shared pool
        self.answered = False  # response headers were received
        # Of the exchange's first connection, to the probe's own target (a
        # redirect's target is not the probe's): whether it was made for it
        # rather than taken from the pool (None: no connection), and over
        # TLS (the connection's serial number, when its certificate expires).
        self.new_connection: bool | None = None
        self.tls: tuple[int, float] | None = None

    def connected(self, new: bool, serial: int, tls_expires_at: float | None) -> None:
        """The exchange got a connection (`new` or pooled, the `serial`th
        the pools made) to its next hop."""
        if self.new_connection is None:
            self.new_connection = new
            if tls_expires_at is not None:
                self.tls = (serial, tls_expires_at)


# The exchange in progress in this task: how the connector, which aiohttp
# calls deep inside a request, reaches the probe's `_Progress`.
_EXCHANGE: contextvars.ContextVar[_Progress | None] = contextvars.ContextVar(
    "watchdog_http_exchange", default=None
)


# Numbers every connection the pools make, in order: which of two was made last.
_SERIALS = itertools.count()


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, telling each exchange whether its connection is
    new, its serial number and when its peer's certificate expires. The
    certificate is read once per connection, when it is first handed out:
    the pooled ones find theirs in a table that forgets a connection with
    its protocol object."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._seen: weakref.WeakKeyDictionary[object, tuple[int, float | None]] = (
            weakref.WeakKeyDictionary()
        )

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        progress = _EXCHANGE.get()
        protocol = connection.protocol
        if progress is not None and protocol is not None:
            try:
                (serial, expires_at), new = self._seen[protocol], False
            except KeyError:
                transport = connection.transport
                ssl_object = transport.get_extra_info("ssl_object") if transport else None
                serial, expires_at, new = next(_SERIALS), peer_expiry(ssl_object), True
                self._seen[protocol] = (serial, expires_at)
            progress.connected(new, serial, expires_at)
        return connection


class _PooledTransport(AiohttpTransport):
    """httpx-aiohttp's transport on one aiohttp session of our own (created
    in the running loop on first use, closed with the client), bounded to
    `limits.max_connections` exchanges at a time by a semaphore, so a probe
    knows when it waits for the pool rather than for its target.

    The slot is held from the request until the response is closed: aiohttp's
    connector (with the same limit, as a bound on sockets) never queues.

    A request with the `_FRESH` extension goes through a sibling transport
    whose connections are never pooled (new for the request, closed after
    it), under the same slots.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool,
        limits: httpx.Limits,
        fresh: bool = False,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._verify = verify
        self._slots = slots or asyncio.Semaphore(limits.max_connections or _UNBOUNDED)
        self._session: aiohttp.ClientSession | None = None
        self._force_close = fresh
        self._fresh: _PooledTransport | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        # aiohttp refuses a keep-alive timeout on connections it never keeps.
        keep: dict[str, Any] = (
            {"force_close": True}
            if self._force_close
            else {"keepalive_timeout": self.limits.keepalive_expiry}
        )
        connector = _Connector(limit=self.limits.max_connections or 0, ssl=self.ssl_context, **keep)
        return aiohttp.ClientSession(
            connector=connector,
            # httpx keeps the client's cookies; a second jar would only cost.
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.extensions.get(_FRESH) and not self._force_close:
            if self._fresh is None:
                self._fresh = _PooledTransport(
                    verify=self._verify, limits=self.limits, fresh=True, slots=self._slots
                )
            return await self._fresh.handle_async_request(request)
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
        if not isinstance(progress, _Progress):
            progress = None
        if self._slots.locked():
            if progress is not None:
                progress.queued = True
            await self._slots.acquire()
            if progress is not None:
                progress.queued = False
        else:
            await self._slots.acquire()
        token = _EXCHANGE.set(progress)
        try:
            response = await super().handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        finally:
            _EXCHANGE.reset(token)
        response.stream = _SlotStream(response.stream, self._slots)
        return response

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            if self._fresh is not None:
                await self._fresh.aclose()


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


@dataclass(slots=True)
class _Origin:
    """What the probes of one origin (scheme, host and port, through one
    client) learn together: when a run last made a new connection to it,
    and the certificate of the newest connection a run used (serial,
    expiry). Shared, so that fifty probes behind one ingress make one fresh
    connection every few minutes, not fifty, and all see a renewal at once."""

    fresh_at: float
    newest: tuple[int, float] | None = None


_OriginKey = tuple[str, str, int | None]  # scheme, host, port (None: the scheme's)
# Per shared client, its origins; forgotten with the client.
_ORIGINS: weakref.WeakKeyDictionary[httpx.AsyncClient, dict[_OriginKey, _Origin]] = (
    weakref.WeakKeyDictionary()
)


def _origin(client: httpx.AsyncClient, url: str, now: float) -> _Origin:
    """The shared `_Origin` of `url` through `client` (new ones count from `now`)."""
    try:
        parsed = httpx.URL(url)
        key = (parsed.scheme, parsed.host, parsed.port)
    except (httpx.InvalidURL, ValueError):  # idna's errors too; every run says `invalid url`
        key = (url, "", None)
    origins = _ORIGINS.get(client)
    if origins is None:
        origins = _ORIGINS[client] = {}
    origin = origins.get(key)
    if origin is None:
        origin = origins[key] = _Origin(now)
    return origin


class HttpProbe:
    """Checks one HTTP target per `HttpSpec`, through a shared client; a
    new connection to its origin at least every `fresh_connection_s` (see
    the module docstring), timed by `clock` (monotonic seconds)."""

    def __init__(
        self,
        spec: HttpSpec,
        client: httpx.AsyncClient,
        *,
        fresh_connection_s: float = FRESH_CONNECTION_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self._client = client
        self._fresh_connection_s = fresh_connection_s
        self._clock = clock
        # Fresh connections are counted from the origin's first probe (its
        # first runs make new ones anyway). A renewed certificate shows on
        # new connections only, and the pool may hand an older one to the
        # next run: the newest connection's certificate is the one reported.
        self._origin = _origin(client, spec.url, clock())
        self._https = spec.url[:8].lower() == "https://"

    async def check(self) -> ProbeResult:
        """One request to the target, judged: `up`, `degraded` when slow or
        when its certificate expires soon, `down` with the reason the target
        failed, `unknown` when the probe could not ask (invalid URL, no free
        connection in the shared pool). Over https, the result carries the
        certificate's expiry when a TLS connection was made."""
        spec = self.spec
        progress = _Progress()
        origin = self._origin
        started = self._clock()
        fresh = started - origin.fresh_at >= self._fresh_connection_s
        try:
            async with asyncio.timeout(spec.timeout_s):
                result = await self._exchange(progress, fresh=fresh)
        except Exception as exc:
            result = self._judge_failure(exc, progress)
        else:
            result = apply_latency_threshold(result, spec.latency_threshold_s)
        if progress.new_connection:
            origin.fresh_at = max(origin.fresh_at, started)
        if self._https and progress.tls is not None:
            if origin.newest is None or progress.tls[0] >= origin.newest[0]:
                origin.newest = progress.tls
            result = self._judge_certificate(result, origin.newest[1])
        return result

    def _judge_certificate(self, result: ProbeResult, expires_at: float) -> ProbeResult:
        """`result` with the certificate's expiry, and judged on it when the
        target answered (`up` or `degraded`): an expired certificate is down,
        one within the warning degraded, with the warning as an anomaly."""
        result = replace(result, tls_expires_at=expires_at)
        warning = self.spec.tls_expiry_warning_s
        if not warning or result.state not in (State.UP, State.DEGRADED):
            return result
        left = expires_at - time.time()
        if left >= warning:
            return result
        date = _date(expires_at)
        if left <= 0:
            return replace(
                result, state=State.DOWN, reason=f"certificate expired {_span(-left)} ago ({date})"
            )
        sign = (
            f"certificate expires in {_span(left)} ({date}), warning at {format_duration(warning)}"
        )
        # Slow as well: both are news.
        reason = shorten(f"{result.reason}; {sign}") if result.state is State.DEGRADED else sign
        # An early sign, as a latency regression is: an anomaly alert, not an
        # outage that escalates past a recovery target in minutes.
        return replace(
            result, state=State.DEGRADED, reason=reason, anomalies=(*result.anomalies, sign)
        )

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

    async def _exchange(self, progress: _Progress, *, fresh: bool) -> ProbeResult:
        spec = self.spec
        extensions: dict[str, Any] = {_PROGRESS: progress}
        if fresh:
            extensions[_FRESH] = True
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
            extensions=extensions,
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


def _span(seconds: float) -> str:
    """A certificate's time left (or past), as people count it: whole days
    (`9d`), then hours and minutes under a day (`5h12m`)."""
    if seconds >= _DAY:
        return f"{int(seconds // _DAY)}d"
    return format_duration(max(60.0, seconds // 60 * 60))


def _date(epoch: float) -> str:
    """The UTC date of `epoch`: `2027-01-04`."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).date().isoformat()


def _format_bytes(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"
