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
