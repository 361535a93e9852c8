"""Placement changes across a reload: a workload moved to other hosts (a
re-import of a cluster after a reschedule, an edited `runs_on`). Each is
told as a transition line, and one that creates shared fate (a placement
now running critical and non-critical workloads) as a lint finding and a
notice: the 2017 outage began with exactly such a placement that nobody saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from topology import Topology
from topology.engine import fail
from topology.findings import Finding

__all__ = ["PlacementChange", "new_shared_fate", "placement_changes"]


@dataclass(frozen=True, slots=True)
class PlacementChange:
    """`node` ran on `old` and now runs on `new` (the members of its
    `runs_on`, sorted; empty when it has none)."""

    node: str
    old: tuple[str, ...]
    new: tuple[str, ...]


def _placement(topology: Topology, name: str) -> tuple[str, ...]:
    return tuple(
        sorted(m for g in topology.node(name).groups if g.via == "runs_on" for m in g.members)
    )


def placement_changes(old: Topology, new: Topology) -> list[PlacementChange]:
    """The nodes in both topologies whose placement differs, by name. A
    node added or removed is not a placement change (the reload says so)."""
    out = []
    for name in new.nodes:
        if name in old:
            before, after = _placement(old, name), _placement(new, name)
            if before != after:
                out.append(PlacementChange(name, before, after))
    return out


def new_shared_fate(old: Topology, new: Topology, changes: list[PlacementChange]) -> list[Finding]:
    """The shared-fate findings of `new` that involve a moved node and that
    `old` did not have: what the moves created. Only placements that host a
    moved node are judged, so a reload of a large estate stays cheap."""
    if not changes:
        return []
    from topology.lint import shared_fate  # networkx: only when something moved

    moved = {c.node for c in changes}
    places = {p for c in changes for p in c.new} | {p for c in changes for p in c.old}
    places = {p for p in places if p in new} | _above(new, places)

    def findings(topology: Topology) -> set[Finding]:
        keep = [p for p in topology.placements() if p in places]
        failures = {p: fail(topology, p) for p in keep}
        return {f for f in shared_fate(topology, failures) if moved & set(f.nodes)}

    before = findings(old)
    return sorted(findings(new) - before, key=lambda f: f.nodes)


def _above(topology: Topology, places: set[str]) -> set[str]:
    """The placements that `places` themselves run on (a farm under a host):
    their shared fate changes too when a workload lands on a host."""
    out: set[str] = set()
    todo = [p for p in places if p in topology]
    while todo:
        for member in _placement(topology, todo.pop()):
            if member not in out:
                out.add(member)
                todo.append(member)
    return out
