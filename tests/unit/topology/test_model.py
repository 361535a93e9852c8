"""The model built directly from values, as a library user would."""

from __future__ import annotations

import pytest

from topology import Group, Node, State, Topology


def test_it_refuses_a_reference_to_an_unknown_node() -> None:
    with pytest.raises(ValueError, match="node 'a' requires unknown node 'b'"):
        Topology([Node("a", groups=(Group(("b",)),))])


def test_it_refuses_a_node_that_requires_itself() -> None:
    with pytest.raises(ValueError, match="node 'a' requires itself"):
        Topology([Node("a", groups=(Group(("a",)),))])


def test_it_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="duplicate node 'a'"):
        Topology([Node("a"), Node("a")])


@pytest.mark.parametrize(
    ("members", "minimum", "message"),
    [
        ((), 1, "at least one member"),
        (("a", "b"), 3, "min 3 out of range"),
        (("a",), 0, "min 0 out of range"),
        (("a", "a"), 1, "listed twice"),
    ],
)
def test_it_refuses_malformed_groups(members: tuple[str, ...], minimum: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Group(members, minimum)


def test_it_applies_recovery_target_defaults() -> None:
    topo = Topology(
        [Node("a", critical=True), Node("b"), Node("c", recovery_target_s=60.0)],
        recovery_target_critical_s=300.0,
    )
    assert [topo.recovery_target_s(n) for n in ("a", "b", "c")] == [300.0, 14400.0, 60.0]


def test_it_indexes_dependents_and_placements() -> None:
    topo = Topology(
        [
            Node("farm"),
            Node("db"),
            Node("api", groups=(Group(("farm",), via="runs_on"), Group(("db",)))),
            Node("web", groups=(Group(("farm",), via="runs_on"),)),
        ]
    )
    assert list(topo.nodes) == ["api", "db", "farm", "web"]
    assert topo.dependents("farm") == {"api", "web"}
    assert topo.dependents("web") == frozenset()
    assert topo.placements() == {"farm": frozenset({"api", "web"})}


def test_states_order_by_severity_with_unknown_between_up_and_degraded() -> None:
    assert sorted([State.DOWN, State.UNKNOWN, State.UP, State.DEGRADED]) == [
        State.UP,
        State.UNKNOWN,
        State.DEGRADED,
        State.DOWN,
    ]
    assert State.parse("Degraded") is State.DEGRADED
    with pytest.raises(ValueError, match="unknown state 'sideways'"):
        State.parse("sideways")


def estate() -> Topology:
    return Topology(
        [
            Node("farm-1", "farm"),
            Node("farm-2", "farm"),
            Node("host-a", "host", groups=(Group(("farm-1",), via="runs_on"),)),
            Node("host-b", "host", groups=(Group(("farm-1",), via="runs_on"),)),
            Node("db", groups=(Group(("farm-2",), via="runs_on"),)),
            Node("x", groups=(Group(("host-a", "farm-2"), via="runs_on"), Group(("db",)))),
            Node("y", groups=(Group(("host-b", "farm-2"), via="runs_on"),)),
            Node("z", groups=(Group(("host-a",), via="runs_on"), Group(("db",)))),
        ],
        source="test",
    )


def test_shared_needs_ranks_what_most_failures_need_the_more_specific_first() -> None:
    topo = estate()
    assert topo.shared_needs(["x", "y", "z"]) == [("farm-1", 3), ("farm-2", 3)]
    # Tied counts: host-a (it runs on farm-1) before farm-1, db before farm-2.
    assert topo.shared_needs(["x", "z"], limit=4) == [
        ("db", 2),
        ("host-a", 2),
        ("farm-1", 2),
        ("farm-2", 2),
    ]
    assert topo.shared_needs(["farm-1"]) == []


def test_depth_counts_the_levels_below_and_survives_cycles() -> None:
    topo = estate()
    assert [topo.depth(n) for n in ("farm-1", "host-a", "x")] == [0, 1, 2]
    loop = Topology(
        [Node("a", groups=(Group(("b",), soft=True),)), Node("b", groups=(Group(("a",)),))],
        source="test",
    )
    assert loop.depth("a") in (1, 2)  # bounded, whatever the way into the cycle
