"""Durations as written in the topology file (`500ms`, `10m`, `1h30m`), and
THE way a duration is shown to people, everywhere the watchdog shows one."""

from __future__ import annotations

import math
import re

__all__ = [
    "MAX_DURATION_S",
    "DurationTooLong",
    "bad_duration",
    "format_duration",
    "parse_duration",
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# Longer than anything the watchdog waits for or looks back on: a bound that
# keeps every duration finite and every date computed from one in range.
MAX_DURATION_S = 100 * 365 * 86400.0


class DurationTooLong(ValueError):
    """A duration written correctly that is longer than `MAX_DURATION_S`
    (or too long for a float at all)."""


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `500ms`, `30s`, `10m`, `4h`, `7d` or
    `1h30m`: always finite, at most `MAX_DURATION_S`. `ValueError` for
    anything else (`DurationTooLong`, a subclass, when only its length is
    wrong)."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(bad_duration(text))
    if not total <= MAX_DURATION_S:  # also refuses inf (and nan, never produced)
        raise DurationTooLong("duration too long")
    return total


def format_duration(seconds: float) -> str:
    """A duration the way people write it, and the one formatter of the
    watchdog (messages, alerts, the CLI, the API's words):

    - from 10 s up, whole seconds: `28s`, `9m30s`, `4h`, `1h30m`, `1d1h1m1s`;
    - from 1 s to 10 s, one decimal where there is one: `2.5s`, `3s`;
    - under 1 s, milliseconds: `812ms`, and one decimal under 10 ms: `2.3ms`.

    Rounds to the nearest unit shown (`9.96s` is `10s`, `999.6ms` is `1s`).
    Never raises: negative values get a `-`, NaN reads `unknown` and an
    infinite duration `forever`."""
    if math.isnan(seconds):
        return "unknown"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if math.isinf(seconds):
        return "forever"
    if seconds < 0.01:
        tenths_ms = round(seconds * 10_000)
        if tenths_ms < 100:
            return f"{tenths_ms / 10:g}ms" if tenths_ms else ("0s" if not seconds else "0ms")
        seconds = 0.01
    if seconds < 1:
        ms = round(seconds * 1000)
        if ms < 1000:
            return f"{ms}ms"
        seconds = 1.0
    if seconds < 10:
        tenths = round(seconds * 10)
        if tenths < 100:
            return f"{tenths / 10:g}s"
        seconds = 10.0
    whole = math.floor(seconds + 0.5)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)


def bad_duration(text: str) -> str:
    """What is said of `text` when it is not a duration, wherever it was
    given (the file, an option, an API parameter): the same words."""
    shown = text if len(text) <= 40 else text[:39] + "…"
    return (
        f"bad duration {shown!r}: expected a number and a unit (ms, s, m, h, d, w), "
        "e.g. '10m' or '1h30m'"
    )
