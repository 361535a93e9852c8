"""The live state, one probe result at a time, with an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from clocks import Clock

from alerts.transitions import Transition
from topology import Action, State, Verdict
from watchdog.config import DaemonConfig, load_config
from watchdog.live import LiveState

UP, UNKNOWN, DEGRADED, DOWN = State.UP, State.UNKNOWN, State.DEGRADED, State.DOWN

ESTATE = """\
version: 1
nodes:
  farm:
    kind: farm
    probes: [{tcp: "127.0.0.1:9001", failure_threshold: 2, success_threshold: 1}]
  search: {runs_on: [farm]}
  workflow:
    critical: true
    runs_on: [farm]
    depends_on: [{any_of: [antifraud], soft: true}]
    probes: [{http: "http://127.0.0.1:8081/", failure_threshold: 1}]
  antifraud:
    critical: true
    probes: [{exec: /bin/true, failure_threshold: 1}]
  farm-2: {kind: farm}
  pay: {critical: true, runs_on: [farm, farm-2]}
"""


def config(tmp_path: Path, text: str = ESTATE) -> DaemonConfig:
    path = tmp_path / "estate.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def live(tmp_path: Path, clock: Clock) -> LiveState:
    c = config(tmp_path)
    return LiveState(c.topology, c.probes, clock)


def all_up(live: LiveState) -> None:
    for key in ("farm#0", "workflow#0", "antifraud#0"):
        live.record(key, UP, "ok", 0.01)


def test_it_is_unknown_and_not_ready_until_every_probe_reports(live: LiveState) -> None:
    assert live.observed == {"farm": UNKNOWN, "workflow": UNKNOWN, "antifraud": UNKNOWN}
    assert live.states["search"] == UP
    assert not live.ready
    all_up(live)
    assert live.ready
    assert live.observed == {"farm": UP, "workflow": UP, "antifraud": UP}


def test_a_farm_going_down_takes_its_dependents_down_naming_the_farm(
    live: LiveState, clock: Clock
) -> None:
    all_up(live)
    clock.now = 1010.0
    assert live.record("farm#0", DOWN, "connect refused", None) == []  # threshold 2

    clock.now = 1020.0
    changes = live.record("farm#0", DOWN, "connect refused", None)

    assert changes == [
        Transition("farm", "observed", UP, DOWN, 1020.0, ("farm",), "connect refused"),
        Transition("farm", "effective", UP, DOWN, 1020.0, ("farm",)),
        Transition("search", "effective", UP, DOWN, 1020.0, ("farm",)),
        Transition("workflow", "effective", UP, DOWN, 1020.0, ("farm",)),
    ]
    workflow = live.status(["workflow"])[0]
    assert (workflow.observed, workflow.effective, workflow.since) == (UP, DOWN, 1020.0)
    assert workflow.causes == ("farm",)


def test_a_node_probed_up_that_the_topology_says_is_down_is_drift(
    live: LiveState, clock: Clock
) -> None:
    all_up(live)
    live.record("farm#0", DOWN, "connect refused", None)
    live.record("farm#0", DOWN, "connect refused", None)

    [drift] = live.drift()
    assert (drift.node, drift.effective, drift.causes) == ("workflow", DOWN, ("farm",))
    assert drift.message == (
        "workflow is probed up, but the topology says it is down because farm is down: "
        "the topology may be wrong"
    )


def test_recovery_recomputes_from_the_observations(live: LiveState, clock: Clock) -> None:
    all_up(live)
    live.record("farm#0", DOWN, "refused", None)
    live.record("farm#0", DOWN, "refused", None)
    clock.now = 2000.0
    changes = live.record("farm#0", UP, "ok", 0.01)

    assert [(t.node, t.view, t.old, t.new, t.root_cause) for t in changes] == [
        ("farm", "observed", DOWN, UP, ()),
        ("farm", "effective", DOWN, UP, ()),
        ("search", "effective", DOWN, UP, ()),
        ("workflow", "effective", DOWN, UP, ()),
    ]
    assert live.drift() == []


def test_a_soft_dependency_degrades_without_drift(live: LiveState) -> None:
    all_up(live)
    changes = live.record("antifraud#0", DOWN, "exit 2", None)
    assert [(t.node, t.view, t.new, t.root_cause) for t in changes] == [
        ("antifraud", "observed", DOWN, ("antifraud",)),
        ("antifraud", "effective", DOWN, ("antifraud",)),
        ("workflow", "effective", DEGRADED, ("antifraud",)),
    ]
    assert live.drift() == []


def test_the_what_if_takes_live_state_as_its_baseline(live: LiveState) -> None:
    all_up(live)
    assert live.what_if([Action("shutdown", "farm")]).verdict == Verdict.CRITICAL
    live.record("farm#0", DOWN, "refused", None)
    live.record("farm#0", DOWN, "refused", None)
    assert live.what_if([Action("shutdown", "farm")]).verdict == Verdict.OK


def test_an_unknown_probe_makes_a_maneuver_uncertain(live: LiveState) -> None:
    live.record("workflow#0", UP, "ok", 0.01)
    live.record("antifraud#0", UP, "ok", 0.01)
    impact = live.what_if([Action("shutdown", "farm-2")])
    assert impact.expected.verdict == Verdict.WARNING  # pay left without a spare
    assert (impact.verdict, impact.uncertain, impact.unknown) == (Verdict.CRITICAL, True, ("farm",))


def test_a_reload_keeps_what_unchanged_probes_have_seen(
    tmp_path: Path, live: LiveState, clock: Clock
) -> None:
    all_up(live)
    live.record("farm#0", DOWN, "refused", None)  # one of two failures
    changed = ESTATE.replace("/bin/true", "/bin/false") + "  reporting: {runs_on: [farm]}\n"
    new = config(tmp_path, changed)
    clock.now = 3000.0

    # The changed probe starts again from nothing.
    assert live.replace(new.topology, new.probes) == [
        Transition("antifraud", "effective", UP, UNKNOWN, 3000.0)
    ]
    assert "reporting" in live.topology
    assert live.observed == {"farm": UP, "workflow": UP, "antifraud": UNKNOWN}
    changes = live.record("farm#0", DOWN, "refused", None)  # the second failure counts
    assert ("reporting", "effective", DOWN) in [(t.node, t.view, t.new) for t in changes]


def test_nothing_is_concluded_until_every_probe_has_reported(live: LiveState) -> None:
    """A restarted daemon must not close an incident because a dependent's
    probe answered before its farm's did."""
    assert live.record("workflow#0", UP, "ok", 0.01) == []
    assert live.record("antifraud#0", UP, "ok", 0.01) == []
    changes = live.record("farm#0", DOWN, "refused", None)
    assert [(t.node, t.view, t.old, t.new, t.root_cause) for t in changes] == [
        ("antifraud", "observed", UNKNOWN, UP, ()),
        ("farm", "observed", UNKNOWN, DOWN, ("farm",)),
        ("workflow", "observed", UNKNOWN, UP, ()),
        ("antifraud", "effective", UNKNOWN, UP, ()),
        ("farm", "effective", UNKNOWN, DOWN, ("farm",)),
        ("search", "effective", UP, DOWN, ("farm",)),
        ("workflow", "effective", UNKNOWN, DOWN, ("farm",)),
    ]


def test_a_restart_resumes_the_start_of_incidents_still_open(live: LiveState, clock: Clock) -> None:
    # Open in the store before the restart: farm and its dependents since
    # 400, antifraud since 500 (it has recovered while the daemon was down).
    live.resume({"farm": 400.0, "search": 400.0, "workflow": 400.0, "antifraud": 500.0})
    live.record("farm#0", DOWN, "connect refused", None)
    live.record("workflow#0", UP, "ok", 0.01)
    live.record("antifraud#0", UP, "ok", 0.01)
    assert {f.node: f.since for f in live.failed()} == {
        "farm": 400.0,
        "search": 400.0,
        "workflow": 400.0,
    }
    # A node failing anew after the first picture starts now.
    clock.now += 10
    live.record("antifraud#0", DOWN, "exit 2", None)
    assert {f.node: f.since for f in live.failed()}["antifraud"] == clock.now


def test_an_inconclusive_result_is_shown_but_changes_no_verdict(live: LiveState) -> None:
    all_up(live)
    live.record("farm#0", DOWN, "connect refused", None)
    live.record("farm#0", DOWN, "connect refused", None)
    assert live.states["workflow"] == DOWN
    # The watchdog runs out of descriptors: no news about the farm, good or bad.
    for _ in range(5):
        changes = live.record(
            "farm#0", UNKNOWN, "no verdict: out of descriptors", None, inconclusive=True
        )
        assert changes == []
    assert live.states["workflow"] == DOWN
    [farm] = live.status(["farm"])
    assert farm.probes[0].verdict == DOWN
    assert (farm.probes[0].last_state, farm.probes[0].last_reason) == (
        UNKNOWN,
        "no verdict: out of descriptors",
    )
    # It still counts as having reported: a daemon in trouble gets ready.
    fresh = LiveState(live.topology, tuple(live.probes.values()), lambda: 1000.0)
    for key in live.probes:
        fresh.record(key, UNKNOWN, "no verdict: stall", None, inconclusive=True)
    assert fresh.ready


def test_prepare_works_through_the_failing_nodes_a_slice_at_a_time(live: LiveState) -> None:
    all_up(live)
    live.record("farm#0", DOWN, "refused", None)
    live.record("farm#0", DOWN, "refused", None)
    # farm, search and workflow down (farm-2 still carries pay).
    assert [live.prepare(1) for _ in range(3)] == [False, False, True]
    # A new pass starts after a complete one, and a change midway is
    # still reflected by `failed`, which owes nothing to the slices.
    assert live.prepare(2) is False
    live.record("antifraud#0", DOWN, "exit 2", None)
    assert live.prepare(2) is True
    assert {(f.node, f.state, f.causes) for f in live.failed()} == {
        ("farm", DOWN, ("farm",)),
        ("search", DOWN, ("farm",)),
        ("workflow", DOWN, ("farm",)),
        ("antifraud", DOWN, ("antifraud",)),
    }


def test_an_estate_without_probes_is_settled_at_once(tmp_path: Path, clock: Clock) -> None:
    c = config(tmp_path, "version: 1\nnodes:\n  a: {}\n  b: {depends_on: [a]}\n")
    live = LiveState(c.topology, c.probes, clock)
    assert live.settled
    assert live.failed() == []
