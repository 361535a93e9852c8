"""Logging to stderr: readable lines by default, one JSON object per line
for log shippers (`--log-format json`). The handler also keeps a flood of
one error from drowning the rest (a few lines per distinct message per
minute, then how many more), never prints a traceback for the daemon's own
resource exhaustion, and masks every registered secret.

Every line starts with its time, RFC 3339 in UTC (`2024-05-01T10:00:00Z`
in text, with milliseconds in JSON), as the console sink's alert lines do.

A JSON line has `time`, `level`, `logger`, `message` (as the text line
shows it), `error` (a traceback, if any) and one key per field of the
message: the `key=value` pairs a log call writes in its message are lifted
into keys, so that no call has to change for a shipper to filter on them.
They are read from the call's template, not from the finished message, so
that a value with spaces stays whole and a value that looks like a pair
adds no key: `log.warning("delivery failed sink=%s attempt=%d error=%s",
name, 2, err)` gives `"sink": "slack", "attempt": 2, "error": "timeout
after 30s"` (`%d`, `%i` and `%f`-like values are numbers, the rest text),
beside the unchanged `message`. A value runs to the next space; a pair
written in a message logged without arguments is lifted as text. Fields
given with `extra=` are keys too, and win over a lifted pair of the same
name; neither replaces `time`, `level`, `logger` or `message`, nor the
`error` of a record with a traceback.
`color_message`, the ANSI-coloured copy of its message that uvicorn adds
to its records, is dropped."""

from __future__ import annotations

import copy
import errno
import functools
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import quote, quote_plus

__all__ = [
    "BURST",
    "MASK",
    "UNLIMITED",
    "WINDOW_S",
    "LogFormat",
    "LogHandler",
    "Secrets",
    "configure",
]

LogFormat = Literal["text", "json"]

# What a secret becomes in the log.
MASK = "***"
# The flood limit: at most BURST lines per distinct message per WINDOW_S.
# More than one, so that a few lines sharing a template (the transitions of
# critical nodes) are all shown in a quiet minute; a flood is cut to BURST.
WINDOW_S = 60.0
BURST = 5
# Loggers whose every line is a distinct event worth keeping, however many
# share a template: the estate's state changes (each is also in the store).
UNLIMITED = frozenset({"watchdog.transitions"})
# Errors that say the daemon itself ran out of something: a traceback tells
# nothing more, and thousands of them would make things worse.
_EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How far down `__cause__`/`__context__` an exhaustion is looked for (an
# httpx.ConnectError wraps the OSError).
_CHAIN_DEPTH = 8
# Distinct messages remembered at once; past it, lines pass unlimited (a
# logger that formats its own messages, f-string style, must not grow this).
_MAX_KEYS = 10_000
# Set on the copy of a record the handler formats: the notes to append.
_NOTES = "_watchdog_notes"

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", _NOTES}
# Extra fields that are not worth a key: uvicorn's copy of its message in
# ANSI colours.
_DROPPED = frozenset({"color_message"})
# The keys of a JSON line that no field replaces (`error` is a field's
# unless the record carries a traceback).
_RESERVED = frozenset({"time", "level", "logger", "message"})
# A `key=value` pair in a message template: the key starts the message or
# follows a space or an opening bracket (not `?a=b` inside a URL); the
# value runs to the next space.
_PAIR = re.compile(r"(?:^|(?<=[\s(\[]))(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>\S+)")
# A printf-style conversion, as `%` formatting reads it.
_CONVERSION = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +\-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?"
    r"(?P<type>[diouxXeEfFgGcrsa%])"
)


class Secrets:
    """The values the log must never show. Each one, and its percent-encoded
    forms (as it appears inside a URL), is replaced by `***` wherever it
    appears in a line: message, arguments, `extra=` fields, exception text.
    Safe to add to from any thread."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        # Longest first, so that a secret containing another is masked whole.
        self._values: tuple[str, ...] = ()
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Mask `value` in every line from now on (an empty value is ignored:
        it would mask everything)."""
        if not value:
            return
        forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
        with self._lock:
            merged = set(self._values) | forms
            self._values = tuple(sorted(merged, key=lambda v: (-len(v), v)))

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> tuple[str, ...]:
        """Every value masked now (to hand to another process)."""
        return self._values

    def redact(self, text: str) -> str:
        """`text` with every secret replaced by `***`."""
        for value in self._values:  # a snapshot: `add` replaces the tuple
            if value in text:
                text = text.replace(value, MASK)
        return text

    def redact_value(self, value: Any) -> Any:
        """A JSON-ready copy of `value` with every secret masked: strings are
        redacted, containers walked, anything else turned into its (redacted)
        text, as `json.dumps(default=str)` would have shown it."""
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(v) for v in value]
        return self.redact(str(value))


def _exhaustion(exc: BaseException | None) -> OSError | None:
    """The OSError saying the process ran out of descriptors, buffers or
    memory, if that is what `exc` is or was caused by."""
    for _ in range(_CHAIN_DEPTH):
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno in _EXHAUSTION:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@dataclass(slots=True)
class _Seen:
    """One distinct message in its current window: when the window began
    (with a line shown), how many lines were shown in it, how many held
    back, and the last one held back."""

    since: float
    shown: int = 1
    suppressed: int = 0
    last: logging.LogRecord | None = None


class _FloodLimit:
    """At most `burst` lines per distinct message per window, for records
    at `min_level` or above. Distinct: the logger, the message template
    (before its arguments) and the exception type. Not thread-safe: the
    handler calls it under its lock."""

    def __init__(
        self, clock: Callable[[], float], window_s: float, burst: int, min_level: int
    ) -> None:
        self._clock = clock
        self._window_s = window_s
        self._burst = burst
        self._min_level = min_level
        self._seen: dict[tuple[str, str, str], _Seen] = {}

    def admit(self, record: logging.LogRecord) -> str | None:
        """None to hold `record` back; else the note its line ends with (how
        many were held back before it, "" when none)."""
        if record.levelno < self._min_level or record.name in UNLIMITED:
            return ""
        now = self._clock()
        key = _key(record)
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) >= _MAX_KEYS:
                self._forget(now)
            if len(self._seen) < _MAX_KEYS:
                self._seen[key] = _Seen(now)
            return ""
        if now - seen.since >= self._window_s:
            note = _note(seen.suppressed, now - seen.since)
            seen.since, seen.shown, seen.suppressed, seen.last = now, 1, 0, None
            return note
        if seen.shown < self._burst:
            seen.shown += 1
            return ""
        seen.suppressed += 1
        seen.last = record
        return None

    def overdue(self, *, everything: bool = False) -> list[tuple[logging.LogRecord, str]]:
        """The last record held back of each message whose window is over
        (of every message, with `everything`), with its note: shown so that
        the end of a flood is told too."""
        now = self._clock()
        out = []
        for seen in self._seen.values():
            if seen.last is not None and (everything or now - seen.since >= self._window_s):
                # The record shown is one of those held back: the rest are counted.
                out.append((seen.last, _note(seen.suppressed - 1, now - seen.since)))
                seen.since, seen.shown, seen.suppressed, seen.last = now, 1, 0, None
        return out

    def _forget(self, now: float) -> None:
        """Drop the messages whose window is over and that hold nothing back."""
        for key, seen in list(self._seen.items()):
            if seen.last is None and now - seen.since >= self._window_s:
                del self._seen[key]


def _key(record: logging.LogRecord) -> tuple[str, str, str]:
    exc_type = record.exc_info[0] if record.exc_info else None
    return record.name, str(record.msg), exc_type.__qualname__ if exc_type else ""


def _note(suppressed: int, elapsed_s: float) -> str:
    if suppressed <= 0:
        return ""
    return f" ({suppressed:,} more like this in the last {elapsed_s:.0f}s)"


def _prepared(record: logging.LogRecord, note: str) -> logging.LogRecord:
    """A copy of `record` to format: the flood note attached and, for the
    daemon's own exhaustion, the traceback replaced by one line."""
    out = copy.copy(record)
    notes = []
    exhausted = _exhaustion(record.exc_info[1]) if record.exc_info else None
    if exhausted is not None:
        notes.append(f" ({type(exhausted).__name__}: {exhausted})")
        out.exc_info, out.exc_text = None, None
    if note:
        notes.append(note)
    out.__dict__[_NOTES] = "".join(notes)
    return out


def _notes(record: logging.LogRecord) -> str:
    notes = record.__dict__.get(_NOTES, "")
    return notes if isinstance(notes, str) else ""


def _rfc3339(seconds: float, timespec: str = "seconds") -> str:
    """`seconds` since the epoch as RFC 3339 in UTC: `2024-05-01T10:00:00Z`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Pair:
    """A `key=value` pair of a message template: the value's own template,
    the arguments it formats (by position, or by name for a mapping), and
    the conversion type when the value is one conversion and nothing else."""

    key: str
    value: str
    positions: tuple[int, ...]
    names: tuple[str, ...]
    sole: str | None


@functools.lru_cache(maxsize=1024)
def _template_pairs(template: str) -> tuple[_Pair, ...] | None:
    """The pairs of `template` (a message formatted with arguments); None
    when its arguments cannot be told apart (a `*` width takes two)."""
    conversions = []
    index = 0
    for match in _CONVERSION.finditer(template):
        if match["type"] == "%":
            continue
        if "*" in match[0]:
            return None
        conversions.append((match.start(), match.end(), index, match["name"], match["type"]))
        index += 1
    pairs = []
    for match in _PAIR.finditer(template):
        start, end = match.span("value")
        inside = [c for c in conversions if start <= c[0] and c[1] <= end]
        sole = inside[0][4] if len(inside) == 1 and inside[0][:2] == (start, end) else None
        pairs.append(
            _Pair(
                match["key"],
                match["value"],
                tuple(c[2] for c in inside if c[3] is None),
                tuple(c[3] for c in inside if c[3] is not None),
                sole,
            )
        )
    return tuple(pairs)


def _lifted(record: logging.LogRecord) -> dict[str, Any]:
    """The `key=value` pairs of `record`'s message, as JSON values (see the
    module's docstring); {} when the message cannot be read that way."""
    template = str(record.msg)
    args = record.args
    if not args:
        return {m["key"]: m["value"] for m in _PAIR.finditer(template)}
    pairs = _template_pairs(template)
    if pairs is None:
        return {}
    out: dict[str, Any] = {}
    for pair in pairs:
        try:
            if pair.names:
                if not isinstance(args, Mapping):
                    return {}
                text = pair.value % args
                values: tuple[Any, ...] = tuple(args[name] for name in pair.names)
            elif isinstance(args, tuple):
                values = tuple(args[i] for i in pair.positions)
                text = pair.value % values if values else pair.value
            else:
                return {}
        except (LookupError, TypeError, ValueError):
            return {}  # the message itself fails to format: logging says so
        out[pair.key] = _typed(text, pair.sole, values)
    return out


def _typed(text: str, conversion: str | None, values: tuple[Any, ...]) -> Any:
    """A pair's value: a number for a number's conversion, else its text."""
    if conversion is None or len(values) != 1 or isinstance(values[0], bool):
        return text
    if conversion in "diu" and isinstance(values[0], int):
        return values[0]
    if conversion in "eEfFgG" and isinstance(values[0], int | float):
        number = float(text)
        return number if math.isfinite(number) else text
    return text


class _TextFormatter(logging.Formatter):
    def __init__(self, secrets: Secrets) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._secrets = secrets

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _rfc3339(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record) + _notes(record)

    def format(self, record: logging.LogRecord) -> str:
        return self._secrets.redact(super().format(record))


class _JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        redact = self._secrets.redact
        fields = _lifted(record)
        fields.update(
            (k, v) for k, v in record.__dict__.items() if k not in _STANDARD and k not in _DROPPED
        )
        out: dict[str, Any] = {
            "time": _rfc3339(record.created, "milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage() + _notes(record)),
        }
        out.update(
            self._secrets.redact_value({k: v for k, v in fields.items() if k not in _RESERVED})
        )
        if record.exc_info:
            out["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(out)


class LogHandler(logging.StreamHandler[TextIO]):
    """The daemon's handler: lines to `stream` in `fmt`, with the flood
    limit (records at `min_level` and above: at most `burst` lines per
    distinct message, that is logger, template and exception type, per
    `window_s` of `clock`; the next line shown says how many were held
    back), no traceback for resource exhaustion (EMFILE, ENFILE, ENOBUFS,
    ENOMEM, also as the cause of another error), and `secrets` masked in
    every line."""

    def __init__(
        self,
        stream: TextIO | None = None,
        fmt: LogFormat = "text",
        *,
        secrets: Secrets | None = None,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = WINDOW_S,
        burst: int = BURST,
        min_level: int = logging.WARNING,
    ) -> None:
        super().__init__(stream)
        self._fixed: TextIO | None = stream  # StreamHandler put stderr there
        self.secrets = secrets if secrets is not None else Secrets()
        self.setFormatter(
            _JsonFormatter(self.secrets) if fmt == "json" else _TextFormatter(self.secrets)
        )
        self._limit = _FloodLimit(clock, window_s, burst, min_level)
        self._clock = clock
        # Messages whose flood ended are told at the next line after this.
        self._sweep_every_s = window_s / 6
        self._next_sweep = clock() + self._sweep_every_s

    @property
    def stream(self) -> TextIO:
        """The stream given, or the process's stderr as it is now (a stderr
        replaced after `configure`, as test runners do, is followed)."""
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._fixed = value

    def emit(self, record: logging.LogRecord) -> None:
        """Write `record` unless the flood limit holds it back (called under
        the handler's lock, from any thread)."""
        note = self._limit.admit(record)
        if note is not None:
            super().emit(_prepared(record, note))
        if self._clock() >= self._next_sweep:
            self._emit_overdue()

    def flush_pending(self) -> None:
        """Write, for each message whose flood is over, its last line held
        back and how many more were (the handler does it on its own when
        another line comes; a quiet daemon may call this now and then)."""
        self.acquire()
        try:
            self._emit_overdue()
        finally:
            self.release()

    def close(self) -> None:
        """Tell everything still held back (nothing else will), then close."""
        self.acquire()
        try:
            self._emit_overdue(everything=True)
        finally:
            self.release()
        super().close()

    def _emit_overdue(self, *, everything: bool = False) -> None:
        self._next_sweep = self._clock() + self._sweep_every_s
        for record, note in self._limit.overdue(everything=everything):
            super().emit(_prepared(record, note))


def configure(
    fmt: LogFormat = "text",
    level: int = logging.INFO,
    *,
    secrets: Secrets | None = None,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    window_s: float = WINDOW_S,
    burst: int = BURST,
) -> LogHandler:
    """Send the process's logs to `stream` (stderr) in `fmt` through a
    `LogHandler` (flood limit, secrets masked), replacing the root logger's
    handlers; return the handler, whose `secrets` the caller adds to."""
    handler = LogHandler(stream, fmt, secrets=secrets, clock=clock, window_s=window_s, burst=burst)
    root = logging.getLogger()
    for replaced in root.handlers:
        if isinstance(replaced, LogHandler):
            replaced.close()  # what it held back is told now, not at exit
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print a line per scrape of /metrics,
    # APScheduler two lines per probe run, httpx one per HTTP probe.
    for noisy in ("uvicorn.access", "apscheduler", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
