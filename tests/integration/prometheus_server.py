"""A real Prometheus for the tests (Debian's `prometheus` package): series
written in OpenMetrics text, turned into TSDB blocks by `promtool tsdb
create-blocks-from openmetrics`, served on a free loopback port, ready
once `/-/ready` says so, and killed at the end. Skips when the binaries
are missing.

Samples are one a minute from two hours ago to three hours ahead, so an
instant query at any moment of the test session hits them whatever the
order the tests run in; a series that ended an hour ago is past
Prometheus's lookback (5 minutes): no data.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from waiting import PROCESS_DEADLINE_S, free_port, until_blocking

__all__ = ["SERIES", "Samples", "counter", "openmetrics", "prometheus", "running_prometheus"]

PAST_MIN = 120
AHEAD_MIN = 180


@dataclass(frozen=True)
class Samples:
    """One series: a sample a minute from `start` to `end` minutes from
    now (negative: the past), its value at minute `m` being `value(m)`."""

    metric: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: Callable[[int], float] = lambda _: 1.0
    start: int = -PAST_MIN
    end: int = AHEAD_MIN


def counter(per_s: float) -> Callable[[int], float]:
    """A counter growing by `per_s` a second: its rate() is `per_s`."""
    return lambda minute: (minute + PAST_MIN + 1) * 60 * per_s


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def openmetrics(series: Iterable[Samples], now: float) -> str:
    """The series as OpenMetrics text, metric by metric (each a gauge:
    PromQL's functions do not look at types)."""
    by_metric: dict[str, list[Samples]] = {}
    for one in series:
        by_metric.setdefault(one.metric, []).append(one)
    lines = []
    for metric, group in by_metric.items():
        lines.append(f"# TYPE {metric} gauge")
        for one in group:
            inner = ",".join(f'{k}="{v}"' for k, v in sorted(one.labels.items()))
            name = f"{metric}{{{inner}}}" if inner else metric
            lines.extend(
                f"{name} {_number(one.value(m))} {now + 60 * m:.3f}"
                for m in range(one.start, one.end + 1)
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_prometheus(text: str, folder: Path) -> Iterator[str]:
    """`with running_prometheus(OPENMETRICS, DIR) as url:` a Prometheus
    serving the samples of `text`, stopped when the block ends. Raises
    LookupError when the binaries are missing."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        raise LookupError("prometheus and promtool are not installed (apt-get install prometheus)")
    source, data = folder / "series.om", folder / "data"
    source.write_text(text)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=PROCESS_DEADLINE_S * 4,
    )
    config = folder / "prometheus.yml"
    config.write_text("global:\n  evaluation_interval: 1h\n")  # no scrapes, no rules
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (folder / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=30d",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        until_blocking(lambda: process.poll() is not None or _ready(url))
        if process.poll() is not None:
            raise RuntimeError(f"prometheus ended at start: see {folder / 'prometheus.log'}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=PROCESS_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=PROCESS_DEADLINE_S)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=5, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


# What the tests ask about: values to judge, alerts, calls between services.
SERIES = (
    Samples("orders_up", {"service": "a"}),
    Samples("orders_up", {"service": "b"}, lambda _: 0.0),
    Samples("error_ratio", {"service": "a"}, lambda _: 0.07),
    Samples("several_up", {"instance": "x"}),
    Samples("several_up", {"instance": "y"}, lambda _: 0.0),
    Samples("several_up", {"instance": "z"}),
    Samples("not_a_number", value=lambda _: math.nan),
    Samples("ended", {"service": "a"}, start=-PAST_MIN, end=-60),
    Samples("ALERTS", {"alertname": "OrderWorkflowDown", "alertstate": "firing"}),
    Samples("ALERTS", {"alertname": "PaymentsSlow", "alertstate": "firing"}),
    Samples("ALERTS", {"alertname": "SearchDown", "alertstate": "pending"}),
    # The service graph: checkout (critical) calls payments (declared) and
    # search (not declared); cart calls ledger (not declared); "user" is
    # no node. cart -> ledger is also seen by Istio (counted once).
    Samples(
        "traces_service_graph_request_total",
        {"client": "checkout", "server": "payments"},
        counter(2.0),
    ),
    Samples(
        "traces_service_graph_request_total",
        {"client": "checkout", "server": "search"},
        counter(1.0),
    ),
    Samples(
        "traces_service_graph_request_total", {"client": "cart", "server": "ledger"}, counter(5.0)
    ),
    Samples(
        "traces_service_graph_request_total", {"client": "user", "server": "checkout"}, counter(3.0)
    ),
    # A call with no traffic: its counter stands still.
    Samples(
        "traces_service_graph_request_total",
        {"client": "cart", "server": "search"},
        lambda _: 100.0,
    ),
    # Istio: shop/frontend calls shop/catalog (declared) and reviews in
    # namespace default (no node default/reviews: the node reviews);
    # traffic from outside the mesh has an unknown source.
    Samples(
        "istio_requests_total",
        {
            "source_workload": "frontend",
            "source_workload_namespace": "shop",
            "destination_workload": "catalog",
            "destination_workload_namespace": "shop",
        },
        counter(4.0),
    ),
    Samples(
        "istio_requests_total",
        {
            "source_workload": "frontend",
            "source_workload_namespace": "shop",
            "destination_workload": "reviews",
            "destination_workload_namespace": "default",
        },
        counter(0.5),
    ),
    Samples(
        "istio_requests_total",
        {
            "source_workload": "unknown",
            "source_workload_namespace": "unknown",
            "destination_workload": "frontend",
            "destination_workload_namespace": "shop",
        },
        counter(1.0),
    ),
    Samples(
        "istio_requests_total",
        {
            "source_workload": "cart",
            "source_workload_namespace": "shop",
            "destination_workload": "ledger",
            "destination_workload_namespace": "shop",
        },
        counter(4.0),
    ),
)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Prometheus serving `SERIES`, started once per session."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.skip("prometheus and promtool are not installed (apt-get install prometheus)")
    folder = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(openmetrics(SERIES, time.time()), folder) as url:
        yield url
