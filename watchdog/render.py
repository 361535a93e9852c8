"""Text for people: blast-radius answers and lint findings, coloured only
when the output is a terminal."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from topology import Impact, ImpactedNode, Outcome, State, Topology, Verdict, format_duration
from topology.engine import REASON_HEAD, reason_gap
from topology.lint import Finding

__all__ = ["Style", "render_findings", "render_impact"]


@dataclass(frozen=True, slots=True)
class Style:
    """ANSI colours, or none at all."""

    colour: bool

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def red(self, text: str) -> str:
        return self._wrap("1;31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def state(self, state: State) -> str:
        if state == State.DOWN:
            return self.red(str(state))
        if state == State.DEGRADED:
            return self.yellow(str(state))
        return str(state)

    def verdict(self, verdict: Verdict) -> str:
        text = verdict.name
        if verdict == Verdict.CRITICAL:
            return self.red(text)
        if verdict == Verdict.WARNING:
            return self.yellow(text)
        return self.green(text)


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def _summary(outcome: Outcome, what: str) -> str:
    """One sentence: what the actions do to critical nodes."""
    critical = outcome.critical
    down = [i.node for i in critical if i.after == State.DOWN]
    degraded = [i.node for i in critical if i.after == State.DEGRADED and i.after > i.before]
    spare = [i.node for i in critical if i.no_spare]
    effects = []
    if down:
        effects.append(f"takes critical {_names(down)} down")
    if degraded:
        effects.append(f"degrades critical {_names(degraded)}")
    if spare:
        effects.append(f"leaves critical {_names(spare)} without a spare")
    if not effects:
        others = len(outcome.impacted)
        tail = f" ({others} other node{'s' if others != 1 else ''} impacted)" if others else ""
        return f"{what}: no critical node gets worse{tail}"
    return f"{what} " + "; ".join(effects)


def _step(topology: Topology, node: str, member: str) -> str:
    group = next(g for g in topology.node(node).groups if member in g.members)
    return f"{group.via} soft" if group.soft else group.via


def _reason(
    topology: Topology,
    item: ImpactedNode,
    outcome: dict[str, ImpactedNode],
    kinds: Mapping[str, str],
) -> str:
    """`a down <- runs_on b (down) <- depends_on c (shutdown)`: the chain
    back to an action, each link with the requirement that carried it."""
    chain = item.reason
    if len(chain) == 1:
        return f"{chain[0]} ({kinds.get(chain[0], 'down')})"
    head = "loses its last spare" if item.after == item.before else str(item.after)
    parts = [f"{chain[0]} {head}"]
    for i, (node, member) in enumerate(itertools.pairwise(chain), 1):
        note = kinds.get(member) or str(outcome[member].after)
        if item.reason_omitted and i == REASON_HEAD:
            # The links left out of a long chain: no single requirement joins
            # the names on either side of them.
            parts.append(f"{reason_gap(item.reason_omitted)} <- {member} ({note})")
        else:
            parts.append(f"{_step(topology, node, member)} {member} ({note})")
    return " <- ".join(parts)


def _entries(
    topology: Topology,
    items: Sequence[ImpactedNode],
    outcome: dict[str, ImpactedNode],
    kinds: Mapping[str, str],
    style: Style,
) -> list[str]:
    lines = []
    for item in items:
        change = (
            f"{item.before} -> {style.state(item.after)}"
            if item.after > item.before
            else f"{item.after}, no spare left"
        )
        notes = []
        if item.critical:
            notes.append(f"recovery target {format_duration(item.recovery_target_s)}")
        if item.transient:
            notes.append("transient")
        extra = f"  ({', '.join(notes)})" if notes else ""
        name = style.bold(item.node) if item.critical else item.node
        lines.append(f"  {name}  {change}{extra}")
        lines.append(style.dim(f"    {_reason(topology, item, outcome, kinds)}"))
    return lines


def _outcome_lines(
    topology: Topology, outcome: Outcome, kinds: Mapping[str, str], style: Style
) -> list[str]:
    by_name = {i.node: i for i in outcome.impacted}
    critical = [i for i in outcome.impacted if i.critical]
    others = [i for i in outcome.impacted if not i.critical]
    lines = []
    if critical:
        lines += ["", "critical nodes:", *_entries(topology, critical, by_name, kinds, style)]
    if others:
        lines += ["", "other nodes:", *_entries(topology, others, by_name, kinds, style)]
    return lines


def render_impact(topology: Topology, impact: Impact, style: Style) -> str:
    """The verdict first, then critical impacts, each with its reason chain."""
    kinds = {a.node: a.kind for a in impact.actions}
    what = ", ".join(f"{a.kind} {a.node}" for a in impact.actions)
    worst = impact.if_unknown_down
    if worst is not None:
        head = (
            f"{style.verdict(impact.verdict)} (uncertain): if unknown "
            f"{_names(impact.unknown)} {'is' if len(impact.unknown) == 1 else 'are'} down, "
            f"{_summary(worst, what)}"
        )
        lines = [head]
        lines.append(
            f"with unknown nodes up: {style.verdict(impact.expected.verdict)}: "
            f"{_summary(impact.expected, what)}"
        )
        lines += _outcome_lines(topology, impact.expected, kinds, style)
        lines += ["", "if the unknown nodes are down:"]
        lines += _outcome_lines(topology, worst, kinds, style)
    else:
        lines = [f"{style.verdict(impact.verdict)}: {_summary(impact.expected, what)}"]
        lines += _outcome_lines(topology, impact.expected, kinds, style)
    return "\n".join(lines) + "\n"


def render_findings(topology: Topology, findings: Sequence[Finding], style: Style) -> str:
    """A headline with counts, then one line per finding, errors first."""
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    count = len(topology)
    head = f"{topology.source}: {count} node{'s' if count != 1 else ''}, "
    if not findings:
        return head + style.green("no findings") + "\n"
    head += (
        f"{len(findings)} finding{'s' if len(findings) != 1 else ''} "
        f"({errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''})"
    )
    lines = [head]
    for finding in findings:
        tag = style.red("error") if finding.severity == "error" else style.yellow("warning")
        lines.append(f"{tag}: {finding.rule}: {finding.message}")
    return "\n".join(lines) + "\n"
