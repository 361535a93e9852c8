"""Which alerts a silence mutes: all root causes covered, no critical node
named; by node or by label; until it expires."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.model import Alert, Impacted
from topology import State
from watchdog.config import load_config
from watchdog.live import LiveState
from watchdog.silences import SilenceError, Silences
from watchdog.store import Store

ESTATE = """\
version: 1
nodes:
  farm: {kind: farm}
  search: {runs_on: [farm], labels: {team: search}}
  reports: {labels: {team: search}}
  workflow: {critical: true, runs_on: [farm]}
"""


@pytest.fixture
def world(tmp_path: Path) -> tuple[LiveState, Silences]:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    config = load_config(path)
    return LiveState(config.topology, config.probes, lambda: 0.0), Silences(
        Store.open(":memory:", clock=lambda: 0.0)
    )


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
    assert note.alert.summary == "bob silenced node search for 1h: reindex"
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


def test_expire_answers_with_the_silence_as_now_ended(world: tuple[LiveState, Silences]) -> None:
    live, silences = world
    silence, _ = silences.add(
        live, node="reports", label=None, duration_s=3600, by="bob", reason="x", force=False, at=0
    )
    ended = silences.expire(silence.id, 100)
    assert (ended.id, ended.expires_at) == (silence.id, 100)
    assert silences.get(silence.id) == ended
