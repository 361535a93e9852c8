"""Durations as people write them, both ways."""

from __future__ import annotations

import math

import pytest

from topology import format_duration, parse_duration
from topology.durations import MAX_DURATION_S, DurationTooLong


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("4h", 14400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
    ],
)
def test_it_parses(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "10", "10 m", "m", "10minutes", "-5s", "1h 30m", "s10", "10mm"]
)
def test_it_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (30, "30s"),
        (600, "10m"),
        (14400, "4h"),
        (5400, "1h30m"),
        (90061, "1d1h1m1s"),
    ],
)
def test_it_formats_what_it_parses(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0023, "2.3ms"),
        (0.00004, "0ms"),
        (0.812, "812ms"),
        (0.9996, "1s"),
        (2.5, "2.5s"),
        (3.0, "3s"),
        (9.96, "10s"),
        (28.319, "28s"),
        (570.35, "9m30s"),
        (590.5, "9m51s"),
        (3600, "1h"),
        (7 * 86400, "7d"),
        (-5, "-5s"),
    ],
)
def test_it_shows_whole_seconds_from_10s_and_fractions_below(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(math.nan, "unknown"), (math.inf, "forever"), (-math.inf, "-forever"), (1e300, None)],
)
def test_it_never_fails_at_the_edges(seconds: float, text: str | None) -> None:
    shown = format_duration(seconds)
    if text is None:  # a huge duration: days and what is left, in digits
        assert shown.split("d")[0].isdigit()
    else:
        assert shown == text


@pytest.mark.parametrize("text", ["1" + "0" * 400 + "s", "1000000000w", "5300000000d"])
def test_it_refuses_a_duration_longer_than_a_century(text: str) -> None:
    with pytest.raises(DurationTooLong):
        parse_duration(text)
    assert parse_duration("5200w") == 5200 * 604800.0 <= MAX_DURATION_S
