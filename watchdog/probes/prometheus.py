"""The `prometheus` probe: one instant query to the Prometheus a team already
runs, its value judged by comparisons (or, for a query of firing alerts,
whether any fires); and `instant_query`, the one client of Prometheus's
HTTP API that the probe and the observed-edges check share.

What Prometheus says is second-hand: a Prometheus that cannot be reached,
refuses the query or has no data says nothing about the target, so each of
those is `unknown` (never `up`, never `down`), with its reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import urllib.parse
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

import aiohttp
import httpx

from topology import State
from topology.document import redact_urls
from watchdog.probes.result import (
    ProbeResult,
    describe_os_error,
    inconclusive,
    local_trouble,
    shorten,
    timeout_reason,
)

__all__ = [
    "MAX_PROBE_ANSWER_BYTES",
    "OPERATORS",
    "Answer",
    "Comparison",
    "PrometheusProbe",
    "PrometheusServer",
    "PrometheusSpec",
    "QueryError",
    "Series",
    "instant_query",
]

# What one probe's answer may weigh: a query meant to judge one service
# returns a few series; a larger answer is a query to narrow, not to hold.
MAX_PROBE_ANSWER_BYTES = 8 * 1024 * 1024
# Reasons name at most this many alerts; the rest are counted.
_SHOWN_ALERTS = 3

OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
_COMPARISON = re.compile(
    r"\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?[Ii]nf)\s*"
)
# An environment variable's name, as POSIX shells accept it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_value(value: float) -> str:
    """A sample value as people read it: `0`, `0.0512`, `NaN`, `+Inf`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """`< 1`, `>= 0.05`: an operator and a number a value is compared with."""

    op: Literal["<", "<=", ">", ">=", "==", "!="]
    number: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown operator {self.op!r}: one of {', '.join(OPERATORS)}")
        if math.isnan(self.number):
            raise ValueError("NaN compares with nothing: give a number")

    @classmethod
    def parse(cls, text: str) -> Comparison:
        """`"< 1"` as a comparison; ValueError, saying what is expected,
        for anything else."""
        match = _COMPARISON.fullmatch(text)
        if match is None:
            raise ValueError("expected an operator (<, <=, >, >=, ==, !=) and a number, e.g. '< 1'")
        op = cast(Literal["<", "<=", ">", ">=", "==", "!="], match.group("op"))
        return cls(op, float(match.group("number")))

    def holds(self, value: float) -> bool:
        """Whether `value` satisfies the comparison (never for NaN)."""
        n = self.number
        match self.op:
            case "<":
                return value < n
            case "<=":
                return value <= n
            case ">":
                return value > n
            case ">=":
                return value >= n
            case "==":
                return value == n
            case _:
                return value != n and not math.isnan(value)

    def __str__(self) -> str:
        return f"{self.op} {format_value(self.number)}"


@dataclass(frozen=True, slots=True)
class PrometheusServer:
    """Where a Prometheus answers (its base URL: `http://prometheus:9090`,
    or with the path prefix it is served under), and how to authenticate:
    a bearer token, or a user name and password, each read from the
    environment variable named here; the secrets never sit in the file."""

    url: str
    bearer_token_env: str | None = None
    username: str | None = None
    password_env: str | None = None
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if self.bearer_token_env is not None and self.password_env is not None:
            raise ValueError("a bearer token or a password, not both")
        if (self.username is None) != (self.password_env is None):
            raise ValueError("basic authentication needs a username and a password_env")
        for variable in (self.bearer_token_env, self.password_env):
            if variable is not None and not _ENV_NAME.fullmatch(variable):
                raise ValueError(f"{variable!r} is not an environment variable's name")

    def variables(self) -> tuple[tuple[str, str], ...]:
        """(key, variable) for every environment variable the server's
        credentials are read from."""
        found = []
        if self.bearer_token_env is not None:
            found.append(("bearer_token_env", self.bearer_token_env))
        if self.password_env is not None:
            found.append(("password_env", self.password_env))
        return tuple(found)

    def headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The Authorization header from the variables in `environ` (none
        without credentials); QueryError naming a variable that is unset
        or empty."""
        for _, variable in self.variables():
            if not environ.get(variable):
                raise QueryError(f"the environment variable {variable} is not set or empty")
        if self.bearer_token_env is not None:
            return {"Authorization": f"Bearer {environ[self.bearer_token_env]}"}
        if self.password_env is not None:
            pair = f"{self.username}:{environ[self.password_env]}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        return {}

    @property
    def query_url(self) -> str:
        """The instant-query endpoint under the base URL."""
        return self.url.rstrip("/") + "/api/v1/query"


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an answer: its labels (`__name__` included when the
    query kept it) and its value at the query's time."""

    labels: Mapping[str, str]
    value: float

    def name(self) -> str:
        """`up{instance="a:9100", job="node"}`, as Prometheus writes a series."""
        labels = dict(self.labels)
        metric = labels.pop("__name__", "")
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return f"{metric}{{{inner}}}"


@dataclass(frozen=True, slots=True)
class Answer:
    """What an instant query returned: a `vector` of series (possibly none)
    or a `scalar` (one series without labels)."""

    kind: Literal["vector", "scalar"]
    series: tuple[Series, ...]


class QueryError(Exception):
    """A query that brought no answer; `str()` is the reason for people
    (`prometheus unreachable: connect refused`, `prometheus error: bad_data:
    ...`). `local` is (cause, words) when the watchdog's own resources are
    to blame (see `watchdog.probes.result.local_trouble`)."""

    def __init__(self, reason: str, local: tuple[str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.local = local


async def instant_query(
    client: httpx.AsyncClient,
    server: PrometheusServer,
    query: str,
    *,
    timeout_s: float,
    max_bytes: int = MAX_PROBE_ANSWER_BYTES,
    environ: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """`GET /api/v1/query?query=QUERY` at `server` (at Prometheus's own
    time), through `client`, within `timeout_s` for the whole exchange.

    The credentials come from `headers` when given (already read), else
    from `environ` (by default the process's environment). Raises
    `QueryError` for every way of getting no answer: unreachable, a
    timeout, an HTTP error, `status: error`, a body over `max_bytes` or not
    the API's JSON, or a result that is neither a vector nor a scalar.
    """
    if headers is None:
        headers = server.headers(os.environ if environ is None else environ)
    try:
        async with asyncio.timeout(timeout_s):
            status, body = await _get(
                client, server.query_url, query, headers, timeout_s=timeout_s, max_bytes=max_bytes
            )
    except QueryError:
        raise
    except Exception as exc:
        raise _unreachable(exc, server, timeout_s) from None
    # A big answer (the observed edges of an estate) is parsed off the loop:
    # the probes share it.
    document = await asyncio.to_thread(_json, body) if len(body) > 1 << 20 else _json(body)
    if not isinstance(document, dict):
        if status >= 300 or status < 200:
            raise QueryError(f"prometheus answered status {status}")
        raise QueryError("prometheus answered something other than its API's JSON")
    if document.get("status") != "success":
        kind = document.get("errorType")
        error = document.get("error")
        if isinstance(error, str):
            detail = f"{kind}: {error}" if isinstance(kind, str) and kind else error
            raise QueryError(f"prometheus error: {shorten(redact_urls(detail), 160)}")
        raise QueryError(f"prometheus answered status {status}")
    return _answer(document.get("data"))


async def _get(
    client: httpx.AsyncClient,
    url: str,
    query: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    max_bytes: int,
) -> tuple[int, bytes]:
    """The status and body (at most `max_bytes`) of the query."""
    async with client.stream(
        "GET",
        url,
        params={"query": query},
        headers={**headers, "Accept": "application/json"},
        timeout=timeout_s,
    ) as response:
        body = bytearray()
        chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
        async with aclosing(chunks):
            async for chunk in chunks:
                body += chunk
                if len(body) > max_bytes:
                    size = _size(max_bytes)
                    raise QueryError(f"prometheus answered more than {size}: narrow the query")
        return response.status_code, bytes(body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested beyond reason
        return None


def _answer(data: Any) -> Answer:
    if not isinstance(data, dict):
        raise QueryError("prometheus answered something other than its API's JSON")
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "vector" and isinstance(result, list):
            return Answer(
                "vector",
                tuple(
                    Series(MappingProxyType(item["metric"]), float(item["value"][1]))
                    for item in result
                ),
            )
        if kind == "scalar" and isinstance(result, list):
            return Answer("scalar", (Series(MappingProxyType({}), float(result[1])),))
    except (KeyError, IndexError, TypeError, ValueError):
        raise QueryError("prometheus answered something other than its API's JSON") from None
    if kind in ("matrix", "string"):
        what = "a range vector" if kind == "matrix" else "a string"
        raise QueryError(f"the query returns {what}: ask for an instant vector or a scalar")
    raise QueryError("prometheus answered something other than its API's JSON")


def _unreachable(exc: Exception, server: PrometheusServer, timeout_s: float) -> QueryError:
    """The words for a query that got no answer because of `exc`."""
    local = local_trouble(exc)
    if local is not None:
        return QueryError(f"no verdict: {local[1]}", local)
    origin: BaseException = exc
    # httpx-aiohttp maps aiohttp's errors onto httpx's classes loosely (a
    # refused connection becomes a ConnectTimeout): the error it wraps says.
    if isinstance(exc, httpx.TransportError) and isinstance(exc.__cause__, aiohttp.ClientError):
        origin = exc.__cause__
    host = _host(server.url)
    if isinstance(origin, TimeoutError | httpx.TimeoutException):
        return QueryError(f"prometheus unreachable: {timeout_reason(timeout_s)}")
    if isinstance(origin, aiohttp.ClientConnectorDNSError):
        return QueryError(f"prometheus unreachable: cannot resolve {host}")
    if isinstance(origin, aiohttp.ClientConnectorError):
        described = describe_os_error(origin.os_error, host)
    elif isinstance(origin, httpx.InvalidURL | httpx.UnsupportedProtocol | aiohttp.InvalidURL):
        return QueryError("prometheus url is not a usable http(s) URL")
    else:
        described = describe_os_error(origin, host)
    if described is None:
        text = str(origin).strip().rstrip(".")
        described = shorten(redact_urls(text[:1].lower() + text[1:]), 120) or (
            type(origin).__name__
        )
    return QueryError(f"prometheus unreachable: {described}")


def _host(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


@dataclass(frozen=True, slots=True)
class PrometheusSpec:
    """What a `prometheus` probe asks and how it judges the answer.

    `query` is an instant query to `server`. A value is judged by
    `down_if`, then `degraded_if`, the first that holds deciding; with
    neither, 0 is down and any other value up. Several series: each is
    judged, the worst verdict wins and the reason names its series. No data
    (an empty vector) is unknown, unless `alert`: the query then selects
    firing alerts (`ALERTS{alertstate="firing", ...}`), none firing is up,
    and a firing one is down (or what `down_if`/`degraded_if` say of its
    value). A NaN value is unknown.
    """

    query: str
    server: PrometheusServer
    down_if: Comparison | None = None
    degraded_if: Comparison | None = None
    alert: bool = False
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise ValueError("a query is needed")
        # `not x > 0` refuses NaN too; infinity has no deadline to compute.
        if not 0 < self.timeout_s < math.inf:
            raise ValueError(f"timeout must be positive and finite, not {self.timeout_s}")

    def judge(self, answer: Answer) -> ProbeResult:
        """The verdict on an answer (see the class)."""
        series = sorted(answer.series, key=Series.name)
        if not series:
            if self.alert:
                return ProbeResult(State.UP, "no alert firing")
            return ProbeResult(State.UNKNOWN, "no data for query")
        judged = [(self._judge_one(s), s) for s in series]
        worst = max(result.state for result, _ in judged)
        at_worst = [(result, s) for result, s in judged if result.state == worst]
        result, chosen = at_worst[0]
        if len(series) == 1:
            return result
        if self.alert and self.down_if is None and self.degraded_if is None:
            names = [_alert_name(s) for _, s in at_worst]
            shown = ", ".join(names[:_SHOWN_ALERTS])
            more = f" (+{len(names) - _SHOWN_ALERTS} more)" if len(names) > _SHOWN_ALERTS else ""
            return ProbeResult(State.DOWN, shorten(f"alerts firing: {shown}{more}"))
        noun = "alerts" if self.alert else "series"
        where = "" if self.alert else f" for {chosen.name()}"
        reason = f"{result.reason}{where} ({len(at_worst)} of {len(series)} {noun} {worst})"
        return ProbeResult(worst, shorten(reason))

    def _judge_one(self, series: Series) -> ProbeResult:
        value = series.value
        shown = f"value {format_value(value)}"
        if self.alert:
            shown = f"alert {_alert_name(series)} firing"
            if self.down_if is None and self.degraded_if is None:
                return ProbeResult(State.DOWN, shown)
            shown += f", value {format_value(value)}"
        if math.isnan(value):
            return ProbeResult(State.UNKNOWN, shown)
        if self.down_if is not None and self.down_if.holds(value):
            return ProbeResult(State.DOWN, f"{shown} (down_if {self.down_if})")
        if self.degraded_if is not None and self.degraded_if.holds(value):
            return ProbeResult(State.DEGRADED, f"{shown} (degraded_if {self.degraded_if})")
        if self.down_if is None and self.degraded_if is None and value == 0:
            return ProbeResult(State.DOWN, f"{shown} (0 is down)")
        return ProbeResult(State.UP, shown)


def _alert_name(series: Series) -> str:
    return series.labels.get("alertname") or series.name()


class PrometheusProbe:
    """Checks one target per `PrometheusSpec`, through a shared client;
    the credentials are read from `environ` (by default the process's
    environment) once, when it is built."""

    def __init__(
        self,
        spec: PrometheusSpec,
        client: httpx.AsyncClient,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self._client = client
        self._headers: Mapping[str, str] | None = None
        self._missing = ""
        try:
            self._headers = spec.server.headers(os.environ if environ is None else environ)
        except QueryError as err:
            self._missing = err.reason

    async def check(self) -> ProbeResult:
        """One query, judged: up, degraded or down from the value; unknown,
        with its reason, when Prometheus cannot be asked, refuses the query
        or has no data for it (never up, never down)."""
        if self._headers is None:
            return ProbeResult(State.UNKNOWN, self._missing)
        spec = self.spec
        try:
            answer = await instant_query(
                self._client,
                spec.server,
                spec.query,
                timeout_s=spec.timeout_s,
                headers=self._headers,
            )
        except QueryError as err:
            if err.local is not None:
                return inconclusive(*err.local)
            return ProbeResult(State.UNKNOWN, err.reason)
        return spec.judge(answer)
