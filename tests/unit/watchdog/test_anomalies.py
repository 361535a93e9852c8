"""Log lines to anomalies, the clock driven by hand: spikes, new templates,
silence, watched patterns, and state across a restart."""

from __future__ import annotations

import json
import random
import re

import pytest

from watchdog.anomalies import Anomaly, LogAnalyzer, LogRules

POLL = 10.0
RULES = LogRules(interval_s=60.0, learning_s=600.0, silence_s=0)
KNOWN_ERRORS = (
    "ERROR db query {n} timed out after {n}ms",
    "ERROR upstream 10.0.0.{n} refused connection",
    "ERROR cache node {n} unreachable",
)
NEW_ERROR = "ERROR payment gateway rejected card {n}"


def info(n: int) -> str:
    return f"INFO GET /api/orders/{n} 200 in {n % 50}ms"


def errors(count: int, start: int = 0) -> list[str]:
    return [KNOWN_ERRORS[(start + i) % 3].format(n=start + i) for i in range(count)]


def run_minute(
    analyzer: LogAnalyzer, minute: int, error_count: int, extra: list[str] | None = None
) -> list[Anomaly]:
    """Feed one 60 s bucket as six polls (error lines spread over them, 5
    info lines each, `extra` in the last one); return active() after it."""
    per_poll = [error_count // 6 + (1 if i < error_count % 6 else 0) for i in range(6)]
    active: list[Anomaly] = []
    for i in range(6):
        now = minute * 60.0 + i * POLL
        lines = [info(minute * 100 + i * 10 + j) for j in range(5)]
        lines += errors(per_poll[i], start=minute * 7 + i)
        if i == 5 and extra:
            lines += extra
        analyzer.feed(lines, now)
        active = analyzer.active(now)
    return active


def learned(rules: LogRules = RULES, errors_per_minute: int = 5) -> LogAnalyzer:
    """An analyzer past its 10-minute learning period, every known error
    template seen, a baseline of exactly `errors_per_minute`."""
    analyzer = LogAnalyzer(rules, started_at=0.0)
    for minute in range(10):
        assert run_minute(analyzer, minute, errors_per_minute) == []
    return analyzer


def test_steady_noise_around_a_baseline_is_not_flagged() -> None:
    rng = random.Random(7)
    analyzer = learned()
    for minute in range(10, 130):
        assert run_minute(analyzer, minute, rng.randint(2, 8)) == []


def test_it_flags_a_spike_with_its_counts_and_clears_after() -> None:
    analyzer = learned()
    # In the spike's own minute, as soon as the count is over the threshold.
    analyzer.feed(errors(12, start=3), 600.0)
    (early,) = analyzer.active(600.0)
    assert early.reason == "error rate spike: 12 error lines in 1m vs usual 5±1"
    (spike,) = run_minute(analyzer, 10, 48)
    assert spike.kind == "error_spike"
    assert spike.reason == "error rate spike: 60 error lines in 1m vs usual 5±1"
    assert (spike.since, spike.count) == (600.0, 60)
    assert spike.template is not None
    assert spike.sample is not None
    assert spike.sample.startswith("ERROR ")
    # The minute after, the complete spike bucket is still the evidence.
    analyzer.feed([info(1)], 660.0)
    assert [a.reason for a in analyzer.active(660.0)] == [spike.reason]
    assert run_minute(analyzer, 11, 5) == [spike]
    # Back to normal for a whole bucket: cleared.
    assert run_minute(analyzer, 12, 5) == []


def test_a_spike_needs_the_minimum_count_over_a_quiet_baseline() -> None:
    # A baseline of no errors at all: the spread floor alone would call 5
    # errors a spike; min_count (10 by default) says how many it takes.
    # (Its error templates are new as well: only the spikes are looked at.)
    def spikes(error_count: int) -> list[Anomaly]:
        anomalies = run_minute(learned(errors_per_minute=0), 10, error_count)
        return [a for a in anomalies if a.kind == "error_spike"]

    assert spikes(RULES.min_count - 1) == []
    (spike,) = spikes(RULES.min_count)
    assert spike.reason == f"error rate spike: {RULES.min_count} error lines in 1m vs usual 0±1"


def test_a_spike_does_not_teach_the_baseline_to_ignore_the_next() -> None:
    analyzer = learned()
    run_minute(analyzer, 10, 200)
    assert run_minute(analyzer, 11, 5) != []
    assert run_minute(analyzer, 12, 5) == []
    (spike,) = run_minute(analyzer, 13, 60)
    assert spike.reason.startswith("error rate spike: 60 error lines in 1m vs usual ")


def test_nothing_is_flagged_during_learning() -> None:
    analyzer = LogAnalyzer(RULES, started_at=0.0)
    for minute in range(5):
        assert run_minute(analyzer, minute, 5) == []
    new = [NEW_ERROR.format(n=i) for i in range(3)]
    assert run_minute(analyzer, 5, 90, extra=new) == []
    for minute in range(6, 10):
        assert run_minute(analyzer, minute, 5) == []


def test_a_new_error_template_after_learning_is_flagged_once() -> None:
    analyzer = learned()
    (new,) = run_minute(analyzer, 10, 5, extra=[NEW_ERROR.format(n=i) for i in range(3)])
    assert new.kind == "new_error_template"
    assert (
        new.reason == "new error template: 'ERROR payment gateway rejected card <NUMBER>' (3 lines)"
    )
    assert (new.since, new.count) == (650.0, 3)
    assert new.template == "ERROR payment gateway rejected card <NUMBER>"
    assert new.sample == "ERROR payment gateway rejected card 0"
    # A second batch of the same template: the same anomaly, counting it.
    (again,) = run_minute(analyzer, 11, 5, extra=[NEW_ERROR.format(n=9), NEW_ERROR.format(n=8)])
    assert again.reason.endswith("(5 lines)")
    assert (again.since, again.count) == (650.0, 5)
    # Quiet for five intervals: cleared, and known from then on.
    for minute in range(12, 16):
        assert run_minute(analyzer, minute, 5) == [again]
    assert run_minute(analyzer, 16, 5) == []
    assert run_minute(analyzer, 17, 5, extra=[NEW_ERROR.format(n=1)]) == []


def test_a_new_template_that_persists_a_learning_period_becomes_normal() -> None:
    analyzer = learned()
    for minute in range(10, 20):
        (new,) = run_minute(analyzer, minute, 5, extra=[NEW_ERROR.format(n=minute)])
        assert new.count == minute - 9
    assert run_minute(analyzer, 20, 5, extra=[NEW_ERROR.format(n=1)]) == []


def test_error_templates_seen_during_learning_are_not_new() -> None:
    analyzer = LogAnalyzer(RULES, started_at=0.0)
    run_minute(analyzer, 0, 5, extra=[NEW_ERROR.format(n=1)])
    for minute in range(1, 10):
        run_minute(analyzer, minute, 5)
    assert run_minute(analyzer, 10, 5, extra=[NEW_ERROR.format(n=2)]) == []


def test_info_lines_are_not_mined_so_new_ones_are_not_flagged() -> None:
    analyzer = learned()
    assert run_minute(analyzer, 10, 5, extra=["INFO a brand new kind of message"]) == []


def test_configured_silence_is_flagged_and_cleared_when_lines_return() -> None:
    analyzer = LogAnalyzer(LogRules(silence_s=120.0, silence_is_down=True), started_at=0.0)
    analyzer.feed([info(1)], 100.0)
    analyzer.feed([], 220.0)
    assert analyzer.active(220.0) == []
    analyzer.feed([], 230.0)
    assert analyzer.active(230.0) == [
        Anomaly("silence", "no log line for 2m10s (limit 2m)", 100.0, 0, severity_down=True)
    ]
    analyzer.feed([info(2)], 240.0)
    assert analyzer.active(240.0) == []


def test_silence_with_no_line_at_all_counts_from_the_start() -> None:
    analyzer = LogAnalyzer(LogRules(silence_s=60.0), started_at=1000.0)
    (silence,) = analyzer.active(1070.0)
    assert (silence.reason, silence.since) == ("no log line for 1m10s (limit 1m)", 1000.0)


def test_learned_silence_is_three_times_the_usual_gap() -> None:
    rules = LogRules(interval_s=60.0, learning_s=600.0)
    analyzer = LogAnalyzer(rules, started_at=0.0)
    for i in range(11):  # a line a minute, through the learning period
        analyzer.feed([info(i)], i * 60.0)
        assert analyzer.active(i * 60.0) == []
    for t in range(610, 790, 10):
        analyzer.feed([], float(t))
        assert analyzer.active(float(t)) == []
    (silence,) = analyzer.active(790.0)
    assert silence == Anomaly("silence", "no log line for 3m10s (usual gap under 1m)", 600.0, 0)
    # The flagged silence does not become the usual gap.
    analyzer.feed([info(99)], 900.0)
    assert analyzer.active(900.0) == []
    (later,) = analyzer.active(1090.0)
    assert later.reason == "no log line for 3m10s (usual gap under 1m)"


def test_learned_silence_waits_for_the_learning_period() -> None:
    analyzer = LogAnalyzer(LogRules(interval_s=60.0, learning_s=600.0), started_at=0.0)
    analyzer.feed([info(1)], 0.0)
    analyzer.feed([info(2)], 10.0)
    assert analyzer.active(590.0) == []
    (silence,) = analyzer.active(600.0)
    assert silence.reason == "no log line for 9m50s (usual gap under 10s)"


def test_silence_zero_disables_it() -> None:
    analyzer = LogAnalyzer(LogRules(silence_s=0), started_at=0.0)
    analyzer.feed([info(1)], 10.0)
    assert analyzer.active(100_000.0) == []


def test_a_watched_pattern_is_flagged_with_a_sample_even_while_learning() -> None:
    rules = LogRules(watched=("OutOfMemory", "(?i)disk full"), silence_s=0)
    analyzer = LogAnalyzer(rules, started_at=0.0)
    oom = "WARN java.lang.OutOfMemoryError: Java heap space " + "x" * 300
    analyzer.feed([info(1), oom, "INFO DISK FULL on /var", oom], 30.0)
    assert analyzer.active(30.0) == [
        Anomaly(
            "watched_pattern",
            "watched pattern '(?i)disk full': 1 line",
            30.0,
            1,
            sample="INFO DISK FULL on /var",
        ),
        Anomaly(
            "watched_pattern",
            "watched pattern 'OutOfMemory': 2 lines",
            30.0,
            2,
            sample=oom[:199] + "…",
        ),
    ]
    analyzer.feed([info(2)], 80.0)
    assert len(analyzer.active(80.0)) == 2
    analyzer.feed([info(3)], 90.0)
    assert analyzer.active(90.0) == []


def test_state_round_trip_keeps_baselines_and_known_templates() -> None:
    analyzer = LogAnalyzer(RULES, started_at=0.0)
    run_minute(analyzer, 0, 4, extra=[NEW_ERROR.format(n=0)])
    for minute in range(1, 6):
        run_minute(analyzer, minute, 5)
    state = json.loads(json.dumps(analyzer.state()))
    restored = LogAnalyzer(
        RULES, started_at=9999.0, state=state, miner_state=analyzer.miner_state()
    )
    assert restored.state() == analyzer.state()
    for minute in range(6, 10):
        run_minute(analyzer, minute, 5)
        run_minute(restored, minute, 5)
    # Known before the restart: not new after it. The baseline is kept.
    extra = [NEW_ERROR.format(n=50)]
    assert (
        run_minute(restored, 10, 5, extra=extra) == run_minute(analyzer, 10, 5, extra=extra) == []
    )
    (spike,) = run_minute(restored, 11, 60)
    assert spike.reason == "error rate spike: 60 error lines in 1m vs usual 5±1"
    assert run_minute(analyzer, 11, 60) == [spike]
    assert restored.state() == analyzer.state()


@pytest.mark.parametrize("state", [{}, {"v": 2}, {"v": 1, "started": "x"}])
def test_garbage_analyzer_state_is_a_value_error(state: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a log analyzer state"):
        LogAnalyzer(RULES, started_at=0.0, state=state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"error_pattern": "(bad"}, "error_pattern: bad regex '(bad'"),
        ({"watched": ("ok", "(bad")}, "watched pattern '(bad': bad regex '(bad'"),
        ({"interval_s": 0.0}, "interval_s must be positive, not 0.0"),
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LogRules(**kwargs)  # type: ignore[arg-type]


def test_watched_patterns_are_told_apart_even_empty_matches_and_inner_groups() -> None:
    rules = LogRules(watched=("(?P<what>Out)OfMemory", "^$"), learning_s=0.0)
    analyzer = LogAnalyzer(rules, started_at=0.0)
    analyzer.feed(["java.lang.OutOfMemoryError", ""], 1.0)
    assert [a.reason for a in analyzer.active(1.0)] == [
        "watched pattern '(?P<what>Out)OfMemory': 1 line",
        "watched pattern '^$': 1 line",
    ]
