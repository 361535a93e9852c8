"""Lint: the weaknesses of a valid topology that a maneuver or one failure
would turn into an outage of a critical node."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import networkx as nx

from topology.durations import format_duration
from topology.engine import Failure, fail
from topology.findings import Finding, Severity
from topology.model import Group, Topology

__all__ = ["RULES", "Finding", "lint"]


def lint(topology: Topology) -> list[Finding]:
    """Every finding of every rule, errors first, then by rule and nodes."""
    failures = {name: fail(topology, name) for name in topology.nodes}
    findings: list[Finding] = []
    for rule in RULES.values():
        findings.extend(rule(topology, failures))
    findings.extend(topology.source_findings)
    findings.sort(key=lambda f: (f.severity != "error", f.rule, f.nodes))
    return findings


# Messages name at most this many nodes; the finding's `nodes` has them all.
SHOWN = 8


def _names(names: Iterable[str]) -> str:
    ordered = sorted(names)
    if len(ordered) <= SHOWN:
        return ", ".join(ordered)
    return f"{', '.join(ordered[:SHOWN])} (+{len(ordered) - SHOWN} more)"


def _hosted(topology: Topology, placement: str) -> set[str]:
    """Everything placed on `placement`, directly or through other placements."""
    found: set[str] = set()
    todo = [placement]
    while todo:
        for owner, group in topology.dependent_groups(todo.pop()):
            if group.via == "runs_on" and owner not in found:
                found.add(owner)
                todo.append(owner)
    return found


def shared_fate(topology: Topology, failures: dict[str, Failure]) -> Iterable[Finding]:
    """A placement that runs critical and non-critical workloads: a maneuver
    meant for the non-critical ones can take a critical one down."""
    placements = topology.placements()
    for placement in placements:
        if placement not in failures:
            continue  # judged only where a failure was worked out
        hosted = _hosted(topology, placement)
        workloads = [n for n in hosted if n not in placements]
        critical = sorted(n for n in workloads if topology.node(n).critical)
        others = sorted(n for n in workloads if not topology.node(n).critical)
        if not critical or not others:
            continue
        down = sorted(n for n in critical if n in failures[placement].down)
        severity: Severity
        if down:
            effect, severity = f"takes {_names(down)} down", "error"
        else:
            # Placed on it, yet not taken down: a replica somewhere survives.
            effect, severity = f"costs {_names(critical)} a spare", "warning"
        yield Finding(
            "shared-fate",
            severity,
            (placement, *critical, *others),
            f"{placement} runs critical {_names(critical)} and non-critical {_names(others)}: "
            f"a maneuver on {placement} meant for {_names(others)} {effect}",
        )


def criticality_inversion(topology: Topology, failures: dict[str, Failure]) -> Iterable[Finding]:
    """A node that hard-depends on something treated as less urgent than
    itself: a critical node on non-critical ones, or any node on ones whose
    recovery target is longer than its own. Placement (`runs_on`) is left to
    the shared-fate and single-point-of-failure rules."""
    for node in topology.nodes.values():
        own = topology.recovery_target_s(node.name)
        for group in node.groups:
            if group.soft or group.via != "depends_on":
                continue
            members = group.members
            if node.critical and sum(topology.node(m).critical for m in members) < group.min:
                lesser = [m for m in members if not topology.node(m).critical]
                yield Finding(
                    "criticality-inversion",
                    "warning",
                    (node.name, *sorted(lesser)),
                    f"critical {node.name} hard-depends on non-critical {_names(lesser)}",
                )
                continue
            slower = [m for m in members if topology.recovery_target_s(m) > own]
            if len(members) - len(slower) < group.min:
                targets = ", ".join(
                    f"{m} ({format_duration(topology.recovery_target_s(m))})"
                    for m in sorted(slower)
                )
                yield Finding(
                    "criticality-inversion",
                    "warning",
                    (node.name, *sorted(slower)),
                    f"{node.name} (recovery target {format_duration(own)}) hard-depends on "
                    f"{targets}, whose recovery targets are longer",
                )


def single_point_of_failure(topology: Topology, failures: dict[str, Failure]) -> Iterable[Finding]:
    """A non-critical node whose loss alone takes a critical node down."""
    for name, failure in failures.items():
        if topology.node(name).critical:
            continue
        down = sorted(n for n in failure.down if topology.node(n).critical)
        if down:
            yield Finding(
                "single-point-of-failure",
                "warning",
                (name, *down),
                f"{name} alone takes critical {_names(down)} down",
            )


def illusory_redundancy(topology: Topology, failures: dict[str, Failure]) -> Iterable[Finding]:
    """A group with spares that one failure breaks all the same, because its
    members all need one same node (replicas on one farm)."""
    breakers: dict[tuple[str, Group], list[str]] = {}
    for name, failure in failures.items():
        for broken in failure.broken:
            breakers.setdefault(broken, []).append(name)
    for (owner, group), causes in sorted(breakers.items(), key=lambda item: item[0][0]):
        severity: Severity = "warning"
        shown = f"{owner}.{group.via} ({_names(group.members)}, min {group.min})"
        yield Finding(
            "illusory-redundancy",
            severity,
            (owner, *sorted(causes)),
            f"{shown} is broken by the loss of any one of {_names(causes)}",
        )


def hard_cycle(topology: Topology, failures: dict[str, Failure]) -> Iterable[Finding]:
    """Nodes that hard-need each other (every member of a hard group with no
    spare): none can start before the others, so a cold start can deadlock."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    for name, member, group in topology.edges():
        if not group.soft and len(group.members) == group.min:
            graph.add_edge(name, member)
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        nodes = sorted(component)
        cycle = nx.find_cycle(graph.subgraph(component), source=nodes[0])
        path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        yield Finding(
            "hard-cycle",
            "warning",
            tuple(nodes),
            f"{path} hard-need each other: a cold start can deadlock",
        )


def unwatched_critical(topology: Topology, failures: dict[str, Failure]) -> Iterable[Finding]:
    """A critical node that neither has a probe nor needs, even indirectly,
    anything that has one: its outage would go unseen. Only for files that
    configure probes at all; a file for what-if questions alone has none."""
    if not any(node.probed for node in topology.nodes.values()):
        return
    # Watched: probed, or needing (through any chain) something probed. One
    # walk from the probed nodes up through their dependents finds them all.
    watched = topology.upstream_of(name for name, node in topology.nodes.items() if node.probed)
    for name, node in topology.nodes.items():
        if node.critical and name not in watched:
            yield Finding(
                "unwatched-critical",
                "error",
                (name,),
                f"critical {name} has no probe and needs nothing that has one: "
                "its outage would go unseen",
            )


Rule = Callable[[Topology, dict[str, Failure]], Iterable[Finding]]
RULES: dict[str, Rule] = {
    "shared-fate": shared_fate,
    "criticality-inversion": criticality_inversion,
    "single-point-of-failure": single_point_of_failure,
    "illusory-redundancy": illusory_redundancy,
    "hard-cycle": hard_cycle,
    "unwatched-critical": unwatched_critical,
}
