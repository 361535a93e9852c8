"""Lint rules: each finds its weakness, names the nodes, and stays quiet on
the healthy shape next to it."""

from __future__ import annotations

import textwrap

from topology import loads
from topology.lint import Finding, lint


def findings(body: str) -> list[Finding]:
    text = "version: 1\nnodes:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    return lint(loads(text))


def rules(body: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.rule, f.severity, f.nodes) for f in findings(body)]


def test_it_finds_the_shared_fate_of_the_2017_outage() -> None:
    found = findings(
        """
        farm-oms-1: {kind: farm}
        orders-search: {runs_on: [farm-oms-1]}
        orders-workflow: {critical: true, runs_on: [farm-oms-1]}
        """
    )
    assert [str(f) for f in found] == [
        "error: shared-fate: farm-oms-1 runs critical orders-workflow and non-critical "
        "orders-search: a maneuver on farm-oms-1 meant for orders-search takes "
        "orders-workflow down",
        "warning: single-point-of-failure: farm-oms-1 alone takes critical orders-workflow down",
    ]
    assert found[0].nodes == ("farm-oms-1", "orders-workflow", "orders-search")


def test_it_sees_shared_fate_through_nested_placements() -> None:
    assert rules(
        """
        farm: {kind: farm}
        vm-1: {kind: vm, runs_on: [farm]}
        vm-2: {kind: vm, runs_on: [farm]}
        vm-3: {kind: vm, runs_on: [farm]}
        pay: {critical: true, runs_on: [vm-1, vm-3]}
        search: {runs_on: [vm-2]}
        """
    ) == [
        ("shared-fate", "error", ("farm", "pay", "search")),
        ("illusory-redundancy", "warning", ("pay", "farm")),
        ("single-point-of-failure", "warning", ("farm", "pay")),
    ]


def test_it_calls_shared_fate_a_warning_when_a_replica_survives() -> None:
    found = findings(
        """
        farm-a: {kind: farm}
        farm-b: {kind: farm}
        search: {runs_on: [farm-a]}
        pay: {critical: true, runs_on: [farm-a, farm-b]}
        """
    )
    assert [str(f) for f in found] == [
        "warning: shared-fate: farm-a runs critical pay and non-critical search: "
        "a maneuver on farm-a meant for search costs pay a spare"
    ]


def test_it_finds_a_critical_node_hard_depending_on_a_non_critical_one() -> None:
    found = findings(
        """
        reporting: {}
        cache: {}
        checkout: {critical: true, depends_on: [reporting, {any_of: [cache], soft: true}]}
        """
    )
    assert [str(f) for f in found] == [
        "warning: criticality-inversion: critical checkout hard-depends on non-critical reporting",
        "warning: single-point-of-failure: reporting alone takes critical checkout down",
    ]


def test_it_finds_a_recovery_target_inversion() -> None:
    found = findings(
        """
        ledger: {critical: true, recovery_target: 1h}
        checkout: {critical: true, recovery_target: 5m, depends_on: [ledger]}
        """
    )
    assert [str(f) for f in found] == [
        "warning: criticality-inversion: checkout (recovery target 5m) hard-depends on "
        "ledger (1h), whose recovery targets are longer"
    ]


def test_it_accepts_an_inversion_covered_by_enough_critical_members() -> None:
    assert (
        rules(
            """
            slow: {}
            fast: {critical: true}
            api: {critical: true, depends_on: [{any_of: [slow, fast], min: 1}]}
            """
        )
        == []
    )


def test_it_finds_single_points_of_failure_of_critical_nodes() -> None:
    assert rules(
        """
        dns: {kind: service}
        api: {critical: true, depends_on: [{any_of: [dns], soft: true}]}
        auth: {critical: true}
        gateway: {}
        web: {critical: true, depends_on: [auth, gateway]}
        """
    ) == [
        ("criticality-inversion", "warning", ("web", "gateway")),
        ("single-point-of-failure", "warning", ("gateway", "web")),
    ]


def test_it_finds_illusory_redundancy_of_replicas_on_one_farm() -> None:
    found = findings(
        """
        farm: {kind: farm}
        host-a: {kind: host, runs_on: [farm]}
        host-b: {kind: host, runs_on: [farm]}
        host-c: {kind: host}
        store: {kind: database, runs_on: {any_of: [host-a, host-b, host-c], min: 2}}
        """
    )
    assert [str(f) for f in found] == [
        "warning: illusory-redundancy: store.runs_on (host-a, host-b, host-c, min 2) "
        "is broken by the loss of any one of farm"
    ]


def test_it_finds_hard_cycles_but_not_soft_or_redundant_ones() -> None:
    found = findings(
        """
        a: {depends_on: [b]}
        b: {depends_on: [c]}
        c: {depends_on: [a]}
        d: {depends_on: [{any_of: [e], soft: true}]}
        e: {depends_on: [d]}
        f: {depends_on: [{any_of: [g, h]}]}
        g: {depends_on: [f]}
        h: {}
        """
    )
    assert [str(f) for f in found] == [
        "warning: hard-cycle: a -> b -> c -> a hard-need each other: a cold start can deadlock"
    ]


def test_it_is_silent_when_critical_and_other_workloads_live_apart() -> None:
    assert (
        rules(
            """
            farm-a: {kind: farm}
            farm-b: {kind: farm}
            farm-c: {kind: farm}
            farm-d: {kind: farm}
            store: {critical: true, kind: database, runs_on: [farm-a, farm-b]}
            checkout: {critical: true, runs_on: [farm-a, farm-b], depends_on: [store]}
            search: {runs_on: [farm-c, farm-d], depends_on: [store]}
            """
        )
        == []
    )


def test_findings_serialise_for_scripts() -> None:
    found = findings("farm: {}\nsvc: {critical: true, runs_on: [farm]}\n")
    assert [f.to_json() for f in found] == [
        {
            "rule": "single-point-of-failure",
            "severity": "warning",
            "nodes": ["farm", "svc"],
            "message": "farm alone takes critical svc down",
        }
    ]


def test_messages_name_a_few_nodes_and_count_the_rest() -> None:
    services = "".join(f"svc-{i:02}: {{runs_on: [farm]}}\n" for i in range(12))
    found = findings(f"farm: {{}}\ncore: {{critical: true, runs_on: [farm]}}\n{services}")
    shared = next(f for f in found if f.rule == "shared-fate")
    assert shared.message == (
        "farm runs critical core and non-critical svc-00, svc-01, svc-02, svc-03, svc-04, "
        "svc-05, svc-06, svc-07 (+4 more): a maneuver on farm meant for svc-00, svc-01, "
        "svc-02, svc-03, svc-04, svc-05, svc-06, svc-07 (+4 more) takes core down"
    )
    assert len(shared.nodes) == 14


def test_it_finds_critical_nodes_nothing_watches() -> None:
    found = findings(
        """
        farm: {kind: farm, probes: [{tcp: "127.0.0.1:9001"}]}
        db: {critical: true}
        api: {critical: true, runs_on: [farm]}
        cache: {depends_on: [db]}
        web: {critical: true, depends_on: [{any_of: [cache], soft: true}]}
        loop-a: {critical: true, depends_on: [loop-b]}
        loop-b: {depends_on: [loop-a, api]}
        """
    )
    unwatched = [str(f) for f in found if f.rule == "unwatched-critical"]
    assert unwatched == [
        "error: unwatched-critical: critical db has no probe and needs nothing that has one: "
        "its outage would go unseen",
        "error: unwatched-critical: critical web has no probe and needs nothing that has one: "
        "its outage would go unseen",
    ]


def test_it_does_not_ask_for_probes_in_a_file_that_has_none() -> None:
    assert [f for f in findings("db: {critical: true}\n") if f.rule == "unwatched-critical"] == []
