"""The daemon's Prometheus metrics kept in a registry passed in: one prefix,
units in names, `_total` on counters, label values bounded (node names and
probe keys, never URLs or error text). The node and latency families, which
change with every state, are written from a snapshot at scrape time
instead (`watchdog.snapshot.metrics_text`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from alerts.transitions import Transition
from topology import State

__all__ = ["Metrics"]

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The daemon's metrics; each method records one kind of event."""

    def __init__(self, registry: CollectorRegistry, *, detail: bool = False) -> None:
        # Without this, every counter and histogram child has a `_created`
        # twin in the text format: twice the series for no use to
        # Prometheus. A switch of the library's, for the whole process.
        cast(Callable[[], None], disable_created_metrics)()  # untyped in prometheus_client
        self.registry = registry
        self.probe_results = Counter(
            "watchdog_probe_results_total",
            "Probe results by the state the probe reported.",
            ["node", "probe", "state"],
            registry=registry,
        )
        # Twelve series per probe: only when asked for (`server.metrics_detail`);
        # the latency percentiles say the same for answers, in three.
        self.probe_duration = (
            Histogram(
                "watchdog_probe_duration_seconds",
                "How long each probe took, failed ones included.",
                ["node", "probe"],
                buckets=_DURATION_BUCKETS,
                registry=registry,
            )
            if detail
            else None
        )
        self.transitions = Counter(
            "watchdog_transitions_total",
            "State changes of nodes, as probed (observed) or after propagation (effective); "
            "not the first state learned after a start.",
            ["node", "view"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "watchdog_probes_in_flight", "Probes running now.", registry=registry
        )
        self.lag = Histogram(
            "watchdog_scheduler_lag_seconds",
            "How late probes start after their scheduled time.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.reload_ok = Gauge(
            "watchdog_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or not (0).",
            registry=registry,
        )
        self.reload_time = Gauge(
            "watchdog_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            registry=registry,
        )
        self.inconclusive = Counter(
            "watchdog_probe_runs_inconclusive_total",
            "Probe runs that said nothing about their target because of the watchdog's own "
            "trouble, by cause (descriptors, buffers, memory, ports, processes, stall, cut_off).",
            ["cause"],
            registry=registry,
        )
        self.alert_rounds = Counter(
            "watchdog_alert_rounds_total",
            "Rounds of the alert loop: the rules over the live state, then delivery.",
            registry=registry,
        )
        self.ready = Gauge(
            "watchdog_ready",
            "1 once the topology is loaded and every probe has reported once.",
            registry=registry,
        )

    def result(self, node: str, probe: str, state: State, duration_s: float) -> None:
        """One probe result."""
        self.probe_results.labels(node, probe, str(state)).inc()
        if self.probe_duration is not None:
            self.probe_duration.labels(node, probe).observe(duration_s)

    def read_at_scrape(self, outbox: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Serve the outbox counts per (sink, state) from `outbox` when
        /metrics is read (on the API's thread: it must be thread-safe)."""
        self.registry.register(_Scraped(outbox))

    def count(self, transitions: Iterable[Transition]) -> None:
        """Transitions as they happen; learning a state after a start (from
        unknown) is not a change of the estate, and would make two series
        per node of every daemon that ever started."""
        for t in transitions:
            if t.old != State.UNKNOWN:
                self.transitions.labels(t.node, t.view).inc()

    def reloaded(self, ok: bool, at: float) -> None:
        """The outcome of a (re)load of the configuration."""
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set(at)


class _Scraped(Collector):
    """The metrics read from their sources at scrape time."""

    def __init__(self, outbox: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily]:
        entries = GaugeMetricFamily(
            "watchdog_outbox_notifications",
            "Notifications in the outbox by sink and state (pending, delivered, failed).",
            labels=["sink", "state"],
        )
        for (sink, state), count in sorted(self._outbox().items()):
            entries.add_metric([sink, state], count)
        yield entries
