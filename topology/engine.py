"""The impact engine: effective states from observations, and what-if answers.

Propagation is the monotone fixpoint of DESIGN.md: every node starts at its
own observation and only ever gets worse, one requirement group at a time.
Only the part of the graph that actually gets worse is visited, so a what-if
costs about as much as walking the nodes it impacts.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal, NamedTuple

from topology.collector import paused
from topology.model import Group, Index, State, Topology

__all__ = [
    "ACTION_KINDS",
    "REASON_HEAD",
    "REASON_LIMIT",
    "REASON_TAIL",
    "Action",
    "Failure",
    "Impact",
    "ImpactedNode",
    "Outcome",
    "States",
    "Verdict",
    "evaluate",
    "fail",
    "reason_gap",
    "what_if",
]

ActionKind = Literal["shutdown", "drain", "restart"]
ACTION_KINDS: tuple[ActionKind, ...] = ("shutdown", "drain", "restart")

_UP, _DEGRADED, _DOWN = 0, 2, 3  # values of State (unknown, 1, is seen as up)
_STATES = tuple(State)  # by value, cheaper than State(value)
# What the nodes that need a member see of it: 0 healthy (up or unknown),
# 1 available but unhealthy (degraded), 2 unavailable (down).
_SEEN = (0, 0, 1, 2)
# Reason chains of up to REASON_LIMIT names are shown whole; longer ones keep
# their first REASON_HEAD names (the node and what it sees fail) and their
# last REASON_TAIL (down to the action), at least 2 names left out between.
REASON_HEAD = 6
REASON_TAIL = 5
REASON_LIMIT = REASON_HEAD + REASON_TAIL + 1


@dataclass(frozen=True, slots=True)
class Action:
    """A maneuver on one node. Every kind makes the node unavailable to the
    nodes that need it; a restart is reported as transient."""

    kind: ActionKind
    node: str

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"unknown action {self.kind!r}: expected one of {ACTION_KINDS}")


class Verdict(enum.IntEnum):
    """The answer to a what-if, also the CLI's exit code (Nagios convention)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    def __str__(self) -> str:
        return self.name.lower()


class States(Mapping[str, State]):
    """The effective state of every node of a topology, which nodes have lost
    their last spare (still up, one failure away from worse), and why each
    failed node failed."""

    __slots__ = ("_causes", "_roots", "_run", "_topology", "no_spare")

    def __init__(self, topology: Topology, run: _Run) -> None:
        self._topology = topology
        self._run = run
        # Answers of `causes`, and the roots found below each node asked
        # about: a farm's thousand dependents share the walk below the farm.
        self._causes: dict[str, tuple[str, ...]] = {}
        self._roots: dict[str, frozenset[str]] = {}
        owner = topology.index.owner
        self.no_spare = frozenset(owner[gid] for gid in run.spareless(topology.index))

    def __getitem__(self, name: str) -> State:
        if name not in self._topology:
            raise KeyError(name)
        return _STATES[self._run.state.get(name, _UP)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._topology.nodes)

    def __len__(self) -> int:
        return len(self._topology)

    def not_up(self) -> Mapping[str, State]:
        """Only the nodes that are not up, by name."""
        return {name: _STATES[v] for name, v in sorted(self._run.state.items()) if v != _UP}

    def worsened(self, name: str, observed: State) -> tuple[States, frozenset[str]]:
        """These states after `name`'s observation got worse: the new states
        and the nodes whose state changed. Cheaper than `evaluate` (only what
        gets worse is visited) and the same result, since a worse
        observation only ever makes the fixpoint worse; for an observation
        that got better, `evaluate` afresh."""
        if observed <= self._run.state.get(name, _UP):
            # Nothing gets worse (a farm's dependents reporting down after
            # it): these very states, so callers keyed on them keep their work.
            return self, frozenset()
        run = self._run.copy()
        run.state[name] = int(observed)
        changed = run.propagate(self._topology.index, [name])
        changed.add(name)
        states = States(self._topology, run)
        if self._causes:
            # A node's causes depend only on what lies below it: those of
            # nodes above nothing that changed are still right (a farm's
            # thousand dependents are not walked again for each failure
            # beside it).
            stale = self._topology.upstream_of(changed)
            states._causes = {n: c for n, c in self._causes.items() if n not in stale}
            states._roots = {n: r for n, r in self._roots.items() if n not in stale}
        return states, frozenset(changed)

    def causes(self, name: str) -> tuple[str, ...]:
        """The root causes of a degraded or down node: the failed nodes, found
        by following the requirements that explain each state, that nothing
        below explains (they failed on their own observation). The node
        itself when its requirements do not account for its state; empty
        when it is up or unknown."""
        cached = self._causes.get(name)
        if cached is not None:
            return cached
        run, index = self._run, self._topology.index
        if run.state.get(name, _UP) < _DEGRADED:
            return ()
        groups, by_owner, known = index.groups, self._groups_of, self._roots
        roots: set[str] = set()
        seen = {name}
        todo = [name]
        while todo:
            node = todo.pop()
            if node != name and node in known:
                roots |= known[node]  # walked before: its roots, not its walk
                continue
            below = [
                member
                for gid in by_owner(node)
                for member in groups[gid].members
                if run.explains(index, gid, member)
            ]
            if not below:
                roots.add(node)
            for member in below:
                if member not in seen:
                    seen.add(member)
                    todo.append(member)
        if roots:
            # Only real roots are reused: a cycle with none answers with
            # every node it met, which is not what lies below one of them.
            known[name] = frozenset(roots)
        answer = self._causes[name] = tuple(sorted(roots or seen))
        return answer

    def _groups_of(self, name: str) -> range:
        first, count = self._topology.index.own_groups.get(name, (0, 0))
        return range(first, first + count)


class _Run:
    """One propagation in progress: sparse states (absent means up), the
    per-group counts of members down and members not healthy, and what each
    node's dependents have been told of it."""

    __slots__ = ("n_bad", "n_down", "seen", "state")

    def __init__(self) -> None:
        self.state: dict[str, int] = {}
        self.n_down: dict[int, int] = {}
        self.n_bad: dict[int, int] = {}
        self.seen: dict[str, int] = {}

    def copy(self) -> _Run:
        run = _Run()
        run.state = dict(self.state)
        run.n_down = dict(self.n_down)
        run.n_bad = dict(self.n_bad)
        run.seen = dict(self.seen)
        return run

    def propagate(self, index: Index, seeds: Iterable[str]) -> set[str]:
        """Worsen dependents until nothing changes; return the nodes worsened."""
        state, n_down, n_bad, seen = self.state, self.n_down, self.n_bad, self.seen
        dependents, owner, slack, soft = index.dependents, index.owner, index.slack, index.soft
        worsened: set[str] = set()
        stack = list(seeds)
        while stack:
            name = stack.pop()
            now = _SEEN[state.get(name, _UP)]
            before = seen.get(name, 0)
            if now == before:
                continue
            seen[name] = now
            gids = dependents.get(name)
            if gids is None:
                continue
            became_down = now == 2
            became_bad = before == 0
            for gid in gids:
                down = n_down.get(gid, 0)
                bad = n_bad.get(gid, 0)
                if became_down:
                    down += 1
                    n_down[gid] = down
                if became_bad:
                    bad += 1
                    n_bad[gid] = bad
                room = slack[gid]
                if down > room:
                    new = _DEGRADED if soft[gid] else _DOWN
                elif bad > room:
                    new = _DEGRADED
                else:
                    continue
                node = owner[gid]
                if new > state.get(node, _UP):
                    state[node] = new
                    worsened.add(node)
                    stack.append(node)
        return worsened

    def spareless(self, index: Index, among: Iterable[int] | None = None) -> frozenset[int]:
        """Groups (all, or those `among`) that had spares and are down to
        exactly `min` available members, all healthy, whose node is not down
        for another reason."""
        slack, owner, n_down, n_bad, state = (
            index.slack,
            index.owner,
            self.n_down,
            self.n_bad,
            self.state,
        )
        return frozenset(
            gid
            for gid in (n_down if among is None else among)
            if (down := n_down.get(gid, 0))
            and down == slack[gid]
            and n_bad[gid] == down
            and state.get(owner[gid], _UP) != _DOWN
        )

    def explains(self, index: Index, gid: int, member: str) -> bool:
        """Whether `member` of group `gid` accounts for its owner's state: a
        member down in a group with too few available (a soft group explains
        degraded, never down), or a member not healthy in a group with too
        few healthy members, the owner being degraded."""
        state = self.state
        room, now = index.slack[gid], state.get(index.owner[gid], _UP)
        if self.n_down.get(gid, 0) > room and state.get(member) == _DOWN:
            return now == (_DEGRADED if index.soft[gid] else _DOWN)
        return (
            now == _DEGRADED
            and self.n_bad.get(gid, 0) > room
            and state.get(member, _UP) >= _DEGRADED
        )

    def worsened_by(self, index: Index, names: Iterable[str]) -> _Run:
        """A copy with `names` down too, propagated."""
        run = self.copy()
        run.propagate(index, _apply(run, (Action("shutdown", n) for n in names)))
        return run


def _start(topology: Topology, observed: Mapping[str, State]) -> _Run:
    run = _Run()
    seeds = []
    for name, value in observed.items():
        if name not in topology:
            raise ValueError(f"unknown node {name!r}")
        if value != _UP:
            run.state[name] = int(value)
            if _SEEN[value]:
                seeds.append(name)
    run.propagate(topology.index, seeds)
    return run


def evaluate(topology: Topology, observed: Mapping[str, State]) -> States:
    """Effective states of every node given observed ones (absent means up).

    The result is the least fixpoint of DESIGN.md's rules, computed afresh
    from the observations, so a recovered cause never keeps a cycle down.
    """
    return States(topology, _start(topology, observed))


class ImpactedNode(NamedTuple):
    """A node that gets worse (or loses its last spare) because of actions.

    `reason` runs from the node back to an action's node: the shortest chain
    of requirements, ties broken by name. A chain of more than
    `REASON_LIMIT` names keeps its first `REASON_HEAD` and its last
    `REASON_TAIL`, and `reason_omitted` counts the names left out between
    them (JSON puts `"... N more ..."` there): each node's chain repeats
    the chains below it, so whole chains make an answer grow with the
    square of a long chain of requirements (5,000 links: 330 MB of text).
    (A named tuple: an answer can hold tens of thousands, and these are
    several times cheaper to make than a frozen dataclass.)
    """

    node: str
    kind: str
    critical: bool
    before: State
    after: State
    recovery_target_s: float
    transient: bool
    no_spare: bool
    reason: tuple[str, ...]
    reason_omitted: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of DESIGN.md's `impacted` entries; a cut reason
        chain holds `"... N more ..."` where names were left out (no node
        name has a space)."""
        reason = list(self.reason)
        if self.reason_omitted:
            reason.insert(REASON_HEAD, reason_gap(self.reason_omitted))
        return {
            "node": self.node,
            "kind": self.kind,
            "critical": self.critical,
            "before": str(self.before),
            "after": str(self.after),
            "recovery_target_s": _seconds(self.recovery_target_s),
            "transient": self.transient,
            "no_spare": self.no_spare,
            "reason": reason,
        }


class Outcome:
    """The verdict and the impacted nodes under one set of assumptions.

    The verdict is known at once; the impacted nodes, with their reason
    chains, are worked out when first asked for, so a script that gates on
    the verdict, or a search over unknown nodes, pays only for propagation.
    """

    __slots__ = ("_build", "_impacted", "verdict")

    def __init__(self, verdict: Verdict, impacted: Callable[[], tuple[ImpactedNode, ...]]) -> None:
        self.verdict = verdict
        self._impacted: tuple[ImpactedNode, ...] | None = None
        self._build: Callable[[], tuple[ImpactedNode, ...]] | None = impacted

    @property
    def impacted(self) -> tuple[ImpactedNode, ...]:
        """Every node that gets worse or loses a last spare: critical first,
        then worst state, then those without a spare, then by name."""
        if self._impacted is None:
            assert self._build is not None
            self._impacted = self._build()
            self._build = None
        return self._impacted

    @property
    def critical(self) -> tuple[ImpactedNode, ...]:
        """The impacted nodes that are critical, worst first."""
        return tuple(i for i in self.impacted if i.critical)

    def __repr__(self) -> str:
        return f"Outcome({self.verdict!r}, {self.impacted!r})"


@dataclass(frozen=True, slots=True)
class Impact:
    """The answer to "what if I do these actions now?".

    `verdict` is the worst plausible answer: when nodes whose state is unknown
    could, by being down, make it worse than `expected` says, it is `uncertain`
    and `if_unknown_down` holds that worse outcome, so missing data never makes
    a maneuver look safe.
    """

    actions: tuple[Action, ...]
    verdict: Verdict
    expected: Outcome
    uncertain: bool = False
    unknown: tuple[str, ...] = ()
    if_unknown_down: Outcome | None = None

    @property
    def impacted(self) -> tuple[ImpactedNode, ...]:
        """The impacted nodes when unknown nodes are counted as up."""
        return self.expected.impacted

    @property
    def exit_code(self) -> int:
        """The verdict as a process exit code."""
        return int(self.verdict)

    def to_json(self) -> dict[str, Any]:
        """The JSON answer of the CLI and API (DESIGN.md, the blast-radius CLI)."""
        out: dict[str, Any] = {
            "verdict": str(self.verdict),
            "exit_code": self.exit_code,
            "uncertain": self.uncertain,
            "actions": [{"action": a.kind, "node": a.node} for a in self.actions],
            "impacted": [i.to_json() for i in self.expected.impacted],
        }
        if self.if_unknown_down is not None:
            out["unknown"] = list(self.unknown)
            out["if_unknown_down"] = {
                "verdict": str(self.if_unknown_down.verdict),
                "impacted": [i.to_json() for i in self.if_unknown_down.impacted],
            }
        return out


def _seconds(value: float) -> int | float:
    return int(value) if value == int(value) else value


def what_if(topology: Topology, observed: Mapping[str, State], actions: Iterable[Action]) -> Impact:
    """What gets worse if `actions` are done on top of the `observed` states.

    Known failures are the baseline: the answer is the difference between the
    baseline and the baseline plus the actions. Raises `ValueError` for an
    unknown node.
    """
    acts = tuple(actions)
    for action in acts:
        if action.node not in topology:
            raise ValueError(f"unknown node {action.node!r}")
    base = _start(topology, observed)
    expected = _outcome(topology, base, acts)
    suspects = _suspects(topology, observed, acts)
    if not suspects:
        return Impact(acts, expected.verdict, expected)
    worst, world = _worst_world(topology, base, acts, suspects, expected)
    if worst is None:
        return Impact(acts, expected.verdict, expected)
    return Impact(
        acts,
        worst.verdict,
        expected,
        uncertain=True,
        unknown=world,
        if_unknown_down=worst,
    )


# Up to this many unknown nodes that matter, every combination of them being
# down is tried (2**n worlds); past it (a daemon that has just started knows
# nothing yet), all of them down, then each of the first SAMPLED_UNKNOWN alone.
EXHAUSTIVE_UNKNOWN = 8
SAMPLED_UNKNOWN = 64


def _suspects(
    topology: Topology, observed: Mapping[str, State], actions: tuple[Action, ...]
) -> tuple[str, ...]:
    """The unknown nodes that some critical node the actions can reach
    transitively requires: the only ones whose state can change the verdict."""
    unknown = {name for name, value in observed.items() if value == State.UNKNOWN}
    if not unknown:
        return ()
    reach = topology.upstream_of(a.node for a in actions)
    todo = [name for name in reach if topology.node(name).critical]
    above = set(todo)
    while todo:
        for member in topology.node(todo.pop()).requirements:
            if member not in above:
                above.add(member)
                todo.append(member)
    return tuple(sorted(unknown & above))


def _worst_world(
    topology: Topology,
    base: _Run,
    actions: tuple[Action, ...],
    suspects: tuple[str, ...],
    expected: Outcome,
) -> tuple[Outcome | None, tuple[str, ...]]:
    """The outcome in the world, among unknown nodes being down or not, where
    the actions do the most harm, if worse than the expected one, and which
    unknown nodes are down in it (the fewest, then first by name)."""
    count = len(suspects)
    worlds: Iterable[tuple[str, ...]]
    if count <= EXHAUSTIVE_UNKNOWN:
        worlds = (world for size in range(1, count + 1) for world in combinations(suspects, size))
    else:
        worlds = [suspects, *((name,) for name in suspects[:SAMPLED_UNKNOWN])]
    index = topology.index
    worst: Outcome | None = None
    found: tuple[str, ...] = ()
    for world in worlds:
        outcome = _outcome(topology, base.worsened_by(index, world), actions)
        if outcome.verdict > (worst or expected).verdict:
            worst, found = outcome, world
            if outcome.verdict == Verdict.CRITICAL:
                break
    return worst, found


def _outcome(topology: Topology, base: _Run, actions: tuple[Action, ...]) -> Outcome:
    index = topology.index
    after = base.copy()
    changed = after.propagate(index, _apply(after, actions))
    changed.update(a.node for a in actions if base.state.get(a.node, _UP) != _DOWN)

    verdict = Verdict.OK
    state = after.state
    hit = changed & index.critical
    if any(state[name] == _DOWN for name in hit):
        verdict = Verdict.CRITICAL
    elif hit or _loses_critical_spare(index, base, after):
        verdict = Verdict.WARNING
    return Outcome(verdict, lambda: _impacted(topology, base, after, actions, changed))


def _loses_critical_spare(index: Index, base: _Run, after: _Run) -> bool:
    """Whether a critical node's group with spares is left without one."""
    candidates = after.n_down.keys() & index.critical_redundant
    if not candidates:
        return False
    return bool(after.spareless(index, candidates) - base.spareless(index, candidates))


def _impacted(
    topology: Topology, base: _Run, after: _Run, actions: tuple[Action, ...], changed: set[str]
) -> tuple[ImpactedNode, ...]:
    """The records of what the actions did, with reasons and transience."""
    with paused():
        return _records(topology, base, after, actions, changed)


def _records(
    topology: Topology, base: _Run, after: _Run, actions: tuple[Action, ...], changed: set[str]
) -> tuple[ImpactedNode, ...]:
    index = topology.index
    owner = index.owner
    # Spares are lost per group: a node already one failure away in one group
    # that loses the spare of another is worse off, and says so.
    new_groups = after.spareless(index) - base.spareless(index)
    new_spare = {owner[gid] for gid in new_groups}
    lost_spare = frozenset(new_spare - changed)

    settled: _Run | None = None
    passing_spare: set[str] = set()
    if any(a.kind == "restart" for a in actions):
        lasting = tuple(a for a in actions if a.kind != "restart")
        settled = base.copy()
        settled.propagate(index, _apply(settled, lasting))
        passing_spare = {owner[gid] for gid in new_groups - settled.spareless(index)}

    parents = _reasons(
        topology, actions, after, changed, lost_spare=lost_spare, spareless=new_groups
    )
    chains: dict[str, _Chain] = {}
    before_state, after_state = base.state, after.state
    nodes, critical = topology.nodes, index.critical
    keyed: list[tuple[int, ImpactedNode]] = []
    for name in changed | lost_spare:
        now = after_state.get(name, _UP)
        transient = settled is not None and (
            settled.state.get(name, _UP) < now or (name in lost_spare and name in passing_spare)
        )
        spare = name in new_spare
        is_critical = name in critical
        reason, omitted = _reason(_chain(name, parents, chains))
        record = ImpactedNode(
            node=name,
            kind=nodes[name].kind,
            critical=is_critical,
            before=_STATES[before_state.get(name, _UP)],
            after=_STATES[now],
            recovery_target_s=topology.recovery_target_s(name),
            transient=transient,
            no_spare=spare,
            reason=reason,
            reason_omitted=omitted,
        )
        # Critical first, then worst state, then without a spare: one small int.
        keyed.append(((not is_critical) * 8 + (3 - now) * 2 + (not spare), record))
    # Two stable sorts (by name, then by rank) beat one sort on tuples.
    keyed.sort(key=lambda pair: pair[1].node)
    keyed.sort(key=lambda pair: pair[0])
    return tuple(record for _, record in keyed)


def _apply(run: _Run, actions: Iterable[Action]) -> list[str]:
    """Take the actions' nodes down; return those that were not down yet."""
    seeds = []
    for action in actions:
        if run.state.get(action.node, _UP) != _DOWN:
            run.state[action.node] = _DOWN
            seeds.append(action.node)
    return seeds


def _reasons(
    topology: Topology,
    actions: tuple[Action, ...],
    after: _Run,
    changed: set[str],
    *,
    lost_spare: frozenset[str],
    spareless: frozenset[int],
) -> dict[str, str | None]:
    """Breadth-first from the actions through the worsened nodes. A node's
    parent is the smallest-named member one step closer to an action that
    explains the node's new state: a member down in a group that has too few
    available (a soft one explains degraded, never down), a member not
    healthy in a group that has too few healthy, or, for a lost spare, a
    member down in the group that lost it."""
    index = topology.index
    dependents, owner, state = index.dependents, index.owner, after.state
    layer = sorted({a.node for a in actions} & changed)
    parents: dict[str, str | None] = dict.fromkeys(layer)
    while layer:
        reached: dict[str, str] = {}
        for name in layer:
            for gid in dependents.get(name, ()):
                node = owner[gid]
                if node in parents or node in reached:
                    continue
                if node in changed:
                    if after.explains(index, gid, name):
                        reached[node] = name
                elif node in lost_spare and gid in spareless and state.get(name) == _DOWN:
                    parents[node] = name  # a lost spare ends the chain
        parents.update(reached)
        layer = sorted(reached)
    return parents


def reason_gap(omitted: int) -> str:
    """What stands for the names a cut reason chain leaves out."""
    return f"... {omitted} more ..."


class _Chain(NamedTuple):
    """What is kept of one node's chain back to an action: its length, its
    first and last names, and the whole of it while it is short."""

    length: int
    head: tuple[str, ...]
    tail: tuple[str, ...]
    whole: tuple[str, ...] | None


def _chain(name: str, parents: Mapping[str, str | None], chains: dict[str, _Chain]) -> _Chain:
    """The chain from `name` back to an action, built on what is known of
    the chains it passes through: a bounded amount per node, so a chain of
    n requirements costs n steps, not n squared."""
    known = chains.get(name)
    if known is not None:
        return known
    path = [name]
    step = parents.get(name)
    while step is not None and step not in chains:
        path.append(step)
        step = parents.get(step)
    below = chains[step] if step is not None else _Chain(0, (), (), ())
    for node in reversed(path):
        whole = (node, *below.whole) if below.whole is not None else None
        below = _Chain(
            below.length + 1,
            (node, *below.head[: REASON_HEAD - 1]),
            below.tail if below.length >= REASON_TAIL else (node, *below.tail)[-REASON_TAIL:],
            whole if whole is not None and len(whole) <= REASON_LIMIT else None,
        )
        chains[node] = below
    return below


def _reason(chain: _Chain) -> tuple[tuple[str, ...], int]:
    """The names shown of a chain, and how many are left out after the first
    `REASON_HEAD`."""
    if chain.whole is not None:
        return chain.whole, 0
    return (*chain.head, *chain.tail), chain.length - REASON_HEAD - REASON_TAIL


@dataclass(frozen=True, slots=True)
class Failure:
    """What the failure of one node alone does while everything else is up:
    the other nodes it takes down, and the groups with spares that it breaks
    all the same (fewer than `min` members available), as (node, group)."""

    node: str
    down: frozenset[str]
    broken: tuple[tuple[str, Group], ...]


def fail(topology: Topology, name: str) -> Failure:
    """The nodes `name` alone takes down, and the redundant groups it breaks.

    Only *down* travels: a node goes down only through a hard group with too
    few members available, and degraded members count as available, so this
    walks just the nodes that go down (lint calls it once per node).
    """
    if name not in topology:
        raise ValueError(f"unknown node {name!r}")
    index = topology.index
    dependents, owner, slack, soft = index.dependents, index.owner, index.slack, index.soft
    n_down: dict[int, int] = {}
    down = {name}
    stack = [name]
    while stack:
        for gid in dependents.get(stack.pop(), ()):
            count = n_down.get(gid, 0) + 1
            n_down[gid] = count
            if count > slack[gid] and not soft[gid]:
                node = owner[gid]
                if node not in down:
                    down.add(node)
                    stack.append(node)
    broken = tuple(
        (owner[gid], index.groups[gid])
        for gid, count in sorted(n_down.items())
        if slack[gid] and count > slack[gid]
    )
    down.discard(name)
    return Failure(name, frozenset(down), broken)
