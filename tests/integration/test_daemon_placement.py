"""A reload that moves a workload: told as a placement transition, and as
a notice when the move creates shared fate (the 2017 placement)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from watchdog.daemon import Daemon

pytestmark = pytest.mark.anyio

BEFORE = """\
version: 1
state: {{path: {state}}}
nodes:
  farm-a: {{kind: farm}}
  farm-b: {{kind: farm}}
  order-workflow: {{critical: true, runs_on: [farm-a]}}
  search: {{runs_on: [{search_on}]}}
  reporting: {{runs_on: [farm-b]}}
"""


async def test_a_move_onto_a_critical_workloads_farm_is_told_and_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "estate.yaml"
    state = tmp_path / "state.db"
    path.write_text(BEFORE.format(state=state, search_on="farm-b"))
    daemon = Daemon(path)
    try:
        path.write_text(BEFORE.format(state=state, search_on="farm-a"))
        with caplog.at_level(logging.INFO):
            assert (await daemon.reload()).ok
        lines = [r.getMessage() for r in caplog.records]
        assert "placement node=search runs_on=farm-b -> farm-a" in lines
        shared = [line for line in lines if line.startswith("placement created shared fate")]
        assert len(shared) == 1
        assert "farm-a runs critical order-workflow and non-critical search" in shared[0]
        # One notice for the sinks (the console here), said once.
        entries = daemon.outbox.due(daemon.clock() + 1, 10)
        assert [(e.notification.alert.key, e.notification.event) for e in entries] == [
            ("placement:farm-a", "notice")
        ]

        # Moving it back is a placement change too, and creates nothing.
        caplog.clear()
        path.write_text(BEFORE.format(state=state, search_on="farm-b"))
        with caplog.at_level(logging.INFO):
            assert (await daemon.reload()).ok
        lines = [r.getMessage() for r in caplog.records]
        assert "placement node=search runs_on=farm-a -> farm-b" in lines
        assert not any(line.startswith("placement created") for line in lines)
    finally:
        daemon.store.close()


async def test_a_reload_that_moves_nothing_says_nothing_of_placement(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(BEFORE.format(state=tmp_path / "s.db", search_on="farm-a"))
    daemon = Daemon(path)
    try:
        with caplog.at_level(logging.INFO):
            assert (await daemon.reload()).ok
        assert not any("placement" in r.getMessage() for r in caplog.records)
    finally:
        daemon.store.close()
