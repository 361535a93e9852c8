"""Observed edges from the Prometheus that teams already run: the calls
between services over a window, read with instant queries (an
OpenTelemetry service graph, Istio's request metrics, or queries of your
own), compared with the topology by `topology.observed.compare`.

    report = await observed_findings(topology, "http://prometheus:9090")
    for finding in report.findings: ...   # undeclared-dependency warnings
    for note in report.notes: ...         # information
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from alerts.model import Alert
from topology import Topology
from topology.findings import Finding
from topology.observed import Call, ObservedReport, compare
from watchdog.probes.http import HttpClients
from watchdog.probes.prometheus import PrometheusServer, QueryError, instant_query

__all__ = [
    "DEFAULT_QUERIES",
    "DEFAULT_WINDOW_S",
    "ISTIO",
    "MAX_WINDOW_S",
    "MIN_WINDOW_S",
    "SERVICE_GRAPH",
    "EdgeQuery",
    "ObservedError",
    "fetch_calls",
    "observed_findings",
    "undeclared_alerts",
]

DEFAULT_WINDOW_S = 3600.0
# A rate needs two samples in the window (a scrape interval is at most a
# few minutes); past a month, retention usually has gone.
MIN_WINDOW_S = 60.0
MAX_WINDOW_S = 31 * 86400.0
DEFAULT_TIMEOUT_S = 30.0
# An estate's calls: 10,000 series are about 3 MB of JSON.
MAX_ANSWER_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EdgeQuery:
    """An instant query whose series are calls per second, one series per
    (caller, callee): `{window}` in it stands for the window (`3600s`);
    `caller` and `callee` name the labels whose values name each end,
    outermost first (namespace, then workload: see
    `topology.observed.candidates`)."""

    name: str
    query: str
    caller: tuple[str, ...]
    callee: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise ValueError("a query is needed")
        if not self.caller or not self.callee:
            raise ValueError("name the labels of the caller and of the callee")

    def text(self, window_s: float) -> str:
        """The query with its window, in PromQL's words."""
        seconds = round(window_s)
        window = f"{seconds}s" if seconds == window_s else f"{round(window_s * 1000)}ms"
        return self.query.replace("{window}", window)


# OpenTelemetry's service graph (the collector's servicegraph connector,
# Tempo's metrics generator): `client` calls `server`.
SERVICE_GRAPH = EdgeQuery(
    "service graph",
    "sum by (client, server) (rate(traces_service_graph_request_total[{window}]))",
    ("client",),
    ("server",),
)
# Istio's standard metrics: workloads and their namespaces on each side.
ISTIO = EdgeQuery(
    "istio",
    "sum by (source_workload, source_workload_namespace, destination_workload, "
    "destination_workload_namespace) (rate(istio_requests_total[{window}]))",
    ("source_workload_namespace", "source_workload"),
    ("destination_workload_namespace", "destination_workload"),
)
DEFAULT_QUERIES = (SERVICE_GRAPH, ISTIO)


# An undeclared-calls alert names this many calls, then counts the rest.
SHOWN_CALLS = 5


class ObservedError(Exception):
    """No comparison: a query failed (Prometheus unreachable, an error, a
    bad custom query). `reasons` has one line per failed query."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)


async def fetch_calls(
    server: PrometheusServer,
    client: httpx.AsyncClient,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    queries: Sequence[EdgeQuery] = DEFAULT_QUERIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
) -> list[Call]:
    """Every call the `queries` return, asked at once. A query that finds
    nothing (no mesh, no tracing) gives no calls; one that fails raises
    `ObservedError` with every failure."""
    _check_window(window_s)
    try:
        headers = server.headers(os.environ if environ is None else environ)
    except QueryError as err:
        raise ObservedError([err.reason]) from None
    answers = await asyncio.gather(
        *(
            instant_query(
                client,
                server,
                query.text(window_s),
                timeout_s=timeout_s,
                max_bytes=MAX_ANSWER_BYTES,
                headers=headers,
            )
            for query in queries
        ),
        return_exceptions=True,
    )
    calls: list[Call] = []
    failures: list[str] = []
    for index, (query, answer) in enumerate(zip(queries, answers, strict=True)):
        if isinstance(answer, QueryError):
            failures.append(f"{query.name}: {answer.reason}")
            continue
        if isinstance(answer, BaseException):
            raise answer
        for series in answer.series:
            labels = series.labels
            calls.append(
                Call(
                    tuple(labels.get(label, "") for label in query.caller),
                    tuple(labels.get(label, "") for label in query.callee),
                    series.value,
                    index,
                )
            )
    if failures:
        raise ObservedError(failures)
    return calls


async def observed_findings(
    topology: Topology,
    url: str | PrometheusServer,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    queries: Sequence[EdgeQuery] | None = None,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
) -> ObservedReport:
    """The calls Prometheus at `url` saw over the last `window_s` seconds
    (by default, the service graph's and Istio's), compared with
    `topology`: undeclared dependencies as warnings, never-observed
    requirements and unmatched names as notes.

    `url` is a base URL, or a `PrometheusServer` with its credentials (the
    file's `defaults.prometheus`), read from `environ` (by default the
    process's). Through `client` when given (the daemon's shared one),
    else a client of its own, closed before returning. Raises
    `ObservedError` when a query fails, ValueError for a window outside 1m
    to 31d.
    """
    _check_window(window_s)
    server = url if isinstance(url, PrometheusServer) else PrometheusServer(url)
    chosen = DEFAULT_QUERIES if queries is None else tuple(queries)
    if client is not None:
        calls = await fetch_calls(
            server,
            client,
            window_s=window_s,
            queries=chosen,
            timeout_s=timeout_s,
            environ=environ,
        )
    else:
        async with HttpClients() as clients:
            calls = await fetch_calls(
                server,
                clients.get(verify_tls=server.verify_tls),
                window_s=window_s,
                queries=chosen,
                timeout_s=timeout_s,
                environ=environ,
            )
    return compare(topology, calls, window_s)


def _check_window(window_s: float) -> None:
    if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S or math.isnan(window_s):
        raise ValueError(f"the window must be from 1m to 31d, not {window_s}s")


def undeclared_alerts(report: ObservedReport, topology: Topology, now: float) -> list[Alert]:
    """The drift alerts the daemon raises from a report: one per critical
    node with undeclared calls to or from it (keyed by that node, the caller
    when both are critical), naming each call. An undeclared call between
    non-critical nodes is for `check`, not for a page."""
    calls: dict[str, list[Finding]] = {}
    for finding in report.findings:
        caller, callee = finding.nodes[0], finding.nodes[1]
        for node in (caller, callee):
            if node in topology and topology.node(node).critical:
                calls.setdefault(node, []).append(finding)
                break
    alerts = []
    for node, found in sorted(calls.items()):
        said = "; ".join(f.message for f in found[:SHOWN_CALLS])
        more = len(found) - SHOWN_CALLS
        if more > 0:
            said += f"; {more} more"
        alerts.append(
            Alert(
                key=f"drift:undeclared:{node}",
                kind="drift",
                severity="warning",
                root_cause=(node,),
                summary=f"{said}: a blast radius of {node} worked out from the topology "
                "is too small",
                started_at=now,
            )
        )
    return alerts
