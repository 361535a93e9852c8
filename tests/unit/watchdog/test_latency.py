"""Latency baselines on deterministic sequences: steady jitter, steps up and
back, learning, percentiles, the saved state, and the verdict on results."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

import pytest

from topology import State
from watchdog.latency import (
    LatencyBaseline,
    LatencyRules,
    Percentiles,
    Regression,
    apply_regression,
    percentile,
    track_latency,
)
from watchdog.probes import ProbeResult

RULES = LatencyRules(window=60, tick=10)  # learning 6 ticks, 3 ticks in a row


def jittered(rng: random.Random, around_s: float, count: int) -> list[float]:
    """`count` latencies within ±10% of `around_s`."""
    return [around_s * rng.uniform(0.9, 1.1) for _ in range(count)]


def feed(baseline: LatencyBaseline, latencies: Iterable[float], start: float = 0.0) -> float:
    """Observe `latencies` one second apart from `start`; the next `now`."""
    now = start
    for latency in latencies:
        baseline.observe(latency, now)
        now += 1.0
    return now


def learned(rng: random.Random, rules: LatencyRules = RULES) -> tuple[LatencyBaseline, float]:
    """A baseline that learned a 40ms target, and the next `now`."""
    baseline = LatencyBaseline(rules)
    now = feed(baseline, jittered(rng, 0.040, rules.tick * rules.learning_ticks))
    assert baseline.baseline_s is not None
    return baseline, now


def regression_flags(
    baseline: LatencyBaseline, latencies: Iterable[float], start: float
) -> list[bool]:
    """Whether a regression was in force after each latency."""
    flags = []
    for offset, latency in enumerate(latencies):
        baseline.observe(latency, start + offset)
        flags.append(baseline.regression is not None)
    return flags


# -- percentiles ------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "expected"),
    [(1, 1.0), (10, 1.0), (11, 2.0), (50, 5.0), (51, 6.0), (90, 9.0), (95, 10.0), (100, 10.0)],
)
def test_percentile_is_the_nearest_rank(p: int, expected: float) -> None:
    # The smallest value that at least p% of the values are at or below.
    values = [7.0, 3.0, 10.0, 1.0, 5.0, 9.0, 2.0, 8.0, 4.0, 6.0]
    assert percentile(values, p) == expected


def test_percentile_of_a_hundred_values_is_the_value_of_that_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert [percentile(values, p) for p in (50, 95, 99)] == [50.0, 95.0, 99.0]


@pytest.mark.parametrize(("values", "p"), [([], 50), ([1.0], 0), ([1.0], 101)])
def test_percentile_refuses_no_values_or_a_p_outside_1_to_100(values: list[float], p: int) -> None:
    with pytest.raises(ValueError, match=r"percentile|no values"):
        percentile(values, p)


def test_percentiles_are_of_the_window() -> None:
    baseline = LatencyBaseline(LatencyRules(window=20, tick=5, learning_ticks=2))
    assert baseline.percentiles() is None
    feed(baseline, [i / 1000 for i in range(1, 21)])  # 1ms .. 20ms
    assert baseline.percentiles() == Percentiles(p50=0.010, p95=0.019, p99=0.020, samples=20)


def test_the_window_is_bounded_and_keeps_the_latest_samples() -> None:
    baseline = LatencyBaseline(LatencyRules(window=10, tick=5, learning_ticks=2))
    feed(baseline, [1.0] * 1000 + [float(i) for i in range(1, 11)])
    assert baseline.percentiles() == Percentiles(p50=5.0, p95=10.0, p99=10.0, samples=10)
    assert len(baseline.state()["samples"]) == 10
    assert len(baseline.state()["pending"]) < 5


# -- learning and steady jitter ---------------------------------------------


def test_it_has_no_verdict_while_learning() -> None:
    rng = random.Random(1)
    baseline = LatencyBaseline(RULES)
    # Wildly different ticks while learning: nothing to compare with yet.
    ticks = [jittered(rng, 0.010 * (1 + 20 * (i % 2)), RULES.tick) for i in range(5)]
    flags = regression_flags(baseline, [x for tick in ticks for x in tick], 0.0)
    assert not any(flags)
    assert baseline.baseline_s is None
    assert baseline.spread_s is None


def test_it_learns_the_median_of_the_learning_ticks() -> None:
    baseline = LatencyBaseline(LatencyRules(tick=2, learning_ticks=3))
    # Tick p95s (each tick's slowest of 2): 40ms, 44ms, and one odd 500ms.
    feed(baseline, [0.030, 0.040, 0.044, 0.041, 0.500, 0.010])
    assert baseline.baseline_s == pytest.approx(0.044)
    assert baseline.spread_s == pytest.approx(0.004)


def test_it_does_not_flag_steady_jitter() -> None:
    rng = random.Random(7)
    baseline, now = learned(rng)
    # 500 ticks of ±10% jitter, with an occasional slow answer.
    latencies = [x * (3 if rng.random() < 0.002 else 1) for x in jittered(rng, 0.040, 5000)]
    assert not any(regression_flags(baseline, latencies, now))
    assert baseline.baseline_s == pytest.approx(0.040, rel=0.15)


def test_it_does_not_flag_jitter_on_loopback_with_a_tiny_spread() -> None:
    rng = random.Random(3)
    baseline = LatencyBaseline(RULES)
    # 0.5ms answers that sometimes take 2ms: 4x, but under `min_delta_s`.
    latencies = [0.002 if rng.random() < 0.05 else rng.uniform(0.0004, 0.0006) for _ in range(3000)]
    assert not any(regression_flags(baseline, latencies, 0.0))


def test_a_lone_slow_tick_is_not_a_regression_and_is_learned_as_noise() -> None:
    rng = random.Random(11)
    baseline, now = learned(rng)
    usual = baseline.baseline_s
    assert usual is not None
    now = feed(baseline, jittered(rng, 0.200, RULES.tick), now)
    assert baseline.baseline_s == usual  # held back: a regression may follow
    flags = regression_flags(baseline, jittered(rng, 0.040, RULES.tick), now)
    assert not any(flags)
    # It did not: the slow tick was noise, and learned.
    assert baseline.baseline_s > usual + 0.1 * (0.150 - usual)


# -- regressions ------------------------------------------------------------


def test_it_flags_a_step_after_ticks_slow_ticks_with_the_numbers_in_its_reason() -> None:
    rng = random.Random(5)
    baseline, now = learned(rng)
    usual, spread = baseline.baseline_s, baseline.spread_s
    assert usual is not None
    assert spread is not None
    step_at = now
    flags = regression_flags(baseline, [0.120] * (RULES.tick * 4), step_at)
    # In force from the last sample of the third slow tick on, not before.
    assert flags.index(True) == RULES.tick * RULES.ticks - 1
    assert all(flags[RULES.tick * RULES.ticks - 1 :])

    regression = baseline.regression
    assert regression is not None
    assert regression.p95_s == 0.120
    assert regression.since == step_at  # the first answer of the first slow tick
    assert regression.ticks == 4
    # Slow ticks are not learned: judged against the baseline before the step.
    assert regression.baseline_s == usual == baseline.baseline_s
    assert regression.spread_s == spread
    assert regression.reason == (
        f"latency regression: p95 120ms vs usual {usual * 1000:.0f}ms"
        f"±{spread * 1000:.1f}ms for 4 ticks"
    )


def test_the_reason_reads_for_people() -> None:
    regression = Regression(p95_s=0.180, baseline_s=0.042, spread_s=0.006, since=0.0, ticks=3)
    assert regression.reason == "latency regression: p95 180ms vs usual 42ms±6ms for 3 ticks"
    loopback = Regression(p95_s=0.0125, baseline_s=0.0021, spread_s=0.0004, since=0.0, ticks=1)
    assert loopback.reason == "latency regression: p95 12ms vs usual 2.1ms±0.4ms for 1 tick"
    slow = Regression(p95_s=1.25, baseline_s=0.5, spread_s=0.05, since=0.0, ticks=5)
    # One formatter for every duration (topology.format_duration): one decimal under 10 s.
    assert slow.reason == "latency regression: p95 1.2s vs usual 500ms±50ms for 5 ticks"


def test_it_clears_after_ticks_normal_ticks() -> None:
    rng = random.Random(9)
    baseline, now = learned(rng)
    now = feed(baseline, [0.150] * (RULES.tick * 5), now)
    assert baseline.regression is not None
    flags = regression_flags(baseline, jittered(rng, 0.040, RULES.tick * 4), now)
    # Cleared by the last sample of the third normal tick, and stays so.
    assert flags.index(False) == RULES.tick * RULES.ticks - 1
    assert not any(flags[RULES.tick * RULES.ticks - 1 :])


def test_a_slow_tick_during_recovery_keeps_the_regression() -> None:
    rng = random.Random(13)
    baseline, now = learned(rng)
    now = feed(baseline, [0.150] * (RULES.tick * 3), now)
    now = feed(baseline, jittered(rng, 0.040, RULES.tick * 2), now)  # two normal ticks
    now = feed(baseline, [0.150] * RULES.tick, now)  # slow again: recovery starts over
    now = feed(baseline, jittered(rng, 0.040, RULES.tick * 2), now)
    regression = baseline.regression
    assert regression is not None
    assert regression.ticks == 4
    feed(baseline, jittered(rng, 0.040, RULES.tick), now)
    assert baseline.regression is None


def test_a_lasting_step_stays_flagged_until_relearned() -> None:
    rng = random.Random(17)
    baseline, now = learned(rng)
    usual = baseline.baseline_s
    flags = regression_flags(baseline, jittered(rng, 0.100, RULES.tick * 200), now)
    assert all(flags[RULES.tick * RULES.ticks - 1 :])
    assert baseline.baseline_s == usual  # the baseline did not follow
    # Re-learning is a new baseline, as after a reload: on the new normal,
    # which it then takes for usual.
    relearned = LatencyBaseline(RULES)
    later = feed(relearned, jittered(rng, 0.100, RULES.tick * RULES.learning_ticks), now)
    assert relearned.baseline_s == pytest.approx(0.105, abs=0.006)  # p95s of ±10%
    assert not any(regression_flags(relearned, jittered(rng, 0.100, RULES.tick * 20), later))


def test_a_step_down_is_not_a_regression() -> None:
    rng = random.Random(19)
    baseline, now = learned(rng)
    assert not any(regression_flags(baseline, jittered(rng, 0.005, 500), now))
    assert baseline.baseline_s is not None
    assert baseline.baseline_s < 0.010  # faster for good: learned


def test_it_flags_a_drift_before_a_static_threshold_of_ten_times_the_usual() -> None:
    rng = random.Random(23)
    baseline, now = learned(rng)
    # +4ms per tick from 40ms: 400ms after 90 ticks.
    flagged_at = None
    for tick in range(90):
        now = feed(baseline, jittered(rng, 0.040 + 0.004 * tick, RULES.tick), now)
        if baseline.regression is not None:
            flagged_at = 0.040 + 0.004 * tick
            break
    assert flagged_at is not None
    assert flagged_at < 0.100


def test_a_step_needs_the_ratio_and_the_absolute_floor_too() -> None:
    rng = random.Random(29)
    baseline, now = learned(rng)
    # 1.4x: many spreads above, but under `min_ratio`.
    assert not any(regression_flags(baseline, jittered(rng, 0.056, 300), now))
    tiny = LatencyBaseline(RULES)
    now = feed(tiny, jittered(rng, 0.001, 60))
    # 4x, but only 3ms above: under `min_delta_s`.
    assert not any(regression_flags(tiny, jittered(rng, 0.004, 300), now))


def test_it_refuses_bad_latencies_and_times() -> None:
    baseline = LatencyBaseline()
    for latency in (-0.001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="latency must be"):
            baseline.observe(latency, 0.0)
    with pytest.raises(ValueError, match="now must be"):
        baseline.observe(0.01, float("nan"))
    assert baseline.percentiles() is None


@pytest.mark.parametrize(
    "rules",
    [
        {"window": 0},
        {"tick": 0},
        {"learning_ticks": 0},
        {"ticks": 0},
        {"spreads": -1.0},
        {"min_ratio": 0.9},
        {"min_delta_s": -0.001},
        {"ewma_alpha": 0.0},
        {"ewma_alpha": 1.5},
    ],
)
def test_rules_refuse_nonsense(rules: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        LatencyRules(**rules)


# -- the saved state --------------------------------------------------------


def test_the_state_round_trips_through_json_mid_regression_and_mid_tick() -> None:
    rng = random.Random(31)
    original, now = learned(rng)
    now = feed(original, [0.150] * (RULES.tick * 3 + 4), now)
    assert original.regression is not None
    restored = LatencyBaseline.from_state(RULES, json.loads(json.dumps(original.state())))
    assert restored.state() == original.state()
    assert restored.regression == original.regression
    assert restored.percentiles() == original.percentiles()
    # Both go on exactly alike.
    tail = jittered(rng, 0.040, RULES.tick * 5)
    assert regression_flags(restored, tail, now) == regression_flags(original, tail, now)
    assert restored.state() == original.state()


def test_the_state_of_a_learning_baseline_round_trips() -> None:
    original = LatencyBaseline(RULES)
    feed(original, jittered(random.Random(37), 0.040, 25))
    restored = LatencyBaseline.from_state(RULES, json.loads(json.dumps(original.state())))
    assert restored.state() == original.state()
    assert restored.baseline_s is None


def test_a_state_is_cut_to_smaller_rules() -> None:
    original, _ = learned(random.Random(41))
    feed(original, [0.040] * 9)
    smaller = LatencyRules(window=20, tick=5)
    restored = LatencyBaseline.from_state(smaller, original.state())
    state = restored.state()
    assert len(state["samples"]) == 20
    assert len(state["pending"]) == 4
    assert restored.baseline_s == original.baseline_s


def _valid_state() -> dict[str, Any]:
    baseline, now = learned(random.Random(43))
    feed(baseline, [0.150] * (RULES.tick * 2 + 3), now)  # two slow ticks held back
    return baseline.state()


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        [],
        "state",
        {},
        {"version": 2},
        {"samples": []},
        {"version": 1},
        {"version": 1, "samples": "0.1"},
    ],
)
def test_a_state_that_is_not_a_mapping_of_this_version_is_refused(garbage: object) -> None:
    with pytest.raises(ValueError, match="latency state"):
        LatencyBaseline.from_state(RULES, garbage)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("samples", [0.1, "0.2"]),
        ("samples", [0.1, -0.2]),
        ("samples", [True]),
        ("pending", None),
        ("pending", [0.1, float("nan")]),
        ("tick_started", None),
        ("tick_started", "now"),
        ("learning", {}),
        ("baseline", "40ms"),
        ("baseline", -1.0),
        ("spread", None),
        ("spread", float("inf")),
        ("held", [0.1, None]),
        ("held_since", None),
        ("normal", -1),
        ("normal", 1.5),
        ("normal", True),
        ("regression", "yes"),
        ("regression", {"p95_s": 0.1}),
        ("regression", {"p95_s": 0.1, "baseline_s": 0.04, "spread_s": 0.004, "since": 0}),
        (
            "regression",
            {"p95_s": 0.1, "baseline_s": 0.04, "spread_s": 0.004, "since": 0, "ticks": 0},
        ),
    ],
)
def test_a_state_with_a_bad_field_is_refused(key: str, value: object) -> None:
    state = _valid_state()
    state[key] = value
    with pytest.raises(ValueError, match="latency state"):
        LatencyBaseline.from_state(RULES, state)


@pytest.mark.parametrize("key", sorted(_valid_state()))
def test_a_state_missing_a_field_is_refused(key: str) -> None:
    state = _valid_state()
    del state[key]
    with pytest.raises(ValueError, match="latency state"):
        LatencyBaseline.from_state(RULES, state)


def test_a_state_with_a_verdict_but_no_baseline_is_refused() -> None:
    state = _valid_state()
    assert state["held"]
    state["baseline"] = None
    with pytest.raises(ValueError, match="without a baseline"):
        LatencyBaseline.from_state(RULES, state)


# -- results ----------------------------------------------------------------


def in_regression() -> LatencyBaseline:
    baseline, now = learned(random.Random(47))
    feed(baseline, [0.150] * (RULES.tick * 3), now)
    assert baseline.regression is not None
    return baseline


def test_apply_regression_degrades_an_up_result() -> None:
    baseline = in_regression()
    result = apply_regression(ProbeResult(State.UP, "ok", 0.150), baseline)
    assert result.state is State.DEGRADED
    assert result.reason.startswith("latency regression: p95 150ms vs usual ")
    assert result.latency_s == 0.150


@pytest.mark.parametrize(
    "result",
    [
        ProbeResult(State.DOWN, "status 503", 0.150),
        ProbeResult(State.DOWN, "timeout after 3s", None),
        ProbeResult(State.UNKNOWN, "no free connection after 3s", None),
        ProbeResult(State.DEGRADED, "slow: 812ms over 500ms", 0.812),
    ],
)
def test_apply_regression_leaves_other_results_as_they_are(result: ProbeResult) -> None:
    assert apply_regression(result, in_regression()) is result


def test_apply_regression_leaves_results_alone_without_a_regression() -> None:
    baseline, _ = learned(random.Random(53))
    result = ProbeResult(State.UP, "ok", 0.150)
    assert apply_regression(result, baseline) is result


def test_track_latency_observes_answers_only() -> None:
    baseline = LatencyBaseline(LatencyRules(window=10, tick=5, learning_ticks=2))
    results = [
        ProbeResult(State.UP, "ok", 0.010),
        ProbeResult(State.DEGRADED, "slow: 812ms over 500ms", 0.812),
        ProbeResult(State.DOWN, "status 503", 0.001),  # an error page: not the usual answer
        ProbeResult(State.DOWN, "connect refused", None),
    ]
    assert [track_latency(result, baseline, 0.0) for result in results] == results
    percentiles = baseline.percentiles()
    assert percentiles is not None
    assert (percentiles.p50, percentiles.p99, percentiles.samples) == (0.010, 0.812, 2)


def test_track_latency_degrades_the_answer_that_completes_a_regression() -> None:
    rules = LatencyRules(window=10, tick=2, learning_ticks=2, ticks=2)
    baseline = LatencyBaseline(rules)
    verdicts = [
        track_latency(ProbeResult(State.UP, "ok", latency), baseline, float(now)).state
        for now, latency in enumerate([0.040, 0.041, 0.040, 0.042, 0.200, 0.210, 0.200, 0.220])
    ]
    assert verdicts == [State.UP] * 7 + [State.DEGRADED]
