"""Properties of the impact engine on random topologies (acyclic or not), with
random groups, criticality, observed states (unknown included) and actions.

The reference implementations here follow DESIGN.md's "Topology semantics"
literally and naively: iterate over every node until nothing changes. A
failing example is printed as a `scenario(...)` call: a topology file (it
loads with `topology.loads` and the CLI), the observed states and the actions.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import topology
from topology import ACTION_KINDS, Action, Group, Impact, Node, State, Topology, Verdict

UP, UNKNOWN, DEGRADED, DOWN = State.UP, State.UNKNOWN, State.DEGRADED, State.DOWN
MAX_NODES = 30
NAMES = tuple(f"n{i:02d}" for i in range(MAX_NODES))

# 150 examples each keeps the file near 15 s on two cores; generating the
# topologies, not running the engine, is most of that time.
PROPERTY = settings(max_examples=150, deadline=None)


# --- Scenarios: a topology, observed states and actions, printable as YAML ------------


@dataclass(frozen=True)
class Scenario:
    nodes: tuple[Node, ...]
    observed: Mapping[str, State]
    actions: tuple[Action, ...]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def topology(self) -> Topology:
        return Topology(nodes=self.nodes)

    def what_if(self) -> Impact:
        return topology.what_if(self.topology(), self.observed, self.actions)

    def __repr__(self) -> str:
        observed = {name: str(state) for name, state in self.observed.items()}
        actions = [(a.kind, a.node) for a in self.actions]
        # Nodes that need nothing and that nothing needs, observes or acts on
        # change no answer: leave them out of the printed example.
        used = {*self.observed, *(a.node for a in self.actions)}
        used.update(m for n in self.nodes if n.groups for m in (n.name, *n.requirements))
        shown = [n for n in self.nodes if n.name in used]
        left_out = len(self.nodes) - len(shown)
        note = f"  # and {left_out} isolated nodes\n" if left_out else ""
        return (
            f'scenario(\n    """\n{to_yaml(shown)}{note}""",\n'
            f"    observed={observed!r},\n    actions={actions!r},\n)"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def to_yaml(nodes: Iterable[Node]) -> str:
    """The nodes as a topology file (version 1), one flow mapping per node."""

    def group(g: Group) -> str:
        soft = "true" if g.soft else "false"
        return f"{{any_of: [{', '.join(g.members)}], min: {g.min}, soft: {soft}}}"

    lines = ["version: 1", "nodes:"]
    for node in nodes:
        fields = []
        if node.critical:
            fields.append("critical: true")
        fields.extend(f"runs_on: {group(g)}" for g in node.groups if g.via == "runs_on")
        depends = [group(g) for g in node.groups if g.via == "depends_on"]
        if depends:
            fields.append(f"depends_on: [{', '.join(depends)}]")
        lines.append(f"  {node.name}: {{{', '.join(fields)}}}")
    return "\n".join(lines) + "\n"


def scenario(
    text: str, observed: Mapping[str, str], actions: Sequence[tuple[str, str]]
) -> Scenario:
    """The scenario a failing example prints, rebuilt from its YAML."""
    topo = topology.loads(text)
    return Scenario(
        tuple(topo.nodes.values()),
        {name: State.parse(state) for name, state in observed.items()},
        tuple(Action(kind, name) for kind, name in actions),  # type: ignore[arg-type]
    )


# Node names in the order nodes are created (a DAG only points backwards): a
# fixed scramble, so that name order is not the dependency order.
ORDER = tuple(NAMES[(7 * i + 3) % MAX_NODES] for i in range(MAX_NODES))
# Strategies built once: building them per draw is most of the cost.
_COUNT = st.integers(1, MAX_NODES)
_FLAG = st.booleans()
_DEPENDS = st.integers(0, 3)
_MEMBERS = st.lists(st.integers(0, MAX_NODES - 1), min_size=1, max_size=4)
_MIN = st.integers(1, 4)


@st.composite
def node_lists(draw: st.DrawFn) -> tuple[Node, ...]:
    """Nodes with random groups: at most one `runs_on` group and a few
    `depends_on` groups each, members drawn from earlier nodes only (a DAG)
    or from every other node (cycles allowed)."""
    names = ORDER[: draw(_COUNT)]
    acyclic = draw(_FLAG)
    nodes = []
    for i, name in enumerate(names):
        candidates = names[:i] if acyclic else names[:i] + names[i + 1 :]
        groups = []
        if candidates:
            vias = ["runs_on"] if draw(_FLAG) else []
            vias += ["depends_on"] * draw(_DEPENDS)
            for via in vias:
                picked = (candidates[j % len(candidates)] for j in draw(_MEMBERS))
                members = tuple(dict.fromkeys(picked))
                minimum = min(draw(_MIN), len(members))
                groups.append(Group(members, minimum, draw(_FLAG), via))
        nodes.append(Node(name, critical=draw(_FLAG), groups=tuple(groups)))
    return tuple(nodes)


def observations(names: Sequence[str], max_size: int = 5) -> st.SearchStrategy[dict[str, State]]:
    return st.dictionaries(st.sampled_from(names), st.sampled_from(list(State)), max_size=max_size)


def action_lists(names: Sequence[str], max_size: int = 4) -> st.SearchStrategy[list[Action]]:
    return st.lists(
        st.builds(Action, st.sampled_from(ACTION_KINDS), st.sampled_from(names)),
        max_size=max_size,
    )


@st.composite
def scenarios(draw: st.DrawFn, max_actions: int = 4) -> Scenario:
    nodes = draw(node_lists())
    names = [n.name for n in nodes]
    observed = draw(observations(names))
    actions = draw(action_lists(names, max_actions))
    return Scenario(nodes, observed, tuple(actions))


# --- Reference semantics, straight from DESIGN.md --------------------------------------


def counts(group: Group, states: Mapping[str, State]) -> tuple[int, int]:
    """(available, healthy): members up or degraded, members up; unknown
    counts as up."""
    available = sum(states[m] != DOWN for m in group.members)
    healthy = sum(states[m] in (UP, UNKNOWN) for m in group.members)
    return available, healthy


def effect(group: Group, states: Mapping[str, State]) -> State:
    """What a group does to the node that needs it."""
    available, healthy = counts(group, states)
    if available < group.min:
        return DEGRADED if group.soft else DOWN
    if healthy < group.min:
        return DEGRADED
    return UP


def without_spare(group: Group, states: Mapping[str, State]) -> bool:
    available, healthy = counts(group, states)
    return len(group.members) > group.min and available == group.min and healthy >= group.min


@dataclass(frozen=True)
class Reference:
    states: dict[str, State]
    # (node, index of the group) for each group without a spare left
    spareless: frozenset[tuple[str, int]]

    @property
    def no_spare(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.spareless)


def reference(topo: Topology, observed: Mapping[str, State]) -> Reference:
    """Start every node at its own observation; a node's state is the worst of
    its observation and all its groups; repeat over every node until nothing
    changes (the least fixpoint, since states only ever get worse)."""
    states = {name: observed.get(name, UP) for name in topo.nodes}
    changed = True
    while changed:
        changed = False
        for name, node in topo.nodes.items():
            worst = max([observed.get(name, UP), *(effect(g, states) for g in node.groups)])
            if worst != states[name]:
                assert worst > states[name], "a state got better during propagation"
                states[name] = worst
                changed = True
    # "Still up, one failure away": a node already down has nothing left to lose.
    spareless = frozenset(
        (name, i)
        for name, node in topo.nodes.items()
        if states[name] != DOWN
        for i, g in enumerate(node.groups)
        if without_spare(g, states)
    )
    return Reference(states, spareless)


def with_actions(observed: Mapping[str, State], actions: Iterable[Action]) -> dict[str, State]:
    """Every action makes its node unavailable."""
    out = dict(observed)
    out.update((a.node, DOWN) for a in actions)
    return out


@dataclass(frozen=True)
class Diff:
    """Before and after the actions: the nodes that get worse, those that
    lose their last spare (worse or not), and those that only lose it."""

    before: Reference
    after: Reference
    worse: frozenset[str]
    new_spare: frozenset[str]

    @property
    def impacted(self) -> frozenset[str]:
        return self.worse | self.new_spare

    @property
    def lost_spare(self) -> frozenset[str]:
        return self.new_spare - self.worse


def diff(topo: Topology, observed: Mapping[str, State], actions: Iterable[Action]) -> Diff:
    before = reference(topo, observed)
    after = reference(topo, with_actions(observed, actions))
    worse = frozenset(n for n in topo.nodes if after.states[n] > before.states[n])
    # Spares are lost per group: losing the last spare of a second group is news.
    lost = after.spareless - before.spareless
    return Diff(before, after, worse, frozenset(name for name, _ in lost))


def reference_verdict(topo: Topology, d: Diff) -> Verdict:
    """2 if a critical node goes down, else 1 if one gets worse (degraded) or
    loses its last spare, else 0."""
    critical = [n for n, node in topo.nodes.items() if node.critical]
    if any(n in d.worse and d.after.states[n] == DOWN for n in critical):
        return Verdict.CRITICAL
    if any(n in d.impacted for n in critical):
        return Verdict.WARNING
    return Verdict.OK


def reference_reasons(topo: Topology, d: Diff, actions: Iterable[Action]) -> dict[str, list[str]]:
    """Breadth-first from the actions' nodes along requirement edges that
    explain the dependent's new state, smallest name first at each step: the
    shortest chain, ties broken by name. Down is explained only by a down
    member of a hard group that broke; degraded by a worsened member of a
    group whose effect is degraded; a lost spare by a down member of the group
    left without spare."""
    after = d.after.states

    def explains(name: str, member: str) -> bool:
        for g in topo.node(name).groups:
            if member not in g.members:
                continue
            if name in d.lost_spare:
                if after[member] == DOWN and without_spare(g, after):
                    return True
            elif after[name] == DOWN:
                if after[member] == DOWN and effect(g, after) == DOWN:
                    return True
            elif effect(g, after) == DEGRADED:
                return True
        return False

    dependents: dict[str, set[str]] = {}
    for name, member, _ in topo.edges():
        dependents.setdefault(member, set()).add(name)
    layer = sorted({a.node for a in actions} & d.worse)
    chains = {name: [name] for name in layer}
    while layer:
        reached: list[str] = []
        for member in layer:
            for name in sorted(dependents.get(member, ())):
                if name in chains or not (name in d.worse or name in d.lost_spare):
                    continue
                if explains(name, member):
                    chains[name] = [name, *chains[member]]
                    if name in d.worse:
                        reached.append(name)
        layer = sorted(reached)
    return chains


def states_after(topo: Topology, observed: Mapping[str, State], impact: Impact) -> dict[str, State]:
    """Every node's state after the actions, as the what-if reports it."""
    states = dict(topology.evaluate(topo, observed))
    states.update((i.node, i.after) for i in impact.impacted)
    return states


def shuffled(nodes: Sequence[Node], rng: random.Random) -> list[Node]:
    """The same nodes in another order, each with its groups and their
    members in another order."""

    def mix(items: Sequence[Any]) -> tuple[Any, ...]:
        out = list(items)
        rng.shuffle(out)
        return tuple(out)

    out = [
        Node(
            n.name,
            critical=n.critical,
            groups=mix([Group(mix(g.members), g.min, g.soft, g.via) for g in n.groups]),
        )
        for n in nodes
    ]
    rng.shuffle(out)
    return out


# Minimal inputs of the bugs reported (see test_engine.py for the same cases).
DEGRADED_MEMBER_EXPLAINS_DOWN = scenario(
    """
version: 1
nodes:
  a0: {}
  b0: {}
  b1: {depends_on: [b0]}
  a: {depends_on: [{any_of: [a0], soft: true}]}
  b: {depends_on: [b1]}
  x: {critical: true, depends_on: [{any_of: [a, b], min: 2}]}
""",
    observed={},
    actions=[("shutdown", "a0"), ("shutdown", "b0")],
)
LOST_SPARE_EXPLAINED_BY_OTHER_GROUP = scenario(
    """
version: 1
nodes:
  c: {}
  d: {}
  e: {}
  p: {}
  q: {}
  api: {critical: true, runs_on: [p, q], depends_on: [{any_of: [c, d, e]}]}
""",
    observed={},
    actions=[("shutdown", "c"), ("shutdown", "p")],
)
TWO_UNKNOWNS = scenario(
    """
version: 1
nodes:
  p: {}
  u1: {}
  u2: {}
  api: {critical: true, runs_on: [p, u1], depends_on: [u2]}
""",
    observed={"u1": "unknown", "u2": "unknown"},
    actions=[("shutdown", "p")],
)


# --- Properties ------------------------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_no_action_means_no_impact(s: Scenario) -> None:
    impact = topology.what_if(s.topology(), s.observed, [])

    assert impact.to_json() == {
        "verdict": "ok",
        "exit_code": 0,
        "uncertain": False,
        "actions": [],
        "impacted": [],
    }


@PROPERTY
@given(st.data(), scenarios())
def test_adding_an_action_never_makes_a_node_better(data: st.DataObject, s: Scenario) -> None:
    topo = s.topology()
    more = (*s.actions, *data.draw(action_lists(s.names, 3), label="more actions"))

    fewer_impact = topology.what_if(topo, s.observed, s.actions)
    more_impact = topology.what_if(topo, s.observed, more)
    fewer = states_after(topo, s.observed, fewer_impact)
    larger = states_after(topo, s.observed, more_impact)

    assert {n: (fewer[n], larger[n]) for n in topo.nodes if larger[n] < fewer[n]} == {}
    assert more_impact.expected.verdict >= fewer_impact.expected.verdict


@PROPERTY
@given(scenarios(), st.randoms(use_true_random=False))
def test_the_order_of_nodes_groups_and_members_does_not_matter(
    s: Scenario, rng: random.Random
) -> None:
    topo = s.topology()
    other = Topology(nodes=shuffled(s.nodes, rng))

    assert topology.what_if(other, s.observed, s.actions).to_json() == s.what_if().to_json()
    states, other_states = topology.evaluate(topo, s.observed), topology.evaluate(other, s.observed)
    assert dict(other_states) == dict(states)
    assert other_states.no_spare == states.no_spare
    for action in s.actions:
        failure, other_failure = topology.fail(topo, action.node), topology.fail(other, action.node)
        assert other_failure.down == failure.down
        assert {(o, frozenset(g.members), g.min, g.soft) for o, g in other_failure.broken} == {
            (o, frozenset(g.members), g.min, g.soft) for o, g in failure.broken
        }


@PROPERTY
@given(st.data(), scenarios(max_actions=0))
def test_actions_on_nodes_already_down_change_nothing(data: st.DataObject, s: Scenario) -> None:
    observed = dict(s.observed)
    observed[data.draw(st.sampled_from(s.names), label="also down")] = DOWN
    topo = s.topology()
    down = [n for n, state in topology.evaluate(topo, observed).items() if state == DOWN]
    actions = data.draw(
        st.lists(st.builds(Action, st.sampled_from(ACTION_KINDS), st.sampled_from(down))),
        label="actions",
    )

    impact = topology.what_if(topo, observed, actions)

    assert impact.to_json() == {
        "verdict": "ok",
        "exit_code": 0,
        "uncertain": False,
        "actions": [{"action": a.kind, "node": a.node} for a in actions],
        "impacted": [],
    }


@PROPERTY
@given(scenarios())
def test_states_after_are_never_better_than_before(s: Scenario) -> None:
    topo = s.topology()
    impact = s.what_if()
    before = topology.evaluate(topo, s.observed)
    after = states_after(topo, s.observed, impact)

    assert {n: (before[n], after[n]) for n in topo.nodes if after[n] < before[n]} == {}
    for i in impact.impacted:
        assert i.before == before[i.node]
        assert i.after > i.before or i.no_spare, i


@PROPERTY
@given(scenarios())
def test_impacted_is_exactly_what_gets_worse_or_loses_its_last_spare_critical_first(
    s: Scenario,
) -> None:
    topo = s.topology()
    d = diff(topo, s.observed, s.actions)

    impact = s.what_if()

    assert {i.node: (i.before, i.after, i.no_spare) for i in impact.impacted} == {
        n: (d.before.states[n], d.after.states[n], n in d.new_spare) for n in d.impacted
    }
    assert len(impact.impacted) == len(d.impacted)
    for i in impact.impacted:
        node = topo.node(i.node)
        assert (i.kind, i.critical, i.recovery_target_s) == (
            node.kind,
            node.critical,
            600.0 if node.critical else 14400.0,
        )
    # Critical nodes first, then the worst state.
    keys = [(not i.critical, -i.after) for i in impact.impacted]
    assert keys == sorted(keys)


@PROPERTY
@given(scenarios())
def test_evaluate_equals_the_naive_reference(s: Scenario) -> None:
    topo = s.topology()
    expected = reference(topo, s.observed)

    states = topology.evaluate(topo, s.observed)

    assert dict(states) == expected.states
    assert states.not_up() == {n: v for n, v in expected.states.items() if v != UP}
    assert states.no_spare == expected.no_spare


@PROPERTY
@given(scenarios())
def test_every_reason_chain_runs_along_requirements_back_to_an_action(s: Scenario) -> None:
    topo = s.topology()
    impact = s.what_if()
    acted = {a.node for a in s.actions}
    worse = {i.node for i in impact.impacted if i.after > i.before}

    for i in impact.impacted:
        chain = i.reason
        assert chain[0] == i.node
        assert chain[-1] in acted, i
        assert len(set(chain)) == len(chain), i
        for node, member in itertools.pairwise(chain):
            assert member in topo.node(node).requirements, (node, member)
        # Every step back is a node that itself got worse.
        assert set(chain[1:]) <= worse, i


@PROPERTY
@given(scenarios())
@example(DEGRADED_MEMBER_EXPLAINS_DOWN)
@example(LOST_SPARE_EXPLAINED_BY_OTHER_GROUP)
def test_every_reason_chain_is_the_shortest_that_explains_each_step(s: Scenario) -> None:
    topo = s.topology()
    d = diff(topo, s.observed, s.actions)
    expected = reference_reasons(topo, d, s.actions)

    impact = s.what_if()

    assert {i.node: list(i.reason) for i in impact.impacted} == expected


@PROPERTY
@given(scenarios())
def test_the_verdict_follows_the_critical_nodes(s: Scenario) -> None:
    topo = s.topology()
    expected = reference_verdict(topo, diff(topo, s.observed, s.actions))
    unknown = sorted(n for n, v in s.observed.items() if v == UNKNOWN)

    impact = s.what_if()

    assert impact.expected.verdict == expected
    assert impact.exit_code == int(impact.verdict)
    assert impact.uncertain == (impact.verdict > expected)
    assert (impact.if_unknown_down is not None) == impact.uncertain
    assert bool(impact.unknown) == impact.uncertain
    assert set(impact.unknown) <= set(unknown)
    if impact.if_unknown_down is not None:
        # The worst world is the one named: those unknown nodes down, the rest unknown.
        world = dict(s.observed)
        world.update(dict.fromkeys(impact.unknown, DOWN))
        d = diff(topo, world, s.actions)
        assert impact.if_unknown_down.verdict == reference_verdict(topo, d) == impact.verdict
        assert {
            i.node: (i.before, i.after, i.no_spare) for i in impact.if_unknown_down.impacted
        } == {n: (d.before.states[n], d.after.states[n], n in d.new_spare) for n in d.impacted}


@PROPERTY
@given(scenarios())
@example(TWO_UNKNOWNS)
def test_the_verdict_is_never_better_than_any_way_the_unknown_nodes_could_be(
    s: Scenario,
) -> None:
    topo = s.topology()
    unknown = sorted(n for n, v in s.observed.items() if v == UNKNOWN)
    impact = s.what_if()

    worst = Verdict.OK
    for size in range(len(unknown) + 1):
        for down in itertools.combinations(unknown, size):
            known = dict(s.observed)
            known.update((n, DOWN if n in down else UP) for n in unknown)
            worst = max(worst, reference_verdict(topo, diff(topo, known, s.actions)))
    # Exact while the unknown nodes are few enough for every world to be tried.
    assert impact.verdict == worst


@PROPERTY
@given(scenarios())
def test_only_what_a_restart_alone_worsens_is_transient(s: Scenario) -> None:
    topo = s.topology()
    lasting = [a for a in s.actions if a.kind != "restart"]
    settled = diff(topo, s.observed, lasting)
    d = diff(topo, s.observed, s.actions)

    impact = s.what_if()

    assert {i.node: i.transient for i in impact.impacted} == {
        i.node: settled.after.states[i.node] < i.after
        or (
            i.node in d.lost_spare
            and any(
                (i.node, g) not in settled.after.spareless
                for n, g in d.after.spareless - d.before.spareless
                if n == i.node
            )
        )
        for i in impact.impacted
    }
    if not lasting:
        assert all(i.transient for i in impact.impacted)
    if len(lasting) == len(s.actions):
        assert not any(i.transient for i in impact.impacted)


@PROPERTY
@given(st.data(), scenarios(max_actions=0))
def test_fail_reports_what_one_failure_alone_does(data: st.DataObject, s: Scenario) -> None:
    topo = s.topology()
    name = data.draw(st.sampled_from(s.names), label="failed")
    expected = reference(topo, {name: DOWN}).states

    failure = topology.fail(topo, name)

    assert failure.node == name
    assert failure.down == {n for n, v in expected.items() if v == DOWN and n != name}
    assert list(failure.broken) == [
        (n, g)
        for n, node in topo.nodes.items()
        for g in node.groups
        if g.redundant and counts(g, expected)[0] < g.min
    ]


@PROPERTY
@given(st.data(), scenarios(max_actions=0))
def test_worsening_one_observation_equals_evaluating_afresh(
    data: st.DataObject, s: Scenario
) -> None:
    topo = s.topology()
    name = data.draw(st.sampled_from(s.names), label="node")
    before = s.observed.get(name, UP)
    worse = data.draw(st.sampled_from([v for v in State if v >= before]), label="worse")
    observed = {**s.observed, name: worse}

    start = topology.evaluate(topo, s.observed)
    asked = data.draw(st.lists(st.sampled_from(s.names), max_size=6), label="asked before")
    for node in asked:  # answers kept from before must still be right after
        start.causes(node)
    states, changed = start.worsened(name, worse)
    fresh = topology.evaluate(topo, observed)

    assert dict(states) == dict(fresh)
    assert states.no_spare == fresh.no_spare
    assert {n: states.causes(n) for n in topo.nodes} == {n: fresh.causes(n) for n in topo.nodes}
    old = topology.evaluate(topo, s.observed)
    assert {n for n in topo.nodes if old[n] != fresh[n]} <= changed
