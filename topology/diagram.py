"""The topology drawn as Graphviz DOT or Mermaid: critical nodes marked and,
when an impact is given, every impacted node coloured by its state after
the actions, so people can look at a blast radius instead of reading it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from topology.durations import format_duration
from topology.engine import Impact, ImpactedNode, States
from topology.model import Group, State, Topology

__all__ = ["FORMATS", "to_dot", "to_mermaid"]

# Fill colours by what happens to a node: red for down, amber for degraded,
# yellow for a lost spare, grey for what the baseline already had down.
_FILL = {
    "action": "#ef4444",
    "down": "#fca5a5",
    "degraded": "#fcd34d",
    "no_spare": "#fef08a",
    "baseline": "#d1d5db",
}
_CRITICAL_STROKE = "#b00020"


@dataclass(frozen=True, slots=True)
class _Look:
    label: str
    fill: str | None
    critical: bool


def _looks(topology: Topology, impact: Impact | None, baseline: States | None) -> dict[str, _Look]:
    impacted: dict[str, ImpactedNode] = {i.node: i for i in impact.impacted} if impact else {}
    actions = {a.node: a.kind for a in impact.actions} if impact else {}
    looks = {}
    for node in topology.nodes.values():
        parts = [node.kind]
        if node.critical:
            parts.append(f"critical {format_duration(topology.recovery_target_s(node.name))}")
        fill = None
        hit = impacted.get(node.name)
        if node.name in actions and (hit is not None or baseline is None):
            parts.append(actions[node.name])
            fill = _FILL["action"]
        elif hit is not None and hit.after > hit.before:
            parts.append(f"{hit.before} -> {hit.after}")
            fill = _FILL["down" if hit.after == State.DOWN else "degraded"]
        elif hit is not None:
            parts.append("no spare left")
            fill = _FILL["no_spare"]
        elif baseline is not None and baseline[node.name] not in (State.UP, State.UNKNOWN):
            parts.append(f"already {baseline[node.name]}")
            fill = _FILL["baseline"]
        looks[node.name] = _Look(f"{node.name}\\n{' · '.join(parts)}", fill, node.critical)
    return looks


def _edge_label(group: Group) -> str:
    label = group.via
    if len(group.members) > 1:
        label += f" {group.min} of {len(group.members)}"
    if group.soft:
        label += " soft"
    return label


def to_dot(topology: Topology, impact: Impact | None = None, baseline: States | None = None) -> str:
    """Graphviz DOT: an arrow from each node to what it needs, dashed when
    soft; critical nodes with a thick red border; impacted nodes filled."""
    lines = [
        "digraph topology {",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for name, look in _looks(topology, impact, baseline).items():
        attrs = [f'label="{look.label}"']
        if look.fill:
            attrs.append(f'fillcolor="{look.fill}"')
        if look.critical:
            attrs.append(f'color="{_CRITICAL_STROKE}", penwidth=3')
        lines.append(f'  "{name}" [{", ".join(attrs)}];')
    for name, member, group in topology.edges():
        style = ", style=dashed" if group.soft else ""
        lines.append(f'  "{name}" -> "{member}" [label="{_edge_label(group)}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(
    topology: Topology, impact: Impact | None = None, baseline: States | None = None
) -> str:
    """A Mermaid flowchart with the same marks as `to_dot`."""
    ids = {name: f"n{i}" for i, name in enumerate(topology.nodes)}
    lines = ["flowchart TB"]
    classes: dict[str, list[str]] = {}
    for name, look in _looks(topology, impact, baseline).items():
        label = look.label.replace("\\n", "<br/>")
        lines.append(f'  {ids[name]}["{label}"]')
        if look.critical:
            classes.setdefault("critical", []).append(ids[name])
        if look.fill:
            kind = next(k for k, v in _FILL.items() if v == look.fill)
            classes.setdefault(kind, []).append(ids[name])
    for name, member, group in topology.edges():
        arrow = "-.->" if group.soft else "-->"
        lines.append(f"  {ids[name]} {arrow}|{_edge_label(group)}| {ids[member]}")
    lines.append(f"  classDef critical stroke:{_CRITICAL_STROKE},stroke-width:3px")
    for kind, colour in _FILL.items():
        lines.append(f"  classDef {kind} fill:{colour}")
    for kind, members in classes.items():
        lines.append(f"  class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"


Renderer = Callable[[Topology, Impact | None, States | None], str]
FORMATS: dict[str, Renderer] = {"dot": to_dot, "mermaid": to_mermaid}
