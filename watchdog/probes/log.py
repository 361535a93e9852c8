"""The `log` probe: a node's log files followed (`watchdog.logtail`), their
lines judged by the anomaly rules (`watchdog.anomalies`), and the anomalies
in force made a result: `degraded` with their reasons (`down` for silence on
a node marked so), `up` when there are none.

What it learned (file offsets, rate baselines, known templates) is loaded
from and saved to the state store after every poll, so a restart neither
reads a line twice nor skips one, nor takes old templates for new ones.

Symlinks are followed, to files anywhere: rotation schemes (`current ->
app-2024-05-01.log`) and packaged services (`/var/log/app -> /srv/app/logs`)
depend on it, and the file names the files to read, so whoever can edit it
can point a probe at any file the daemon may read anyway. What a probe shows
is guarded instead: the lines it quotes as evidence (`details`) are masked
unless the caller is trusted (`private=True`, for callers with the API
token), and the reasons and templates never hold a secret (see
`watchdog.anomalies`): a symlink to a config file once published its
`password=` line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topology import State
from watchdog.anomalies import Anomaly, LogAnalyzer, LogRules
from watchdog.logmine import redact_secrets
from watchdog.logtail import Batch, Follower, Position
from watchdog.probe_state import ProbeState
from watchdog.probes.result import ProbeResult, inconclusive, shorten
from watchdog.store import StoreError

__all__ = ["LogProbe", "LogSpec"]

log = logging.getLogger(__name__)

# Reasons listed in a result; the API shows them all with their evidence.
_REASONS = 3
# Slices of `max_bytes_per_read` read in one poll at most, and the share of
# the interval a poll may take: a burst is caught up over a few polls rather
# than in one that outlives its interval.
_MAX_SLICES = 16
_POLL_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class LogSpec:
    """A log probe: files to follow (a path or glob) and what counts as an
    anomaly in them. `from_start`: files found at the very first poll are
    read from their start rather than their end."""

    paths: str
    rules: LogRules = field(default_factory=LogRules)
    from_start: bool = False
    max_line_bytes: int = 16384
    max_bytes_per_read: int = 8 * 1024 * 1024


@dataclass(slots=True)
class _Counters:
    lines: int = 0
    long_lines: int = 0
    invalid_utf8: int = 0
    rotations: int = 0
    truncations: int = 0


class LogProbe:
    """Follows `spec.paths` for the probe `key`, keeping what it learned in
    `state` (when given). `clock` gives wall-clock seconds: the rules'
    baselines and a restart's resumption are in wall-clock time."""

    def __init__(
        self,
        spec: LogSpec,
        key: str,
        *,
        state: ProbeState | None = None,
        clock: Callable[[], float] = time.time,
        interval_s: float = 10.0,
    ) -> None:
        self.spec = spec
        self.key = key
        self._state = state
        self._clock = clock
        self._interval_s = interval_s
        saved = state.load(key) if state is not None else {}
        positions = _positions(saved.get("positions"), key)
        analyzer_state = _json(saved.get("analyzer"), key, "anomaly state")
        miner_state = saved.get("miner")
        now = clock()
        try:
            self.analyzer = LogAnalyzer(spec.rules, now, analyzer_state, miner_state)
        except ValueError as err:
            log.warning("saved log state unreadable, learning again probe=%s error=%s", key, err)
            self.analyzer = LogAnalyzer(spec.rules, now)
        self._follower = Follower(
            spec.paths,
            positions=positions,
            # With a saved position a file resumes there; a file first seen
            # by a daemon that has run before is new content, read whole.
            from_end=not spec.from_start and not positions,
            max_line_bytes=spec.max_line_bytes,
            max_bytes_per_read=spec.max_bytes_per_read,
        )
        # What the store holds: the bytes of each part last saved, and the
        # miner's version then (its state is costly to build: only on change).
        self._saved: dict[str, bytes] = dict(saved)
        self._miner_saved = self.analyzer.miner_version
        self._lock = threading.Lock()
        self.counters = _Counters()
        self.last: Batch | None = None
        self.anomalies: list[Anomaly] = []

    async def check(self) -> ProbeResult:
        """Read what was appended since the last poll, judge it, save what
        was learned; the anomalies in force make the result."""
        return await asyncio.to_thread(self._poll)

    def close(self) -> None:
        """Close the files held open."""
        with self._lock:
            self._follower.close()

    def details(self, *, private: bool = False) -> dict[str, Any]:
        """What the API shows: counters, the last poll's findings, and each
        anomaly in force with its evidence. Unless `private` (a caller
        trusted with what the logs say), every sample line is redacted:
        secrets masked as ``***`` (`password=`, `token`, `secret`, `api_key`,
        Authorization credentials, a URL's password...) and the probe's masks
        applied; templates have their secrets masked too. With `private`,
        samples are the lines as read."""
        last = self.last
        analyzer = self.analyzer

        def sample(line: str | None) -> str | None:
            return line if private or line is None else analyzer.redact(line)

        def template(text: str | None) -> str | None:
            return text if private or text is None else redact_secrets(text)

        return {
            "paths": self.spec.paths,
            "files": last.files if last else 0,
            "lines": self.counters.lines,
            "long_lines": self.counters.long_lines,
            "invalid_utf8": self.counters.invalid_utf8,
            "rotations": self.counters.rotations,
            "truncations": self.counters.truncations,
            "errors": list(last.errors) if last else [],
            "anomalies": [
                {
                    "kind": a.kind,
                    "reason": a.reason,
                    "since": a.since,
                    "count": a.count,
                    "template": template(a.template),
                    "sample": sample(a.sample),
                }
                for a in self.anomalies
            ],
        }

    def _poll(self) -> ProbeResult:
        # A poll still running (a slow disk) is not joined by another: the
        # follower and the analyzer are one thread's at a time.
        if not self._lock.acquire(blocking=False):
            return ProbeResult(State.UNKNOWN, "still reading the previous poll")
        try:
            return self._poll_locked()
        except Exception as err:  # a probe reports, it never raises
            log.exception("log probe failed probe=%s", self.key)
            return ProbeResult(State.UNKNOWN, f"log probe failed: {type(err).__name__}")
        finally:
            self._lock.release()

    def _poll_locked(self) -> ProbeResult:
        started = time.monotonic()
        budget = self._interval_s * _POLL_SHARE
        batch = Batch()
        for _ in range(_MAX_SLICES):
            batch = self._follower.read()
            now = self._clock()
            self.analyzer.feed(batch.lines, now)
            self._count(batch)
            if not batch.more or time.monotonic() - started > budget:
                break
        now = self._clock()
        self.last = batch
        self.anomalies = self.analyzer.active(now)
        self._save(now)
        return self._result(batch)

    def _count(self, batch: Batch) -> None:
        c = self.counters
        c.lines += len(batch.lines)
        c.long_lines += batch.long_lines
        c.invalid_utf8 += batch.invalid_utf8
        c.rotations += batch.rotations
        c.truncations += batch.truncations

    def _save(self, now: float) -> None:
        """Save the parts that changed since the last save (a quiet poll
        writes nothing)."""
        if self._state is None:
            return
        parts = {
            "positions": json.dumps(
                {path: p.to_json() for path, p in self._follower.positions().items()}
            ).encode(),
            "analyzer": json.dumps(self.analyzer.state()).encode(),
        }
        parts = {k: v for k, v in parts.items() if self._saved.get(k) != v}
        version = self.analyzer.miner_version
        if version != self._miner_saved:
            parts["miner"] = self.analyzer.miner_state()
        if not parts:
            return
        try:
            self._state.save(self.key, parts, now)
        except StoreError as err:
            # Read on regardless; the next poll saves again (a restart in
            # between reads some lines twice, which beats reading none).
            log.error("cannot save log probe state probe=%s error=%s", self.key, err)
            return
        self._saved.update(parts)
        self._miner_saved = version

    def _result(self, batch: Batch) -> ProbeResult:
        anomalies = self.anomalies
        if anomalies:
            down = any(a.severity_down for a in anomalies)
            reasons = [a.reason for a in anomalies[:_REASONS]]
            if len(anomalies) > _REASONS:
                reasons.append(f"{len(anomalies) - _REASONS} more")
            return ProbeResult(
                State.DOWN if down else State.DEGRADED,
                shorten("; ".join(reasons)),
                anomalies=tuple(a.reason for a in anomalies),
            )
        if batch.local is not None and not batch.errors:
            return inconclusive(*batch.local)  # the watchdog's trouble, not the files'
        if batch.missing:
            return ProbeResult(State.DEGRADED, shorten(f"no log file matches {self.spec.paths}"))
        if batch.errors:
            return ProbeResult(State.DEGRADED, shorten("; ".join(batch.errors)))
        count = len(batch.lines)
        return ProbeResult(State.UP, f"ok: {count} new line{'' if count == 1 else 's'}")


def _json(data: bytes | None, key: str, what: str) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("saved %s unreadable, starting afresh probe=%s", what, key)
        return None
    return value


def _positions(data: bytes | None, key: str) -> dict[str, Position]:
    raw = _json(data, key, "log positions") or {}
    out = {}
    for path, value in raw.items():
        try:
            out[path] = Position.from_json(value)
        except ValueError:
            log.warning("saved log position unreadable probe=%s path=%s", key, path)
    return out
