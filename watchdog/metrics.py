"""The daemon's Prometheus metrics: one prefix, units in names, `_total` on
counters, label values bounded (node names and probe keys, never URLs or
error text). The few that change now and then are kept in a registry passed
in; the per-probe and per-node counts, which change with every result, are
plain counts sent to the API process with what changed, and written there
with the node and latency families (`watchdog.snapshot.metrics_text`), as
is the certificate expiry of each https probe (from its last result: the
daemon's core never writes a series per probe)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

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
        # (node, probe key, state) -> results; (node, view) -> transitions;
        # and what changed since `take_changes` last said.
        self.results: dict[tuple[str, str, str], int] = {}
        self.transitions: dict[tuple[str, str], int] = {}
        self._changed_results: set[tuple[str, str, str]] = set()
        self._changed_transitions: set[tuple[str, str]] = set()
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
            "trouble, by cause (descriptors, buffers, memory, ports, processes, connections, "
            "stall, cut_off).",
            ["cause"],
            registry=registry,
        )
        self.alert_rounds = Counter(
            "watchdog_alert_rounds_total",
            "Rounds of the alert loop: the rules over the live state, then delivery.",
            registry=registry,
        )
        self.stall = Gauge(
            "watchdog_event_loop_stall_seconds",
            "The longest the daemon's event loop (probes, alerts) was stalled in the last 2 "
            "minutes: late by this much, every probe timer and read waited.",
            registry=registry,
        )
        self.ready = Gauge(
            "watchdog_ready",
            "1 once the topology is loaded and every probe has reported once.",
            registry=registry,
        )
        # A replica of several (`cluster:`); absent on a daemon of its own.
        self.cluster_role = Gauge(
            "watchdog_cluster_role",
            "1 for this replica's role: holder (of the lease: records, delivers Slack and "
            "webhooks), follower, or alone (the state store unreachable for longer than "
            "the lease: alerts about critical nodes sent from here).",
            ["role"],
            registry=registry,
        )
        self.cluster_members = Gauge(
            "watchdog_cluster_members",
            "The replicas heard from within half a lease, this one included.",
            registry=registry,
        )
        self.probes_owned = Gauge(
            "watchdog_probes_owned",
            "The probes this replica runs (all of them, unless the replicas shard them).",
            registry=registry,
        )

    def result(self, node: str, probe: str, state: State, duration_s: float) -> None:
        """One probe result."""
        key = (node, probe, str(state))
        self.results[key] = self.results.get(key, 0) + 1
        self._changed_results.add(key)
        if self.probe_duration is not None:
            self.probe_duration.labels(node, probe).observe(duration_s)

    def count(self, transitions: Iterable[Transition]) -> None:
        """Transitions as they happen; learning a state after a start (from
        unknown) is not a change of the estate, and would make two series
        per node of every daemon that ever started."""
        for t in transitions:
            if t.old != State.UNKNOWN:
                key = (t.node, t.view)
                self.transitions[key] = self.transitions.get(key, 0) + 1
                self._changed_transitions.add(key)

    def take_changes(
        self,
    ) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], int]]:
        """The result and transition counts that changed since the last
        call (their values now)."""
        results = {key: self.results[key] for key in self._changed_results}
        transitions = {key: self.transitions[key] for key in self._changed_transitions}
        self._changed_results, self._changed_transitions = set(), set()
        return results, transitions

    def reloaded(self, ok: bool, at: float) -> None:
        """The outcome of a (re)load of the configuration."""
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set(at)
