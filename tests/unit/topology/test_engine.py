"""The impact engine against the topology semantics of DESIGN.md: one
behaviour per test, on the design's worked example or on small topologies
written for the rule at hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

import topology
from topology import Action, Group, Impact, Node, State, Topology, Verdict
from topology.engine import EXHAUSTIVE_UNKNOWN

# The topology of DESIGN.md ("The topology file (version 1)"), verbatim.
WORKED_EXAMPLE = """\
version: 1
defaults:
  recovery_target: {critical: 10m, non_critical: 4h}
nodes:
  farm-oms-1:
    kind: farm
  search-index:
    kind: cluster
  orders-search:
    critical: false            # kind defaults to service
    runs_on: [farm-oms-1]
    depends_on: [search-index]
  orders-workflow:
    critical: true
    runs_on: [farm-oms-1]
    depends_on:
      - orders-store
      - {any_of: [antifraud], soft: true}
  antifraud:
    critical: true
    runs_on: [farm-pay-1, farm-pay-2]    # replicas: needs 1 of 2
  orders-store:
    kind: database
    critical: true
    runs_on: {any_of: [kv-a, kv-b, kv-c], min: 2}
  farm-pay-1: {kind: farm}
  farm-pay-2: {kind: farm}
  kv-a: {kind: host}
  kv-b: {kind: host}
  kv-c: {kind: host}
"""

UP, UNKNOWN, DEGRADED, DOWN = State.UP, State.UNKNOWN, State.DEGRADED, State.DOWN


@pytest.fixture(scope="module")
def estate() -> Topology:
    return topology.loads(WORKED_EXAMPLE)


def node(name: str, *groups: Group, critical: bool = False) -> Node:
    """A service needing `groups`."""
    return Node(name, critical=critical, groups=groups)


def needs(*members: str, min: int = 1, soft: bool = False) -> Group:
    """A `depends_on` group."""
    return Group(members, min=min, soft=soft, via="depends_on")


def runs_on(*members: str, min: int = 1) -> Group:
    """A `runs_on` group."""
    return Group(members, min=min, via="runs_on")


def shutdown(*names: str) -> list[Action]:
    return [Action("shutdown", name) for name in names]


def run(
    topo: Topology, actions: list[Action], observed: Mapping[str, State] | None = None
) -> Impact:
    return topology.what_if(topo, observed or {}, actions)


def after(impact: Impact) -> dict[str, State]:
    """Each impacted node's state after the actions."""
    return {i.node: i.after for i in impact.impacted}


def reasons(impact: Impact) -> dict[str, list[str]]:
    return {i.node: list(i.reason) for i in impact.impacted}


def entry(impact: Impact, name: str) -> dict[str, Any]:
    """The JSON entry of one impacted node."""
    found = [e for e in impact.to_json()["impacted"] if e["node"] == name]
    assert len(found) == 1, f"{name} is not impacted exactly once"
    result: dict[str, Any] = found[0]
    return result


# --- The worked example of DESIGN.md -------------------------------------------


def test_it_takes_the_workflow_down_with_the_farm_it_runs_on(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-oms-1"))

    assert after(impact) == {"farm-oms-1": DOWN, "orders-search": DOWN, "orders-workflow": DOWN}


def test_it_answers_critical_with_exit_code_2_when_a_critical_node_goes_down(
    estate: Topology,
) -> None:
    impact = run(estate, shutdown("farm-oms-1"))

    assert impact.verdict == Verdict.CRITICAL
    assert impact.exit_code == 2
    assert impact.uncertain is False


def test_it_explains_the_workflow_outage_by_the_farm_shutdown(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-oms-1"))

    assert reasons(impact) == {
        "orders-workflow": ["orders-workflow", "farm-oms-1"],
        "orders-search": ["orders-search", "farm-oms-1"],
        "farm-oms-1": ["farm-oms-1"],
    }


def test_it_answers_in_the_json_shape_of_the_design(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-oms-1"))

    assert impact.to_json() == {
        "verdict": "critical",
        "exit_code": 2,
        "uncertain": False,
        "actions": [{"action": "shutdown", "node": "farm-oms-1"}],
        "impacted": [
            {
                "node": "orders-workflow",
                "kind": "service",
                "critical": True,
                "before": "up",
                "after": "down",
                "recovery_target_s": 600,
                "transient": False,
                "no_spare": False,
                "reason": ["orders-workflow", "farm-oms-1"],
            },
            {
                "node": "farm-oms-1",
                "kind": "farm",
                "critical": False,
                "before": "up",
                "after": "down",
                "recovery_target_s": 14400,
                "transient": False,
                "no_spare": False,
                "reason": ["farm-oms-1"],
            },
            {
                "node": "orders-search",
                "kind": "service",
                "critical": False,
                "before": "up",
                "after": "down",
                "recovery_target_s": 14400,
                "transient": False,
                "no_spare": False,
                "reason": ["orders-search", "farm-oms-1"],
            },
        ],
    }


def test_it_has_every_key_the_design_shows_for_an_impacted_entry(estate: Topology) -> None:
    workflow = entry(run(estate, shutdown("farm-oms-1")), "orders-workflow")

    design = {
        "node": "orders-workflow",
        "critical": True,
        "before": "up",
        "after": "down",
        "recovery_target_s": 600,
        "transient": False,
        "no_spare": False,
        "reason": ["orders-workflow", "farm-oms-1"],
    }
    assert {key: workflow[key] for key in design} == design
    assert type(workflow["recovery_target_s"]) is int


def test_it_reports_a_recovery_target_written_in_the_file() -> None:
    topo = topology.loads(
        "version: 1\n"
        "nodes:\n"
        "  host: {kind: host}\n"
        "  api: {critical: true, recovery_target: 90s, runs_on: [host]}\n"
        "  batch: {recovery_target: 1.5s, runs_on: [host]}\n"
    )

    impact = run(topo, shutdown("host"))

    assert entry(impact, "api")["recovery_target_s"] == 90
    assert entry(impact, "batch")["recovery_target_s"] == 1.5
    assert entry(impact, "host")["recovery_target_s"] == 14400


# --- Redundancy --------------------------------------------------------------


def test_it_takes_a_node_down_when_its_last_replica_shuts_down(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-pay-1"), {"farm-pay-2": DOWN})

    assert after(impact) == {
        "antifraud": DOWN,
        "orders-workflow": DEGRADED,
        "farm-pay-1": DOWN,
    }
    assert impact.verdict == Verdict.CRITICAL
    assert impact.exit_code == 2


def test_it_leaves_a_baseline_failure_out_of_the_impacted_nodes(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-pay-1"), {"farm-pay-2": DOWN})

    assert "farm-pay-2" not in after(impact)
    assert entry(impact, "antifraud")["before"] == "up"
    assert entry(impact, "antifraud")["reason"] == ["antifraud", "farm-pay-1"]


def test_it_keeps_a_node_up_when_one_of_two_replicas_shuts_down(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-pay-1"))

    assert after(impact) == {"antifraud": UP, "farm-pay-1": DOWN}
    assert entry(impact, "antifraud")["no_spare"] is True


# --- k-of-n quorum -------------------------------------------------------------


@pytest.mark.parametrize("member", ["kv-a", "kv-b", "kv-c"])
def test_it_warns_when_one_member_of_a_two_of_three_quorum_shuts_down(
    estate: Topology, member: str
) -> None:
    impact = run(estate, shutdown(member))

    assert after(impact) == {"orders-store": UP, member: DOWN}
    assert entry(impact, "orders-store") == {
        "node": "orders-store",
        "kind": "database",
        "critical": True,
        "before": "up",
        "after": "up",
        "recovery_target_s": 600,
        "transient": False,
        "no_spare": True,
        "reason": ["orders-store", member],
    }
    assert impact.verdict == Verdict.WARNING
    assert impact.exit_code == 1


def test_it_is_critical_when_two_members_of_a_two_of_three_quorum_shut_down(
    estate: Topology,
) -> None:
    impact = run(estate, shutdown("kv-a", "kv-b"))

    assert after(impact) == {
        "orders-store": DOWN,
        "orders-workflow": DOWN,
        "kv-a": DOWN,
        "kv-b": DOWN,
    }
    assert reasons(impact)["orders-workflow"] == ["orders-workflow", "orders-store", "kv-a"]
    assert impact.verdict == Verdict.CRITICAL


# --- Soft dependencies -----------------------------------------------------------


def test_it_degrades_rather_than_downs_through_a_soft_dependency(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-pay-1", "farm-pay-2"))

    assert after(impact)["antifraud"] == DOWN
    assert after(impact)["orders-workflow"] == DEGRADED
    assert entry(impact, "orders-workflow")["reason"] == [
        "orders-workflow",
        "antifraud",
        "farm-pay-1",
    ]


def test_it_warns_when_a_critical_node_is_reached_only_through_a_soft_edge() -> None:
    topo = Topology(
        nodes=[
            node("cache"),
            node("shop", needs("cache", soft=True), critical=True),
            node("checkout", needs("shop"), critical=True),
        ]
    )

    impact = run(topo, shutdown("cache"))

    assert after(impact) == {"cache": DOWN, "shop": DEGRADED, "checkout": DEGRADED}
    assert impact.verdict == Verdict.WARNING
    assert impact.exit_code == 1


# --- Degraded members: available vs healthy ------------------------------------


def test_it_degrades_a_node_whose_only_member_is_degraded() -> None:
    topo = Topology(nodes=[node("db"), node("api", needs("db"))])

    states = topology.evaluate(topo, {"db": DEGRADED})

    assert dict(states) == {"api": DEGRADED, "db": DEGRADED}


def test_it_counts_a_degraded_member_as_available() -> None:
    topo = Topology(nodes=[node("a"), node("b"), node("app", runs_on("a", "b"))])

    states = topology.evaluate(topo, {"a": DEGRADED, "b": DOWN})

    assert states["app"] == DEGRADED


def test_it_does_not_count_a_degraded_member_as_healthy() -> None:
    topo = Topology(nodes=[node("a"), node("b"), node("app", runs_on("a", "b", min=2))])

    states = topology.evaluate(topo, {"a": DEGRADED})

    assert states["app"] == DEGRADED
    assert states.no_spare == frozenset()


def test_it_stays_up_while_enough_members_are_healthy() -> None:
    topo = Topology(nodes=[node("a"), node("b"), node("app", runs_on("a", "b"))])

    states = topology.evaluate(topo, {"a": DEGRADED})

    assert states["app"] == UP
    assert states.no_spare == frozenset()


def test_it_keeps_the_worst_of_a_nodes_observation_and_its_groups() -> None:
    topo = Topology(nodes=[node("db"), node("api", needs("db")), node("web", needs("api"))])

    states = topology.evaluate(topo, {"db": DOWN, "api": DEGRADED, "web": DOWN})

    assert dict(states) == {"api": DOWN, "db": DOWN, "web": DOWN}


def test_it_keeps_an_observed_failure_whatever_its_groups_say() -> None:
    topo = Topology(nodes=[node("db"), node("api", needs("db"))])

    states = topology.evaluate(topo, {"api": DEGRADED})

    assert dict(states) == {"api": DEGRADED, "db": UP}


# --- Cycles ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cycle() -> Topology:
    return Topology(
        nodes=[
            node("disk"),
            node("ping", needs("pong"), needs("disk")),
            node("pong", needs("ping")),
        ]
    )


def test_it_keeps_a_cycle_with_nothing_failed_up(cycle: Topology) -> None:
    states = topology.evaluate(cycle, {})

    assert dict(states) == {"disk": UP, "ping": UP, "pong": UP}
    assert states.not_up() == {}


def test_it_takes_a_cycle_down_when_something_below_it_fails(cycle: Topology) -> None:
    states = topology.evaluate(cycle, {"disk": DOWN})

    assert dict(states) == {"disk": DOWN, "ping": DOWN, "pong": DOWN}


def test_it_brings_a_cycle_back_up_when_its_cause_recovers(cycle: Topology) -> None:
    failed = topology.evaluate(cycle, {"disk": DOWN})
    recovered = topology.evaluate(cycle, {"disk": UP})

    assert failed.not_up() == {"disk": DOWN, "ping": DOWN, "pong": DOWN}
    assert dict(recovered) == {"disk": UP, "ping": UP, "pong": UP}


def test_it_takes_a_cycle_down_in_a_what_if(cycle: Topology) -> None:
    impact = run(cycle, shutdown("disk"))

    assert after(impact) == {"disk": DOWN, "ping": DOWN, "pong": DOWN}
    assert reasons(impact)["pong"] == ["pong", "ping", "disk"]


# --- Restarts are transient --------------------------------------------------------


def test_it_reports_a_restart_as_transient(estate: Topology) -> None:
    impact = run(estate, [Action("restart", "farm-oms-1")])

    assert after(impact) == {"farm-oms-1": DOWN, "orders-search": DOWN, "orders-workflow": DOWN}
    assert {i.node: i.transient for i in impact.impacted} == {
        "farm-oms-1": True,
        "orders-search": True,
        "orders-workflow": True,
    }
    assert impact.verdict == Verdict.CRITICAL


def test_it_marks_only_what_the_shutdown_alone_spares_as_transient(estate: Topology) -> None:
    impact = run(estate, [Action("restart", "kv-a"), Action("shutdown", "farm-oms-1")])

    assert {i.node: (i.after, i.no_spare, i.transient) for i in impact.impacted} == {
        "orders-workflow": (DOWN, False, False),
        "orders-store": (UP, True, True),
        "farm-oms-1": (DOWN, False, False),
        "orders-search": (DOWN, False, False),
        "kv-a": (DOWN, False, True),
    }


def test_it_treats_a_drain_like_a_shutdown(estate: Topology) -> None:
    drained = run(estate, [Action("drain", "farm-oms-1")]).to_json()
    shut = run(estate, shutdown("farm-oms-1")).to_json()

    assert drained["actions"] == [{"action": "drain", "node": "farm-oms-1"}]
    assert drained["impacted"] == shut["impacted"]
    assert drained["verdict"] == "critical"


def test_it_rejects_an_unknown_action_kind() -> None:
    with pytest.raises(ValueError, match="unknown action 'reboot'"):
        Action("reboot", "farm-oms-1")  # type: ignore[arg-type]


# --- Losing the last spare ------------------------------------------------------------


def test_it_marks_a_group_left_at_its_minimum_as_without_spare(estate: Topology) -> None:
    states = topology.evaluate(estate, {"kv-a": DOWN})

    assert states["orders-store"] == UP
    assert states.no_spare == frozenset({"orders-store"})


def test_it_never_marks_a_group_without_spares_to_lose(estate: Topology) -> None:
    states = topology.evaluate(estate, {})

    assert states.no_spare == frozenset()
    assert states.not_up() == {}


def test_it_lists_a_lost_spare_as_impacted_with_an_unchanged_state(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-pay-1"))

    assert entry(impact, "antifraud") == {
        "node": "antifraud",
        "kind": "service",
        "critical": True,
        "before": "up",
        "after": "up",
        "recovery_target_s": 600,
        "transient": False,
        "no_spare": True,
        "reason": ["antifraud", "farm-pay-1"],
    }


def test_it_warns_when_a_critical_node_loses_its_last_spare(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-pay-1"))

    assert impact.verdict == Verdict.WARNING
    assert impact.exit_code == 1


def test_it_stays_ok_when_a_non_critical_node_loses_its_last_spare() -> None:
    topo = Topology(nodes=[node("a"), node("b"), node("batch", runs_on("a", "b"))])

    impact = run(topo, shutdown("a"))

    assert after(impact) == {"a": DOWN, "batch": UP}
    assert [i.node for i in impact.impacted if i.no_spare] == ["batch"]
    assert impact.verdict == Verdict.OK


def test_it_does_not_report_a_spare_already_lost_in_the_baseline(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-pay-1"), {"kv-a": DOWN})

    assert after(impact) == {"antifraud": UP, "farm-pay-1": DOWN}
    assert [i.node for i in impact.impacted if i.no_spare] == ["antifraud"]


def test_it_reports_a_spare_lost_to_a_degraded_member_as_degraded_not_spare() -> None:
    topo = Topology(
        nodes=[node("a"), node("b"), node("c"), node("db", runs_on("a", "b", "c", min=2))]
    )

    impact = run(topo, shutdown("a"), {"b": DEGRADED})

    assert {i.node: (i.before, i.after, i.no_spare) for i in impact.impacted} == {
        "a": (UP, DOWN, False),
        "db": (UP, DEGRADED, False),
    }


def test_it_flags_a_lost_spare_on_a_node_that_also_gets_worse() -> None:
    topo = Topology(
        nodes=[
            node("a"),
            node("b"),
            node("cache"),
            node("api", runs_on("a", "b"), needs("cache", soft=True), critical=True),
        ]
    )

    impact = run(topo, shutdown("a", "cache"))

    assert entry(impact, "api") == {
        "node": "api",
        "kind": "service",
        "critical": True,
        "before": "up",
        "after": "degraded",
        "recovery_target_s": 600,
        "transient": False,
        "no_spare": True,
        "reason": ["api", "cache"],
    }
    assert impact.verdict == Verdict.WARNING


def test_it_warns_when_a_second_group_loses_its_last_spare() -> None:
    topo = Topology(
        nodes=[
            node("a"),
            node("b"),
            node("c"),
            node("d"),
            node("api", runs_on("a", "b"), needs("c", "d"), critical=True),
        ]
    )

    impact = run(topo, shutdown("c"), {"a": DOWN})

    assert [(i.node, i.no_spare) for i in impact.impacted] == [("api", True), ("c", False)]
    assert impact.verdict == Verdict.WARNING


# --- Baseline failures and empty what-ifs ----------------------------------------------


def test_it_changes_nothing_for_an_action_on_a_node_already_down(estate: Topology) -> None:
    impact = run(estate, shutdown("farm-oms-1"), {"farm-oms-1": DOWN})

    assert impact.to_json() == {
        "verdict": "ok",
        "exit_code": 0,
        "uncertain": False,
        "actions": [{"action": "shutdown", "node": "farm-oms-1"}],
        "impacted": [],
    }


def test_it_changes_nothing_for_an_action_on_a_node_down_through_propagation(
    estate: Topology,
) -> None:
    impact = run(estate, shutdown("orders-workflow"), {"farm-oms-1": DOWN})

    assert impact.impacted == ()
    assert impact.verdict == Verdict.OK


def test_it_reports_no_impact_without_actions(estate: Topology) -> None:
    impact = run(estate, [], {"kv-a": DOWN, "farm-pay-2": UNKNOWN})

    assert impact.to_json() == {
        "verdict": "ok",
        "exit_code": 0,
        "uncertain": False,
        "actions": [],
        "impacted": [],
    }


def test_it_takes_a_degraded_node_down_when_it_is_shut_down() -> None:
    topo = Topology(nodes=[node("db"), node("api", needs("db"))])

    impact = run(topo, shutdown("db"), {"db": DEGRADED})

    assert {i.node: (i.before, i.after) for i in impact.impacted} == {
        "db": (DEGRADED, DOWN),
        "api": (DEGRADED, DOWN),
    }


# --- Unknown states ----------------------------------------------------------------------


def test_it_shows_an_unknown_node_as_unknown(estate: Topology) -> None:
    states = topology.evaluate(estate, {"farm-oms-1": UNKNOWN})

    assert states.not_up() == {"farm-oms-1": UNKNOWN}
    assert states["orders-workflow"] == UP
    assert states["orders-search"] == UP


def test_it_counts_an_unknown_member_as_up(estate: Topology) -> None:
    states = topology.evaluate(estate, {"farm-pay-1": DOWN, "farm-pay-2": UNKNOWN})

    assert states.not_up() == {"farm-pay-1": DOWN, "farm-pay-2": UNKNOWN}
    assert states.no_spare == frozenset({"antifraud"})


def test_it_lets_a_real_failure_outrank_unknown() -> None:
    topo = Topology(nodes=[node("db"), node("api", needs("db"))])

    states = topology.evaluate(topo, {"db": DOWN, "api": UNKNOWN})

    assert states["api"] == DOWN


def test_it_reports_the_worst_case_when_an_unknown_replica_could_be_down(
    estate: Topology,
) -> None:
    impact = run(estate, shutdown("farm-pay-1"), {"farm-pay-2": UNKNOWN})

    assert impact.verdict == Verdict.CRITICAL
    assert impact.exit_code == 2
    assert impact.uncertain is True
    assert impact.unknown == ("farm-pay-2",)
    assert impact.expected.verdict == Verdict.WARNING
    assert impact.to_json() == {
        "verdict": "critical",
        "exit_code": 2,
        "uncertain": True,
        "actions": [{"action": "shutdown", "node": "farm-pay-1"}],
        "impacted": [
            {
                "node": "antifraud",
                "kind": "service",
                "critical": True,
                "before": "up",
                "after": "up",
                "recovery_target_s": 600,
                "transient": False,
                "no_spare": True,
                "reason": ["antifraud", "farm-pay-1"],
            },
            {
                "node": "farm-pay-1",
                "kind": "farm",
                "critical": False,
                "before": "up",
                "after": "down",
                "recovery_target_s": 14400,
                "transient": False,
                "no_spare": False,
                "reason": ["farm-pay-1"],
            },
        ],
        "unknown": ["farm-pay-2"],
        "if_unknown_down": {
            "verdict": "critical",
            "impacted": [
                {
                    "node": "antifraud",
                    "kind": "service",
                    "critical": True,
                    "before": "up",
                    "after": "down",
                    "recovery_target_s": 600,
                    "transient": False,
                    "no_spare": False,
                    "reason": ["antifraud", "farm-pay-1"],
                },
                {
                    "node": "orders-workflow",
                    "kind": "service",
                    "critical": True,
                    "before": "up",
                    "after": "degraded",
                    "recovery_target_s": 600,
                    "transient": False,
                    "no_spare": False,
                    "reason": ["orders-workflow", "antifraud", "farm-pay-1"],
                },
                {
                    "node": "farm-pay-1",
                    "kind": "farm",
                    "critical": False,
                    "before": "up",
                    "after": "down",
                    "recovery_target_s": 14400,
                    "transient": False,
                    "no_spare": False,
                    "reason": ["farm-pay-1"],
                },
            ],
        },
    }


def test_it_is_not_uncertain_about_an_unknown_node_irrelevant_to_the_action(
    estate: Topology,
) -> None:
    impact = run(estate, shutdown("farm-pay-1"), {"search-index": UNKNOWN})

    assert impact.verdict == Verdict.WARNING
    assert impact.uncertain is False
    assert impact.unknown == ()
    assert impact.if_unknown_down is None
    assert "if_unknown_down" not in impact.to_json()
    assert "unknown" not in impact.to_json()


def test_it_considers_each_unknown_node_down_on_its_own() -> None:
    topo = Topology(
        nodes=[
            node("p"),
            node("u1"),
            node("u2"),
            node("api", runs_on("p", "u1"), needs("u2"), critical=True),
        ]
    )
    # With u1 down and u2 up, the shutdown takes api down.
    assert run(topo, shutdown("p"), {"u1": DOWN}).verdict == Verdict.CRITICAL

    impact = run(topo, shutdown("p"), {"u1": UNKNOWN, "u2": UNKNOWN})

    assert impact.verdict == Verdict.CRITICAL
    assert impact.uncertain is True
    assert "u1" in impact.unknown


# --- Reason chains ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def diamond() -> Topology:
    # top needs right and left, both on base; aaa (smaller name) is a longer way.
    return Topology(
        nodes=[
            node("base"),
            node("right", needs("base")),
            node("left", needs("base")),
            node("aab", needs("base")),
            node("aaa", needs("aab")),
            node("top", needs("aaa"), needs("right"), needs("left"), critical=True),
        ]
    )


def test_it_chooses_the_shortest_reason_chain(diamond: Topology) -> None:
    impact = run(diamond, shutdown("base"))

    assert len(reasons(impact)["top"]) == 3


def test_it_breaks_ties_between_equally_short_chains_by_name(diamond: Topology) -> None:
    impact = run(diamond, shutdown("base"))

    assert reasons(impact) == {
        "base": ["base"],
        "left": ["left", "base"],
        "right": ["right", "base"],
        "aab": ["aab", "base"],
        "aaa": ["aaa", "aab", "base"],
        "top": ["top", "left", "base"],
    }


def test_it_breaks_ties_between_actions_by_name() -> None:
    topo = Topology(nodes=[node("x"), node("y"), node("app", needs("y"), needs("x"))])

    impact = run(topo, shutdown("y", "x"))

    assert reasons(impact)["app"] == ["app", "x"]


def test_it_never_explains_down_through_a_soft_edge() -> None:
    topo = Topology(
        nodes=[
            node("power"),
            node("a-cache", needs("power")),
            node("b-db", needs("power")),
            node("app", needs("a-cache", soft=True), needs("b-db"), critical=True),
        ]
    )

    impact = run(topo, shutdown("power"))

    assert after(impact)["app"] == DOWN
    assert reasons(impact)["app"] == ["app", "b-db", "power"]


def test_it_explains_degraded_through_a_soft_edge() -> None:
    topo = Topology(
        nodes=[
            node("power"),
            node("cache", needs("power")),
            node("app", needs("cache", soft=True), critical=True),
        ]
    )

    impact = run(topo, shutdown("power"))

    assert after(impact)["app"] == DEGRADED
    assert reasons(impact)["app"] == ["app", "cache", "power"]


def test_it_never_explains_down_through_a_degraded_member() -> None:
    topo = Topology(
        nodes=[
            node("a0"),
            node("b0"),
            node("b1", needs("b0")),
            node("a", needs("a0", soft=True)),
            node("b", needs("b1")),
            node("x", needs("a", "b", min=2), critical=True),
        ]
    )

    impact = run(topo, shutdown("a0", "b0"))

    assert after(impact)["a"] == DEGRADED
    assert after(impact)["x"] == DOWN
    assert reasons(impact)["x"] == ["x", "b", "b1", "b0"]


def test_it_explains_a_lost_spare_through_the_group_that_lost_it() -> None:
    topo = Topology(
        nodes=[
            node("c"),
            node("d"),
            node("e"),
            node("p"),
            node("q"),
            node("api", runs_on("p", "q"), needs("c", "d", "e"), critical=True),
        ]
    )

    impact = run(topo, shutdown("c", "p"))

    assert entry(impact, "api")["no_spare"] is True
    assert entry(impact, "api")["reason"] == ["api", "p"]


# --- fail(): one failure alone ------------------------------------------------------------


def test_it_reports_what_one_failure_takes_down(estate: Topology) -> None:
    failure = topology.fail(estate, "farm-oms-1")

    assert failure.node == "farm-oms-1"
    assert failure.down == frozenset({"orders-search", "orders-workflow"})
    assert failure.broken == ()


def test_it_counts_only_what_one_failure_takes_down(estate: Topology) -> None:
    failure = topology.fail(estate, "orders-store")

    assert failure.down == frozenset({"orders-workflow"})

    failure = topology.fail(Topology(nodes=[node("a"), node("b", needs("a", soft=True))]), "a")

    assert failure.down == frozenset()


def test_it_reports_the_redundant_groups_one_failure_breaks() -> None:
    topo = Topology(
        nodes=[
            node("farm"),
            node("vm1", runs_on("farm")),
            node("vm2", runs_on("farm")),
            node("app", runs_on("vm1", "vm2"), critical=True),
        ]
    )

    failure = topology.fail(topo, "farm")

    assert failure.down == frozenset({"app", "vm1", "vm2"})
    assert failure.broken == (("app", Group(("vm1", "vm2"), min=1, soft=False, via="runs_on")),)


def test_it_does_not_count_a_group_with_a_spare_left_as_broken(estate: Topology) -> None:
    failure = topology.fail(estate, "kv-a")

    assert failure.down == frozenset()
    assert failure.broken == ()


# --- Unknown names ----------------------------------------------------------------------


def test_it_rejects_an_unknown_node_in_observed_states(estate: Topology) -> None:
    with pytest.raises(ValueError, match="unknown node 'farm-oms-9'"):
        topology.evaluate(estate, {"farm-oms-9": DOWN})


def test_it_rejects_an_unknown_node_in_a_what_ifs_observed_states(estate: Topology) -> None:
    with pytest.raises(ValueError, match="unknown node 'farm-oms-9'"):
        run(estate, shutdown("farm-oms-1"), {"farm-oms-9": UP})


def test_it_rejects_an_unknown_node_in_actions(estate: Topology) -> None:
    with pytest.raises(ValueError, match="unknown node 'farm-oms-9'"):
        run(estate, shutdown("farm-oms-9"))


def test_it_rejects_an_unknown_node_to_fail(estate: Topology) -> None:
    with pytest.raises(ValueError, match="unknown node 'farm-oms-9'"):
        topology.fail(estate, "farm-oms-9")


def test_it_still_finds_the_worst_world_among_many_unknown_nodes() -> None:
    """Past EXHAUSTIVE_UNKNOWN suspects not every world is tried, but the
    all-down world is, so a maneuver never looks safe for lack of data."""
    replicas = [f"u{i}" for i in range(EXHAUSTIVE_UNKNOWN + 1)]
    topo = topology.Topology(
        [
            topology.Node("p"),
            *(topology.Node(name) for name in replicas),
            topology.Node(
                "api", critical=True, groups=(topology.Group(("p", *replicas), via="runs_on"),)
            ),
        ]
    )
    observed = dict.fromkeys(replicas, State.UNKNOWN)

    impact = topology.what_if(topo, observed, [Action("shutdown", "p")])

    assert (impact.verdict, impact.uncertain) == (Verdict.CRITICAL, True)
    assert impact.expected.verdict == Verdict.OK
    assert impact.unknown == tuple(sorted(replicas))


# --- Root causes of effective states ----------------------------------------------------


def test_it_names_the_failed_node_below_as_the_root_cause(estate: Topology) -> None:
    states = topology.evaluate(estate, {"farm-oms-1": DOWN, "orders-workflow": DOWN})

    assert states.causes("orders-workflow") == ("farm-oms-1",)
    assert states.causes("orders-search") == ("farm-oms-1",)
    assert states.causes("farm-oms-1") == ("farm-oms-1",)
    assert states.causes("antifraud") == ()


def test_it_names_every_cause_that_breaks_a_group_together(estate: Topology) -> None:
    states = topology.evaluate(estate, {"kv-a": DOWN, "kv-b": DOWN})

    assert states["orders-workflow"] == DOWN
    assert states.causes("orders-workflow") == ("kv-a", "kv-b")


def test_it_names_the_node_itself_when_its_requirements_are_fine(estate: Topology) -> None:
    states = topology.evaluate(estate, {"orders-workflow": DOWN, "kv-a": DOWN})

    assert states.causes("orders-workflow") == ("orders-workflow",)


def test_a_soft_cause_explains_degraded_not_down(estate: Topology) -> None:
    states = topology.evaluate(estate, {"farm-pay-1": DOWN, "farm-pay-2": DOWN})

    assert states["orders-workflow"] == DEGRADED
    assert states.causes("orders-workflow") == ("farm-pay-1", "farm-pay-2")
