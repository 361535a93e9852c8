"""The watchdog's own health, told apart from the estate's: how long its
event loop stalls, and the probe runs that said nothing about their targets
because of its own trouble (descriptors, memory, a stall, a run cut off).

The rule, written once (README, "When the watchdog itself is in trouble"):
a run is inconclusive only on evidence from that very run on the watchdog's
side; the share of failing probes alone never suspends judgement, because an
estate-wide outage looks exactly like that.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from alerts.model import Alert
from topology import format_duration
from watchdog.probes.result import ProbeResult, inconclusive, is_timeout

__all__ = ["STALL_SHARE", "Impairment", "LoopMonitor"]

# A timeout is the watchdog's fault when its loop stalled for at least this
# share of the probe's timeout during the run: the answer may have been
# there, unread.
STALL_SHARE = 0.2
# Stalls shorter than this are the ordinary cost of a busy loop.
_NOTABLE_STALL_S = 0.005


class LoopMonitor:
    """Measures how late the event loop runs a callback due every
    `period_s`: a stall delays every probe's timers and reads alike.
    `clock` is the loop's clock (monotonic seconds)."""

    def __init__(
        self,
        period_s: float = 0.1,
        keep_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.period_s = period_s
        self.keep_s = keep_s
        self._clock = clock
        self._stalls: collections.deque[tuple[float, float]] = collections.deque()
        self._last_wake: float | None = None
        self.worst_s = 0.0  # the worst stall in the kept window

    async def run(self) -> None:
        """Measure until cancelled."""
        clock = self._clock
        self._last_wake = clock()
        while True:
            due = clock() + self.period_s
            await asyncio.sleep(self.period_s)
            now = clock()
            self.record(now, max(0.0, now - due))

    def record(self, at: float, late_s: float) -> None:
        """One wake-up `late_s` seconds late, at `at`."""
        self._last_wake = at
        if late_s >= _NOTABLE_STALL_S:
            self._stalls.append((at, late_s))
        while self._stalls and self._stalls[0][0] < at - self.keep_s:
            self._stalls.popleft()
        self.worst_s = max((late for _, late in self._stalls), default=0.0)

    def stalled_s(self, start: float, end: float) -> float:
        """The longest stall that overlapped [start, end], including one
        still going on (the caller runs at its end, before the monitor
        could wake up to measure it)."""
        worst = 0.0
        for at, late in self._stalls:
            if at - late <= end and at >= start:
                worst = max(worst, late)
        if self._last_wake is not None:
            worst = max(worst, self._clock() - self._last_wake - self.period_s)
        return worst


class Impairment:
    """The probe runs that gave no verdict because of the watchdog's own
    trouble, over the last `window_s`, by cause; and the one alert about
    the watchdog itself that says so while it lasts."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._events: collections.deque[tuple[float, str]] = collections.deque()
        self._counts: collections.Counter[str] = collections.Counter()
        self._since: float | None = None

    def judge(
        self,
        result: ProbeResult,
        *,
        started: float,
        ended: float,
        timeout_s: float | None,
        loop: LoopMonitor,
    ) -> ProbeResult:
        """`result`, made inconclusive when the watchdog is to blame: a
        timeout while its loop stalled for `STALL_SHARE` of the timeout or
        more (`started`/`ended` on the loop monitor's clock)."""
        if result.inconclusive or timeout_s is None or not is_timeout(result):
            return result
        stall = loop.stalled_s(started, ended)
        if stall < STALL_SHARE * timeout_s:
            return result
        return inconclusive(
            "stall", f"the watchdog's event loop stalled for {stall:.1f}s during the check"
        )

    def note(self, cause: str, at: float) -> None:
        """One inconclusive run, at `at` (seconds since the epoch)."""
        self._prune(at)
        if not self._events:
            self._since = at
        self._events.append((at, cause))
        self._counts[cause] += 1

    def counts(self, now: float) -> dict[str, int]:
        """Inconclusive runs in the window, by cause."""
        self._prune(now)
        return {cause: n for cause, n in sorted(self._counts.items()) if n}

    def alert(self, now: float) -> Alert | None:
        """The alert about the watchdog itself while runs are inconclusive,
        else None. A stall that made no run inconclusive did no harm: it is
        in the metrics (`watchdog_event_loop_stall_seconds`), not paged."""
        counts = self.counts(now)
        if not counts:
            return None
        parts = [f"{_CAUSES.get(cause, cause)}: {n:,}" for cause, n in counts.items()]
        total = sum(counts.values())
        text = (
            "the watchdog cannot judge part of the estate: "
            f"{total:,} probe run{'s' if total != 1 else ''} in the last "
            f"{format_duration(self.window_s)} gave no verdict ({', '.join(parts)}); "
            "their targets keep their last verdict"
        )
        return Alert(
            key="impaired:watchdog",
            kind="impaired",
            severity="warning",
            root_cause=(),
            summary=text,
            started_at=self._since if self._since is not None else now,
        )

    def _prune(self, now: float) -> None:
        events = self._events
        while events and events[0][0] < now - self.window_s:
            _, cause = events.popleft()
            self._counts[cause] -= 1
        if not events:
            self._since = None


_CAUSES = {
    "descriptors": "out of file descriptors",
    "buffers": "out of socket buffers",
    "memory": "out of memory",
    "ports": "out of local ports",
    "processes": "cannot start processes",
    "connections": "no free connection in the watchdog's pool",
    "stall": "event loop stalled",
    "cut_off": "cut off at the deadline",
}
