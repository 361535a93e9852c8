"""What the API answers from: an immutable copy of the daemon's state, taken
on the daemon's event loop in a few milliseconds, then turned into JSON or
Prometheus text on another thread. Building an answer for ten thousand nodes
thus never holds the loop that runs the probes.

Everything here but `Snapshot` itself is pure and thread-safe: it reads the
snapshot only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.model import Alert
from topology import State
from watchdog.latency import percentiles_of
from watchdog.live import LiveView, ProbeStatus

__all__ = [
    "LatencyView",
    "Snapshot",
    "metrics_text",
    "status_json",
]

STATE_VALUES = "0 up, 1 unknown, 2 degraded, 3 down"


@dataclass(frozen=True, slots=True)
class LatencyView:
    """One probe's latency window and baseline, copied."""

    node: str
    key: str
    samples: tuple[float, ...]
    baseline_s: float | None
    spread_s: float | None
    regression: str | None

    def details(self) -> dict[str, Any]:
        """What the API shows of it."""
        p = percentiles_of(self.samples)
        return {
            "samples": len(self.samples),
            "p50_s": p.p50 if p else None,
            "p95_s": p.p95 if p else None,
            "p99_s": p.p99 if p else None,
            "baseline_p95_s": self.baseline_s,
            "spread_s": self.spread_s,
            "regression": self.regression,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The daemon's state at `taken_at`, for answers built off its loop."""

    taken_at: float
    live: LiveView
    latency: Mapping[str, LatencyView]
    # Log probes' details by probe key: (for anyone, for token holders).
    logs: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]
    alerts: Sequence[Alert]


def status_json(
    snapshot: Snapshot,
    *,
    nodes: Sequence[str] = (),
    states: Sequence[State] = (),
    critical: bool | None = None,
    private: bool = False,
) -> dict[str, Any]:
    """The `/api/v1/status` answer: the nodes that match every filter given
    (any of `nodes`, any of effective `states`, `critical` or not), with
    their probes; log samples redacted unless `private`."""
    live = snapshot.live
    names: Iterable[str] = nodes if nodes else live.topology.nodes
    wanted = set(states)
    out = []
    for node in live.status(names):
        if wanted and node.effective not in wanted:
            continue
        if critical is not None and node.critical != critical:
            continue
        out.append(
            {
                "node": node.node,
                "kind": node.kind,
                "critical": node.critical,
                "observed": str(node.observed) if node.observed is not None else None,
                "effective": str(node.effective),
                "since": node.since,
                "causes": list(node.causes),
                "no_spare": node.no_spare,
                "probes": [_probe(snapshot, p, private) for p in node.probes],
            }
        )
    drift = [
        {
            "node": d.node,
            "effective": str(d.effective),
            "causes": list(d.causes),
            "message": d.message,
        }
        for d in live.drift
    ]
    return {
        "source": live.topology.source,
        "ready": live.ready,
        "nodes": out,
        "drift": drift,
    }


def _probe(snapshot: Snapshot, p: ProbeStatus, private: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "probe": p.key,
        "kind": p.kind,
        "verdict": str(p.verdict),
        "last_state": str(p.last_state) if p.last_state is not None else None,
        "last_reason": p.last_reason,
        "last_latency_s": p.last_latency_s,
        "last_at": p.last_at,
    }
    latency = snapshot.latency.get(p.key)
    if latency is not None:
        out["latency"] = latency.details()
    logged = snapshot.logs.get(p.key)
    if logged is not None:
        out["log"] = dict(logged[1] if private else logged[0])
    return out


def metrics_text(snapshot: Snapshot) -> str:
    """The Prometheus text of the node and latency families: what changes
    with every state, read from the snapshot rather than kept in gauges.
    Node names and probe keys need no escaping: the loader allows only
    letters, digits and `- _ . : / @` in names (keys add `#` and a number)."""
    live = snapshot.live
    topology, states, observed = live.topology, live.states, live.observed
    lines: list[str] = []
    family = lines.append

    def head(name: str, help_text: str) -> None:
        family(f"# HELP {name} {help_text}")
        family(f"# TYPE {name} gauge")

    head(
        "watchdog_node_effective_state",
        f"A node's state after propagation through the topology ({STATE_VALUES}).",
    )
    not_up = states.not_up()
    for name, node in topology.nodes.items():
        critical = "true" if node.critical else "false"
        value = float(not_up.get(name, State.UP))
        family(f'watchdog_node_effective_state{{critical="{critical}",node="{name}"}} {value}')
    head("watchdog_node_observed_state", f"A probed node's observed state ({STATE_VALUES}).")
    for name, seen in observed.items():
        family(f'watchdog_node_observed_state{{node="{name}"}} {float(seen)}')
    head(
        "watchdog_node_no_spare",
        "1 when a node is up but one failure away: a group is down to its minimum "
        "(only nodes with a group that has spares).",
    )
    spareless = states.no_spare
    for name, node in topology.nodes.items():
        if any(group.redundant for group in node.groups):
            family(f'watchdog_node_no_spare{{node="{name}"}} {1.0 if name in spareless else 0.0}')
    head(
        "watchdog_topology_drift",
        "1 when a node is probed up while the topology says it must be down.",
    )
    for drift in live.drift:
        family(f'watchdog_topology_drift{{node="{drift.node}"}} 1.0')
    _latency(snapshot, family)
    return "\n".join(lines) + "\n"


def _latency(snapshot: Snapshot, family: Any) -> None:
    views = sorted(snapshot.latency.values(), key=lambda v: v.key)
    recent, usual, regressed = [], [], []
    for view in views:
        p = percentiles_of(view.samples)
        if p is None:
            continue  # no answer yet
        # Labels in name order, as prometheus_client writes them.
        labels = f'node="{view.node}",probe="{view.key}"'
        for name, value in (("50", p.p50), ("95", p.p95), ("99", p.p99)):
            sample = f'node="{view.node}",percentile="{name}",probe="{view.key}"'
            recent.append(f"watchdog_probe_latency_recent_seconds{{{sample}}} {_number(value)}")
        if view.baseline_s is not None:
            usual.append(
                f"watchdog_probe_latency_baseline_seconds{{{labels}}} {_number(view.baseline_s)}"
            )
        regressed.append(
            f"watchdog_probe_latency_regression{{{labels}}} {1.0 if view.regression else 0.0}"
        )
    for name, help_text, rows in (
        (
            "watchdog_probe_latency_recent_seconds",
            "Percentiles (50, 95, 99) of a probe's latest answers (its window).",
            recent,
        ),
        (
            "watchdog_probe_latency_baseline_seconds",
            "The usual p95 latency of a probe, once learned.",
            usual,
        ),
        (
            "watchdog_probe_latency_regression",
            "1 while a probe's latency is well above its baseline.",
            regressed,
        ),
    ):
        family(f"# HELP {name} {help_text}")
        family(f"# TYPE {name} gauge")
        for row in rows:
            family(row)


def _number(value: float) -> str:
    """A sample value as Prometheus reads it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
