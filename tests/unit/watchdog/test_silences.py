"""Which alerts a silence mutes: all root causes covered, no critical node
named; by node or by label; until it expires."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres_server import Backend

from alerts.model import Alert, Impacted
from topology import State
from watchdog.config import load_config
from watchdog.live import LiveState
from watchdog.silences import Silence, SilenceError, Silences

ESTATE = """\
version: 1
nodes:
  farm: {kind: farm}
  search: {runs_on: [farm], labels: {team: search}}
  reports: {labels: {team: search}}
  workflow: {critical: true, runs_on: [farm]}
"""


@pytest.fixture
def world(tmp_path: Path, backend: Backend) -> tuple[LiveState, Silences]:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    config = load_config(path)
    return LiveState(config.topology, config.probes, lambda: 0.0), Silences(backend.memory())


def outage(*causes: str, critical: bool = False) -> Alert:
    named = (Impacted("workflow", State.DOWN, 600, 0),) if critical else ()
    return Alert(
        key=f"outage:{','.join(causes)}",
        kind="outage",
        severity="warning",
        root_cause=causes,
        summary="",
        started_at=0,
        critical=named,
    )


def test_it_mutes_by_node_and_by_label_until_it_expires(world: tuple[LiveState, Silences]) -> None:
    live, silences = world
    by_node, note = silences.add(
        live,
        node="search",
        label=None,
        duration_s=3600,
        by="bob",
        reason="reindex",
        force=False,
        at=100,
    )
    assert (note.event, note.alert.key, note.alert.summary) == (
        "notice",
        f"silence:{by_node.id}",
        "bob silenced node search for 1h: reindex",
    )
    topology = live.topology
    assert silences.muting(outage("search"), topology, 200) == by_node
    assert silences.muting(outage("search", "reports"), topology, 200) is None
    by_label, _ = silences.add(
        live,
        node=None,
        label=("team", "search"),
        duration_s=60,
        by="bob",
        reason="x",
        force=False,
        at=100,
    )
    assert silences.muting(outage("search", "reports"), topology, 150) == by_label
    assert silences.muting(outage("search", "reports"), topology, 160) is None  # expired
    silences.expire(by_node.id, 300)
    assert silences.muting(outage("search"), topology, 301) is None


def test_it_never_mutes_an_alert_naming_a_critical_node(world: tuple[LiveState, Silences]) -> None:
    live, silences = world
    silences.add(
        live, node="farm", label=None, duration_s=3600, by="bob", reason="move", force=True, at=0
    )
    assert silences.muting(outage("farm", critical=True), live.topology, 10) is None
    assert silences.muting(outage("farm"), live.topology, 10) is not None


def test_it_refuses_what_critical_nodes_need_and_bad_requests(
    world: tuple[LiveState, Silences],
) -> None:
    live, silences = world
    cases = [
        ({"node": "farm"}, "farm is needed by critical nodes"),
        ({"node": "workflow"}, "workflow is needed by critical nodes"),
        ({"node": "nowhere"}, "unknown node 'nowhere'"),
        ({"node": "search", "duration_s": 0}, "a silence needs a duration"),
        ({"node": "search", "by": ""}, "say who silences (by) and why (reason)"),
        ({"node": None}, "silence either a node or a label"),
    ]
    for overrides, message in cases:
        args = {"node": None, "label": None, "duration_s": 60.0, "by": "bob", "reason": "r"}
        args.update(overrides)
        with pytest.raises(SilenceError, match=message.replace("(", r"\(").replace(")", r"\)")):
            silences.add(live, force=False, at=0, **args)  # type: ignore[arg-type]


def test_expire_answers_with_the_silence_as_now_ended_and_its_notice(
    world: tuple[LiveState, Silences],
) -> None:
    live, silences = world
    silence, _ = silences.add(
        live, node="reports", label=None, duration_s=3600, by="bob", reason="x", force=False, at=0
    )
    ended, note = silences.expire(silence.id, 720)
    assert (ended.id, ended.expires_at) == (silence.id, 720)
    assert silences.get(silence.id) == ended
    assert note is not None
    assert (note.id, note.event, note.at, note.alert.key, note.alert.severity) == (
        f"silence:{silence.id}:ended",
        "notice",
        720,
        f"silence:{silence.id}",
        "info",
    )
    assert note.alert.summary == (
        f"silence {silence.id} (node reports, by bob: x) ended by hand after 12m;"
        " its alerts are heard again"
    )
    # Already over: nothing changes, nothing is said.
    assert silences.expire(silence.id, 800) == (ended, None)


def add(
    live: LiveState,
    silences: Silences,
    at: float,
    duration_s: float,
    *,
    node: str | None = None,
    label: tuple[str, str] | None = None,
) -> Silence:
    """A silence of `node` or `label` by bob, from `at`."""
    silence, _ = silences.add(
        live,
        node=node,
        label=label,
        duration_s=duration_s,
        by="bob",
        reason="move",
        force=False,
        at=at,
    )
    return silence


def test_silences_that_run_out_are_told_once_and_those_ended_by_hand_not_again(
    world: tuple[LiveState, Silences],
) -> None:
    live, silences = world
    assert silences.ended(0) == []  # the first call starts the count
    short = add(live, silences, 0, 60, node="search")
    by_label = add(live, silences, 0, 120, label=("team", "search"))
    by_hand = add(live, silences, 0, 3600, node="reports")
    long = add(live, silences, 0, 3600, node="search")

    assert silences.ended(59) == []
    silences.expire(by_hand.id, 90)
    told = silences.ended(130)
    assert [(s.id, n.event, n.at, n.alert.key) for s, n in told] == [
        (short.id, "notice", 130, f"silence:{short.id}"),
        (by_label.id, "notice", 130, f"silence:{by_label.id}"),
    ]
    assert [n.alert.summary for _, n in told] == [
        f"silence {short.id} (node search, by bob: move) ran out after 1m;"
        " its alerts are heard again",
        f"silence {by_label.id} (label team=search, by bob: move) ran out after 2m;"
        " its alerts are heard again",
    ]
    # A route on the label hears of the silence of that label.
    assert dict(told[1][1].alert.labels) == {"team": "search"}
    assert silences.ended(130) == []
    assert silences.ended(3599) == []
    assert [s.id for s, _ in silences.ended(3600)] == [long.id]


def test_the_first_call_looks_back_to_when_it_was_told(tmp_path: Path, backend: Backend) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    config = load_config(path)
    live = LiveState(config.topology, config.probes, lambda: 0.0)
    store = backend.memory()
    silence = add(live, Silences(store), 0, 60, node="search")
    # A daemon started at 30 tells, at its first round, what ran out since.
    assert [s.id for s, _ in Silences(store, since=30).ended(100)] == [silence.id]
    assert Silences(store, since=70).ended(100) == []
