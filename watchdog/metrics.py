"""Every Prometheus metric of the daemon, on a registry passed in: one prefix,
units in names, `_total` on counters, label values bounded (node names and
probe keys, never URLs or error text)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from alerts.transitions import Transition
from topology import State
from watchdog.latency import LatencyBaseline

__all__ = ["STATE_VALUES", "Metrics"]

STATE_VALUES = "0 up, 1 unknown, 2 degraded, 3 down"
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The daemon's metrics; each method records one kind of event."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.probe_results = Counter(
            "watchdog_probe_results_total",
            "Probe results by the state the probe reported.",
            ["node", "probe", "state"],
            registry=registry,
        )
        self.probe_duration = Histogram(
            "watchdog_probe_duration_seconds",
            "How long each probe took, failed ones included.",
            ["node", "probe"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.observed = Gauge(
            "watchdog_node_observed_state",
            f"A probed node's observed state ({STATE_VALUES}).",
            ["node"],
            registry=registry,
        )
        self.effective = Gauge(
            "watchdog_node_effective_state",
            f"A node's state after propagation through the topology ({STATE_VALUES}).",
            ["node", "critical"],
            registry=registry,
        )
        self.no_spare = Gauge(
            "watchdog_node_no_spare",
            "1 when a node is up but one failure away: a group is down to its minimum.",
            ["node"],
            registry=registry,
        )
        self.transitions = Counter(
            "watchdog_transitions_total",
            "State changes of nodes, as probed (observed) or after propagation (effective).",
            ["node", "view"],
            registry=registry,
        )
        self.drift = Gauge(
            "watchdog_topology_drift",
            "1 when a node is probed up while the topology says it must be down.",
            ["node"],
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
        self.probe_duration.labels(node, probe).observe(duration_s)

    def read_at_scrape(
        self,
        outbox: Callable[[], Mapping[tuple[str, str], int]],
        latency: Callable[[], Iterable[tuple[str, str, LatencyBaseline]]],
    ) -> None:
        """Serve the outbox counts per (sink, state) and every probe's
        latency percentiles, baseline and regression from these sources when
        /metrics is read, rather than keeping gauges up to date on every
        alert round and probe result; series of what is gone go with it."""
        self.registry.register(_Scraped(outbox, latency))

    def count(self, transitions: Iterable[Transition]) -> None:
        """Transitions as they happen."""
        for t in transitions:
            self.transitions.labels(t.node, t.view).inc()

    def nodes(
        self,
        effective: Iterable[tuple[str, bool, State, bool]],
        observed: Iterable[tuple[str, State]],
        *,
        drift: Iterable[str],
        everything: bool = False,
    ) -> None:
        """Set the gauges of the nodes given as (node, critical, state,
        no_spare) and (node, observed state); with `everything`, those are
        all the nodes and any other series is dropped (after a reload, so no
        ghost of a removed node stays). `drift` is the whole list of drifting
        nodes."""
        if everything:
            self.effective.clear()
            self.no_spare.clear()
            self.observed.clear()
        for node, critical, state, no_spare in effective:
            self.effective.labels(node, "true" if critical else "false").set(int(state))
            self.no_spare.labels(node).set(1 if no_spare else 0)
        for node, state in observed:
            self.observed.labels(node).set(int(state))
        self.drift.clear()
        for node in drift:
            self.drift.labels(node).set(1)

    def reloaded(self, ok: bool, at: float) -> None:
        """The outcome of a (re)load of the configuration."""
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set(at)


class _Scraped(Collector):
    """The metrics read from their sources at scrape time."""

    def __init__(
        self,
        outbox: Callable[[], Mapping[tuple[str, str], int]],
        latency: Callable[[], Iterable[tuple[str, str, LatencyBaseline]]],
    ) -> None:
        self._outbox = outbox
        self._latency = latency

    def collect(self) -> Iterator[GaugeMetricFamily]:
        entries = GaugeMetricFamily(
            "watchdog_outbox_notifications",
            "Notifications in the outbox by sink and state (pending, delivered, failed).",
            labels=["sink", "state"],
        )
        for (sink, state), count in sorted(self._outbox().items()):
            entries.add_metric([sink, state], count)
        recent = GaugeMetricFamily(
            "watchdog_probe_latency_recent_seconds",
            "Percentiles (50, 95, 99) of a probe's latest answers (its window).",
            labels=["node", "probe", "percentile"],
        )
        usual = GaugeMetricFamily(
            "watchdog_probe_latency_baseline_seconds",
            "The usual p95 latency of a probe, once learned.",
            labels=["node", "probe"],
        )
        regressed = GaugeMetricFamily(
            "watchdog_probe_latency_regression",
            "1 while a probe's latency is well above its baseline.",
            labels=["node", "probe"],
        )
        for node, probe, baseline in self._latency():
            p = baseline.percentiles()
            if p is None:
                continue  # no answer yet
            for name, value in (("50", p.p50), ("95", p.p95), ("99", p.p99)):
                recent.add_metric([node, probe, name], value)
            if baseline.baseline_s is not None:
                usual.add_metric([node, probe], baseline.baseline_s)
            regressed.add_metric([node, probe], 1 if baseline.regression else 0)
        yield from (entries, recent, usual, regressed)
