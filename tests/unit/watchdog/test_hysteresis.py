"""Probe results to verdicts, one tick at a time."""

from __future__ import annotations

import pytest

from topology import State
from watchdog.hysteresis import Hysteresis

UP, DEGRADED, DOWN, UNKNOWN = State.UP, State.DEGRADED, State.DOWN, State.UNKNOWN


def feed(h: Hysteresis, *results: State) -> list[State]:
    return [h.update(r) for r in results]


def test_it_is_unknown_until_the_first_result_which_it_takes_as_is() -> None:
    h = Hysteresis()
    assert h.state == UNKNOWN
    assert feed(h, DOWN) == [DOWN]


def test_it_needs_failure_threshold_failures_in_a_row() -> None:
    h = Hysteresis(failure_threshold=3, success_threshold=2)
    assert feed(h, UP, DOWN, DOWN, UP, DOWN, DOWN, DOWN) == [UP, UP, UP, UP, UP, UP, DOWN]


def test_it_needs_success_threshold_successes_in_a_row() -> None:
    h = Hysteresis(failure_threshold=1, success_threshold=2)
    assert feed(h, DOWN, UP, DOWN, UP, UP) == [DOWN, DOWN, DOWN, DOWN, UP]


def test_it_moves_to_the_latest_of_a_run_of_worse_results() -> None:
    h = Hysteresis(failure_threshold=2)
    assert feed(h, UP, DEGRADED, DOWN, DEGRADED) == [UP, UP, DOWN, DOWN]


def test_a_result_equal_to_the_verdict_breaks_a_run() -> None:
    h = Hysteresis(failure_threshold=2, success_threshold=2)
    assert feed(h, DEGRADED, DOWN, DEGRADED, DOWN, DEGRADED, UP, DEGRADED, UP) == [DEGRADED] * 8


def test_a_flapping_target_does_not_flap_the_verdict() -> None:
    h = Hysteresis(failure_threshold=3, success_threshold=2)
    assert set(feed(h, UP, *[DOWN, UP] * 20)) == {UP}


@pytest.mark.parametrize(("failure", "success"), [(0, 1), (1, 0)])
def test_it_refuses_thresholds_below_one(failure: int, success: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Hysteresis(failure, success)
