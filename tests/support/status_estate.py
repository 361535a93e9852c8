"""A small estate for the status page's tests (the 2017 order platform,
three nodes labelled for the public page) and live views of it, built as
the API process builds them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from topology import State, Topology, evaluate
from watchdog.live import LiveView, ProbeStatus
from watchdog.web.model import History, Snapshot

__all__ = [
    "ESTATE",
    "INTERNAL",
    "NOW",
    "RUNNING",
    "farm_down",
    "healthy",
    "incident",
    "live_view",
    "snapshot",
]

UP, UNKNOWN, DEGRADED, DOWN = State.UP, State.UNKNOWN, State.DEGRADED, State.DOWN
NOW = 1_800_000_000.0
T0 = NOW - 600

ESTATE = """\
version: 1
nodes:
  farm-oms-1: {kind: farm}
  farm-pay-1: {kind: farm}
  farm-pay-2: {kind: farm}
  orders-search:
    runs_on: [farm-oms-1]
    labels: {status_page: public, status_page_name: Order search}
  orders-workflow:
    critical: true
    recovery_target: 10m
    runs_on: [farm-oms-1]
    depends_on: [{any_of: [antifraud], soft: true}]
    labels: {status_page: public, status_page_name: Orders}
    description: moves every order to antifraud and the ERPs
  antifraud:
    critical: true
    runs_on: [farm-pay-1, farm-pay-2]
  checkout:
    critical: true
    recovery_target: 5m
    runs_on: [farm-pay-1, farm-pay-2]
    depends_on: [orders-workflow]
    labels: {status_page: public}
"""

# What a public page and summary must never say: hosts, farms, internal
# services, probes, people, reasons.
INTERNAL = ("farm-oms-1", "farm-pay", "antifraud", "connect refused", "alice", "rack move")


def live_view(
    topology: Topology,
    observed: Mapping[str, State],
    *,
    reasons: Mapping[str, str] | None = None,
    ready: bool = True,
) -> LiveView:
    """A live view as the API process builds one: each observed node with
    one probe whose last result says `reasons[node]`."""
    probes_of = {name: (f"{name}#0",) for name in observed}
    last = {
        f"{name}#0": ProbeStatus(
            f"{name}#0", "tcp", state, state, (reasons or {}).get(name, ""), 0.01, NOW - 1
        )
        for name, state in observed.items()
    }
    return LiveView(
        topology=topology,
        states=evaluate(topology, observed),
        observed=dict(observed),
        since=dict.fromkeys(topology.nodes, T0),
        probes_of=probes_of,
        last=last,
        drift=(),
        ready=ready,
    )


def healthy(topology: Topology) -> dict[str, State]:
    return dict.fromkeys(("farm-oms-1", "farm-pay-1", "farm-pay-2"), UP)


def farm_down(topology: Topology) -> LiveView:
    observed = {**healthy(topology), "farm-oms-1": DOWN}
    return live_view(topology, observed, reasons={"farm-oms-1": "connect refused"})


def snapshot(live: LiveView, history: History | None = None) -> Snapshot:
    return Snapshot(live=live, taken_at=NOW - 0.2, now=NOW, history=history or History())


RUNNING = {
    "id": 7,
    "by": "alice",
    "reason": "rack move",
    "actions": [{"action": "drain", "node": "farm-pay-1"}],
    "verdict": "warning",
    "forced": False,
    "state": "running",
    "started_at": NOW - 120,
    "ended_at": None,
    "outcome": "",
    "impact": {"impacted": [{"node": "checkout"}, {"node": "antifraud"}]},
}


def incident(node: str, start: float, end: float | None, worst: str = "down") -> dict[str, Any]:
    return {"node": node, "started_at": start, "ended_at": end, "worst": worst}
