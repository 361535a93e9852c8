"""The keys of a `log` probe in the file, read into a `LogSpec`:

probes:
  - log: /var/log/orders/workflow*.log     # a path or glob (relative: to the file)
    interval: 10s                          # how often it is read (default 10s)
    from: end                              # or start (files found at the very first start)
    error_pattern: '\\b(ERROR|FATAL)\\b'    # what an error-level line is (a regex)
    watch: [OutOfMemory, 'deadlock detected']   # regexes that always matter
    rate_interval: 1m                      # error lines are counted per this
    learning: 1h                           # no spike or new-template verdict before
    spike_factor: 4                        # spike: count > baseline + 4 spreads ...
    min_errors: 10                         # ... and at least 10 error lines
    silence: learn                         # or a duration, or off
    silence_means: degraded                # or down
    masks: [uuid, ip, hex, duration, number, {order_id: 'ORD-\\d+'}]
    max_templates: 1000
    max_line_bytes: 16384
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from topology import format_duration, parse_duration
from topology.document import Reader, quote, suggest
from topology.yamltree import MappingNode, YamlNode
from watchdog.anomalies import DEFAULT_ERROR_PATTERN, LogRules
from watchdog.logmine import DEFAULT_MASKS, MASKS, MinerConfig
from watchdog.probes.log import LogSpec

__all__ = ["LOG_KEYS", "read_log_spec"]

LOG_KEYS = (
    "from",
    "error_pattern",
    "watch",
    "rate_interval",
    "learning",
    "spike_factor",
    "min_errors",
    "silence",
    "silence_means",
    "masks",
    "max_templates",
    "max_line_bytes",
)

_DAY = 86400.0
# Bounds of the numbers (see the table in watchdog.config), (at least, at most).
_DURATIONS = {"rate_interval": (1.0, _DAY), "learning": (0.0, 90 * _DAY)}
_SILENCE_S = (1.0, 30 * _DAY)
_NUMBERS = {
    "spike_factor": (1, 1000),
    "min_errors": (1, 1_000_000),
    "max_templates": (1, 100_000),
    # A line is held whole until its end: more than this is not a log line.
    "max_line_bytes": (1, 1024 * 1024),
}


def read_log_spec(
    reader: Reader, values: Mapping[str, YamlNode], path: str, base: Path
) -> LogSpec | None:
    """The spec of the log probe whose keys are `values`; problems go to
    `reader` (each with its line), and None comes back when there are any."""
    before = len(reader.problems)
    paths = reader.string(values["log"], f"{path}.log", "a file path or glob")
    if paths == "":
        reader.problem(values["log"], f"{path}.log", "expected a file path or glob, got ''")
        paths = None
    if paths is not None and not Path(paths).is_absolute():
        paths = str(base / paths)
    from_start = False
    if "from" in values:
        where = reader.string(values["from"], f"{path}.from", "end or start")
        if where not in (None, "end", "start"):
            reader.problem(
                values["from"], f"{path}.from", f"expected end or start, got {quote(where)}"
            )
        from_start = where == "start"
    error_pattern = DEFAULT_ERROR_PATTERN
    if "error_pattern" in values:
        error_pattern = _regex(reader, values["error_pattern"], f"{path}.error_pattern") or ""
    watched: list[str] = []
    if "watch" in values:
        items = reader.sequence(values["watch"], f"{path}.watch", "a list of regexes") or []
        for i, item in enumerate(items):
            regex = _regex(reader, item, f"{path}.watch[{i}]")
            if regex is not None:
                watched.append(regex)
    durations: dict[str, float] = {}
    for key, (least, most) in _DURATIONS.items():
        if key in values:
            got = reader.duration(
                values[key],
                f"{path}.{key}",
                positive=key != "learning",
                minimum=least or None,
                maximum=most,
            )
            if got is not None:
                durations[key] = got
    numbers: dict[str, int] = {}
    for key, (low, high) in _NUMBERS.items():
        if key in values:
            got_int = reader.integer(values[key], f"{path}.{key}", minimum=low, maximum=high)
            if got_int is not None:
                numbers[key] = got_int
    silence_s: float | None = None
    if "silence" in values:
        node = values["silence"]
        text = reader.string(node, f"{path}.silence", "a duration, learn or off")
        if text == "off":
            silence_s = 0.0
        elif text is not None and text != "learn":
            try:
                silence_s = parse_duration(text)
            except ValueError:
                silence_s = None
            if silence_s is None or silence_s <= 0:
                reader.problem(
                    node,
                    f"{path}.silence",
                    f"expected a duration such as 10m, learn or off, got {quote(text)}",
                )
            elif not _SILENCE_S[0] <= silence_s <= _SILENCE_S[1]:
                shortest, longest = (format_duration(bound) for bound in _SILENCE_S)
                reader.problem(
                    node,
                    f"{path}.silence",
                    f"must be from {shortest} to {longest}, got {quote(text)}",
                )
    silence_is_down = False
    if "silence_means" in values:
        means = reader.string(values["silence_means"], f"{path}.silence_means", "degraded or down")
        if means not in (None, "degraded", "down"):
            reader.problem(
                values["silence_means"],
                f"{path}.silence_means",
                f"expected degraded or down, got {quote(means)}",
            )
        silence_is_down = means == "down"
    masks = _masks(reader, values["masks"], f"{path}.masks") if "masks" in values else DEFAULT_MASKS
    if len(reader.problems) != before or paths is None:
        return None
    miner = MinerConfig(masks=masks, max_clusters=numbers.get("max_templates", 1000))
    rules = LogRules(
        error_pattern=error_pattern,
        interval_s=durations.get("rate_interval", 60.0),
        learning_s=durations.get("learning", 3600.0),
        spike_factor=float(numbers.get("spike_factor", 4)),
        min_count=numbers.get("min_errors", 10),
        silence_s=silence_s,
        silence_is_down=silence_is_down,
        watched=tuple(watched),
        miner=miner,
    )
    max_line = numbers.get("max_line_bytes", 16384)
    return LogSpec(
        paths,
        rules=rules,
        from_start=from_start,
        max_line_bytes=max_line,
        max_bytes_per_read=max(8 * 1024 * 1024, 2 * max_line),
    )


def _regex(reader: Reader, node: YamlNode, path: str) -> str | None:
    pattern = reader.regex(node, path)
    return None if pattern is None else pattern.pattern


def _masks(reader: Reader, node: YamlNode, path: str) -> tuple[str | tuple[str, str], ...]:
    """Built-in mask names, and `{name: regex}` for masks of one's own."""
    out: list[str | tuple[str, str]] = []
    items = reader.sequence(node, path, "a list of masks") or []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if isinstance(item, MappingNode):
            for name, value in reader.items(reader.mapping(item, where) or {}):
                regex = _regex(reader, value, f"{where}.{name}")
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    reader.problem(item, where, f"mask name {quote(name)} is not an identifier")
                elif regex is not None:
                    out.append((name, regex))
            continue
        word = reader.string(item, where, "a mask name or {name: regex}")
        if word is not None and word not in MASKS:
            hint = suggest(word, MASKS) or f" (built-in: {', '.join(MASKS)})"
            reader.problem(item, where, f"unknown mask {quote(word)}{hint}")
        elif word is not None:
            out.append(word)
    return tuple(out)
