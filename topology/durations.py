"""Durations as written in the topology file (`500ms`, `10m`, `1h30m`)."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `500ms`, `30s`, `10m`, `4h`, `7d` or
    `1h30m`; `ValueError` for anything else."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"bad duration {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """A duration the way people write it: `10m`, `4h`, `1h30m`, `1.5s`."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts = []
    rest = round(seconds, 3)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            count = int(rest // size)
            parts.append(f"{count}{unit}")
            rest = round(rest - count * size, 3)
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)
