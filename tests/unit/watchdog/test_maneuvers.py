"""Maneuver announcements: notices (said once, never resolved) that name
who asked for what and say what it does to critical nodes, in the words of
blast-radius: takes down, degrades, leaves without a spare."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres_server import Backend

from alerts.model import Notification
from topology import Action
from watchdog.config import load_config
from watchdog.live import LiveState
from watchdog.maneuvers import Maneuvers

ESTATE = """\
version: 1
nodes:
  farm: {kind: farm}
  search: {runs_on: [farm]}
  workflow: {critical: true, runs_on: [farm]}
  checkout: {critical: true, depends_on: [{any_of: [search], soft: true}]}
  pay-a: {kind: farm}
  pay-b: {kind: farm}
  payments: {critical: true, runs_on: [pay-a, pay-b]}
  batch: {}
"""


@pytest.fixture
def world(tmp_path: Path, backend: Backend) -> tuple[LiveState, Maneuvers]:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    config = load_config(path)
    live = LiveState(config.topology, config.probes, lambda: 0.0)
    return live, Maneuvers(backend.memory())


def said(note: Notification) -> tuple[str, str, str, str]:
    return note.id, note.event, note.alert.severity, note.alert.summary


def test_every_step_of_a_maneuver_is_a_notice_that_says_what_it_does(
    world: tuple[LiveState, Maneuvers],
) -> None:
    live, maneuvers = world

    def start(node: str, **options: bool) -> Notification:
        force = options.get("force", False)
        action = [Action("shutdown", node)]
        _, note = maneuvers.start(live, action, by="alice", reason="move", force=force, at=10)
        return note

    assert said(start("farm")) == (
        "maneuver:1:refused",
        "notice",
        "warning",
        "alice tried to shutdown farm (move): refused, it takes critical workflow down"
        " and degrades critical checkout",
    )
    assert said(start("farm", force=True)) == (
        "maneuver:2:running",
        "notice",
        "critical",
        "alice forced shutdown farm (move): it takes critical workflow down"
        " and degrades critical checkout",
    )
    assert said(start("search")) == (
        "maneuver:3:running",
        "notice",
        "warning",
        "alice started shutdown search (move): degrades critical checkout",
    )
    assert said(start("pay-a")) == (
        "maneuver:4:running",
        "notice",
        "warning",
        "alice started shutdown pay-a (move): leaves critical payments without a spare",
    )
    assert said(start("batch")) == (
        "maneuver:5:running",
        "notice",
        "info",
        "alice started shutdown batch (move): verdict ok",
    )
    _, ended = maneuvers.end(live, 3, at=20)
    assert said(ended) == (
        "maneuver:3:end",
        "notice",
        "info",
        "maneuver 3 by alice (shutdown search) ended: recovered",
    )
