"""Observed edges: the calls between services that the estate's own
telemetry saw (a tracing service graph, a service mesh), compared with
the topology. Pure: the calls come in as data (`watchdog.observed` reads
them from Prometheus).

- A call from A to B, both nodes, where B is not a direct requirement of
  A (a member of one of its `depends_on` or `runs_on` groups), is a
  finding, `undeclared-dependency` (a warning): the topology misses
  something the estate does, and a blast radius computed from it is too
  small. Calls to or from a critical node come first, then the busiest.
- A `depends_on` requirement never called over the window is information,
  never a finding: a dependency used once a day, or one the telemetry
  cannot see (a database), looks the same. It is told only for a node
  seen calling something, whose calls the telemetry does see.
- A name the telemetry uses that is no node's is told once, as
  information.

Label values name a node this way: the values joined with `/` in the
order given (`shop` and `frontend` are `shop/frontend`, as the Kubernetes
importer names workloads `NAMESPACE/NAME`), failing that the last value
alone (`frontend`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from topology.document import quote
from topology.durations import format_duration
from topology.findings import Finding
from topology.model import Topology

__all__ = ["Call", "Note", "ObservedReport", "candidates", "compare"]


@dataclass(frozen=True, slots=True)
class Call:
    """Calls seen from a caller to a callee, as the telemetry names them
    (label values, outermost first: namespace, workload), at `per_s`
    calls per second on average over the window; `source` tells the
    queries apart (the same call seen by two of them is counted once)."""

    caller: tuple[str, ...]
    callee: tuple[str, ...]
    per_s: float
    source: int = 0


@dataclass(frozen=True, slots=True)
class Note:
    """Information, not a weakness: a declared requirement never called
    (`never-observed`), or a name the telemetry uses that is no node's
    (`unmatched-name`)."""

    rule: Literal["never-observed", "unmatched-name"]
    nodes: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"info: {self.rule}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The note in the shape of a finding, with severity `info`."""
        return {
            "rule": self.rule,
            "severity": "info",
            "nodes": list(self.nodes),
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ObservedReport:
    """What the calls say of the topology: `findings` (undeclared
    dependencies, warnings), `notes` (never-observed requirements, then
    unmatched names), and how many `calls` (series) were read, of which
    `matched` were between two nodes, over `window_s`."""

    findings: tuple[Finding, ...]
    notes: tuple[Note, ...]
    calls: int
    matched: int
    window_s: float


def candidates(values: Sequence[str]) -> tuple[str, ...]:
    """The node names that label `values` may stand for, best first: the
    non-empty values joined with `/`, then the last of them alone."""
    parts = [v for v in values if v]
    if not parts:
        return ()
    joined = "/".join(parts)
    return (joined,) if len(parts) == 1 else (joined, parts[-1])


def compare(topology: Topology, calls: Iterable[Call], window_s: float) -> ObservedReport:
    """The findings and notes of `calls` seen over `window_s` seconds
    against `topology` (see the module's docstring). Calls with no traffic
    (a rate of 0 or NaN) and calls of a node to itself are left out."""
    names: dict[tuple[str, ...], str | None] = {}

    def node_of(values: tuple[str, ...]) -> str | None:
        if values not in names:
            names[values] = next((c for c in candidates(values) if c in topology), None)
        return names[values]

    # Per (caller, callee): the rate each source saw, summed over its series.
    seen: dict[tuple[str, str], dict[int, float]] = {}
    unmatched: dict[str, list[int]] = {}  # shown name: [as caller, as callee]
    count = matched = 0
    for call in calls:
        count += 1
        if math.isnan(call.per_s) or call.per_s <= 0:
            continue
        caller, callee = node_of(call.caller), node_of(call.callee)
        for role, values, node in ((0, call.caller, caller), (1, call.callee, callee)):
            shown = candidates(values)
            if node is None and shown:
                unmatched.setdefault(shown[0], [0, 0])[role] += 1
        if caller is None or callee is None or caller == callee:
            continue
        matched += 1
        rates = seen.setdefault((caller, callee), {})
        rates[call.source] = rates.get(call.source, 0.0) + call.per_s

    over = format_duration(window_s)
    findings = []
    callers: set[str] = set()
    requirements: dict[str, frozenset[str]] = {}
    for (caller, callee), rates in seen.items():
        callers.add(caller)
        needs = requirements.get(caller)
        if needs is None:
            needs = requirements[caller] = topology.node(caller).requirements
        if callee in needs:
            continue
        per_s = max(rates.values())
        message = (
            f"{caller} calls {callee} ({_per_minute(per_s * 60)} requests/min over {over}), "
            "not in the topology"
        )
        critical = topology.node(caller).critical or topology.node(callee).critical
        findings.append(
            (
                (not critical, -per_s, caller, callee),
                Finding("undeclared-dependency", "warning", (caller, callee), message),
            )
        )
    findings.sort(key=lambda pair: pair[0])

    notes = []
    for caller in sorted(callers):
        for group in topology.node(caller).groups:
            if group.via != "depends_on":
                continue
            for member in group.members:
                if (caller, member) not in seen:
                    message = (
                        f"{caller} depends_on {member}, but no call from {caller} to "
                        f"{member} was observed over {over}"
                    )
                    notes.append(Note("never-observed", (caller, member), message))
    for name, (as_caller, as_callee) in sorted(unmatched.items()):
        roles = [
            f"{n} as {role}" for n, role in ((as_caller, "caller"), (as_callee, "callee")) if n
        ]
        message = f"no node is named {quote(name)} (in {', '.join(roles)} of the observed calls)"
        notes.append(Note("unmatched-name", (name,), message))
    return ObservedReport(
        findings=tuple(f for _, f in findings),
        notes=tuple(notes),
        calls=count,
        matched=matched,
        window_s=window_s,
    )


def _per_minute(rate: float) -> str:
    """`1,234`, `12`, `2.5`, `0.033`: as many digits as people read."""
    if rate >= 10:
        return f"{rate:,.0f}"
    if rate >= 1:
        return f"{rate:.1f}".removesuffix(".0")
    return f"{rate:.2g}"
