"""When probes run: one APScheduler interval job per probe, each at a phase of
its own within its interval, every run fenced by a hard deadline. The only
module that imports apscheduler."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

# APScheduler 3 ships no type information; everything from it is Any here.
from apscheduler.events import (
    EVENT_JOB_SUBMITTED,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

__all__ = ["Changes", "Clock", "ProbeScheduler", "ScheduledProbe", "phase_s"]

_logger = logging.getLogger(__name__)

Clock = Callable[[], float]


_HEARTBEAT_ID = "heartbeat"
_PROBE_PREFIX = "probe:"


class _Interval(Protocol):
    @property
    def interval_s(self) -> float: ...


class ScheduledProbe(Protocol):
    """What the scheduler needs of a probe (`watchdog.config.ProbeConfig`
    has it). The deadline comes from `spec.timeout_s` when the spec has one."""

    @property
    def key(self) -> str: ...

    @property
    def schedule(self) -> _Interval: ...

    @property
    def spec(self) -> object: ...


P = TypeVar("P", bound=ScheduledProbe)


@dataclass(frozen=True, slots=True)
class Changes:
    """What a `replace` did, by probe key: `rescheduled` probes have a new
    interval; `updated` ones changed otherwise and keep their next run."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rescheduled: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()


def phase_s(key: str, interval_s: float) -> float:
    """Where in each interval the probe `key` runs, in [0, interval_s):
    spread evenly over the interval by a hash of the key, and the same in
    every process (unlike `hash()`), so a restart or a reload keeps it."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval_s


class _PhaseLockedTrigger(BaseTrigger):
    """Fires at every `phase + k * interval` seconds since the epoch, each
    time late by a random jitter in [0, jitter_s].

    APScheduler's IntervalTrigger adds its jitter to the previous *jittered*
    time, so a probe's period grows by jitter/2 on average and its phase
    wanders; here the grid stays put and only each run moves on it.
    """

    __slots__ = ("interval_s", "jitter_s", "phase_s")

    def __init__(self, interval_s: float, phase: float, jitter_s: float) -> None:
        if not 0 <= jitter_s <= interval_s / 2:
            raise ValueError(f"jitter must be within half the interval, got {jitter_s}")
        self.interval_s = interval_s
        self.phase_s = phase
        self.jitter_s = jitter_s

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            n = math.ceil((now.timestamp() - self.phase_s) / self.interval_s)
        else:
            previous = previous_fire_time.timestamp()
            # `previous` is a grid point plus at most half an interval of
            # jitter, or a microsecond before it (datetimes round): a quarter
            # interval of slack finds that grid point either way.
            n = math.floor((previous - self.phase_s) / self.interval_s + 0.25) + 1
        fire = self.phase_s + n * self.interval_s + random.uniform(0, self.jitter_s)
        return datetime.fromtimestamp(fire, UTC)

    def __str__(self) -> str:
        return f"every {self.interval_s:g}s at +{self.phase_s:.6f}s, jitter {self.jitter_s:g}s"


class ProbeScheduler(Generic[P]):
    """Runs `run(probe)` for every probe on its interval, on the running
    asyncio loop.

    Promises: a probe's runs start at its phase within the interval (see
    `phase_s`) plus a jitter of at most `jitter_ratio` of the interval (capped
    at `max_jitter_s`); runs of one probe never overlap (a run due while the
    previous one still runs is skipped, and missed runs are coalesced into
    one); every run is cancelled at the probe's timeout plus
    `deadline_margin_s` (the interval when the probe has no timeout); an
    exception from `run` is logged and changes nothing else.

    `clock` gives seconds since the epoch (as `time.time`): scheduling lag is
    measured against APScheduler's wall-clock run times. `on_lag(key, s)`
    hears, for every run, how late it started (never negative);
    `on_cutoff(probe, s)` hears of every run cut off at its deadline of `s`
    seconds, so that the caller can record what a run that never ended means.
    """

    def __init__(
        self,
        probes: Iterable[P],
        run: Callable[[P], Awaitable[None]],
        clock: Clock,
        *,
        on_lag: Callable[[str, float], None] | None = None,
        on_cutoff: Callable[[P, float], None] | None = None,
        jitter_ratio: float = 0.1,
        max_jitter_s: float = 0.5,
        deadline_margin_s: float = 1.0,
        heartbeat_s: float = 1.0,
        stale_after_s: float = 10.0,
    ) -> None:
        if not 0 <= jitter_ratio <= 0.5:
            raise ValueError(f"jitter_ratio must be within [0, 0.5], got {jitter_ratio}")
        self._run = run
        self._clock = clock
        self._on_lag = on_lag
        self._on_cutoff = on_cutoff
        self._jitter_ratio = jitter_ratio
        self._max_jitter_s = max_jitter_s
        self._deadline_margin_s = deadline_margin_s
        self._heartbeat_s = heartbeat_s
        self._stale_after_s = stale_after_s
        self._probes = _index(probes)
        # The scheduled time of each submitted run, from its submission
        # event until the run starts: how lag is measured.
        self._due: dict[str, datetime] = {}
        self._running: dict[asyncio.Task[Any], str] = {}
        self._last_tick = 0.0
        self._started = False
        self._stopping = False
        self._scheduler: Any = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)

    # --- life cycle ----------------------------------------------------------

    def start(self) -> None:
        """Schedule every probe; call inside the running event loop."""
        if self._started:
            raise RuntimeError("the probe scheduler was already started")
        asyncio.get_running_loop()  # fail here, not at the first wakeup
        self._started = True
        self._last_tick = self._clock()
        self._scheduler.add_job(
            self._tick,
            _PhaseLockedTrigger(self._heartbeat_s, 0.0, 0.0),
            id=_HEARTBEAT_ID,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        for probe in self._probes.values():
            self._add(probe)
        self._scheduler.start()
        _logger.info("probe scheduler started probes=%d", len(self._probes))

    async def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop starting runs, give the runs in flight `grace_s` seconds to
        finish, then cancel the rest; returns with no run left (unless one
        ignores cancellation for another `grace_s`, which is logged)."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        self._scheduler.pause()
        # Runs submitted just before the pause start on the next loop
        # iteration; let them, so they see `_stopping` and end at once.
        await asyncio.sleep(0)
        pending: set[asyncio.Task[Any]] = set(self._running)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        cancelled = len(pending)
        for task in pending:
            task.cancel()
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        for task in pending:
            _logger.error("probe run ignored cancellation key=%s", self._running.get(task, "?"))
        self._scheduler.shutdown(wait=False)
        # AsyncIOScheduler.shutdown only queues the work on the loop
        # (call_soon_threadsafe): one iteration carries it out.
        await asyncio.sleep(0)
        _logger.info("probe scheduler stopped cancelled=%d", cancelled)

    # --- state ------------------------------------------------------------

    @property
    def probes(self) -> Mapping[str, P]:
        """The scheduled probes by key, as last given (read-only)."""
        return MappingProxyType(self._probes)

    @property
    def in_flight(self) -> int:
        """How many runs are in progress now."""
        return len(self._running)

    @property
    def healthy(self) -> bool:
        """The scheduler runs and its heartbeat job ran within `stale_after_s`:
        both the event loop and APScheduler's wakeups are alive."""
        return (
            self._started
            and not self._stopping
            and bool(self._scheduler.running)
            and self._clock() - self._last_tick <= self._stale_after_s
        )

    def next_run(self, key: str) -> datetime | None:
        """When the probe `key` runs next, jitter included; None when it is
        not scheduled."""
        job = self._scheduler.get_job(_PROBE_PREFIX + key) if self._started else None
        when = None if job is None else job.next_run_time
        return None if when is None else _datetime(when)

    # --- reload -----------------------------------------------------------

    def replace(self, probes: Iterable[P], *, soon_s: float | None = None) -> Changes:
        """Make `probes` the scheduled set: add the new, remove the gone,
        reschedule those whose interval changed (their phase follows the new
        interval). Any other change takes effect at the probe's next run,
        which does not move: unchanged probes keep their phase. With
        `soon_s`, each new probe runs first within that many seconds (spread
        over them), then at its phase: probes that come from a replica that
        died have not run for a while."""
        new = _index(probes)
        old = self._probes
        added = [k for k in new if k not in old]
        removed = [k for k in old if k not in new]
        rescheduled = [
            k for k in new if k in old and new[k].schedule.interval_s != old[k].schedule.interval_s
        ]
        updated = [k for k in new if k in old and k not in rescheduled and new[k] != old[k]]
        self._probes = new
        live = self._started and not self._stopping
        if live:
            # Paused, adding jobs does not wake the scheduler once per job;
            # resume() wakes it once. Nothing runs in between: no await here.
            self._scheduler.pause()
            try:
                for key in removed:
                    self._scheduler.remove_job(_PROBE_PREFIX + key)
                now = self._clock()
                for key in added:
                    first = None
                    if soon_s is not None:
                        first = datetime.fromtimestamp(now + random.uniform(0, soon_s), UTC)
                    self._add(new[key], first)
                for key in rescheduled:
                    trigger = self._trigger(new[key])
                    self._scheduler.modify_job(
                        _PROBE_PREFIX + key,
                        trigger=trigger,
                        misfire_grace_time=_grace(new[key]),
                        next_run_time=trigger.get_next_fire_time(None, datetime.now(UTC)),
                    )
            finally:
                self._scheduler.resume()
        changes = Changes(tuple(added), tuple(removed), tuple(rescheduled), tuple(updated))
        _logger.info(
            "probes replaced added=%d removed=%d rescheduled=%d updated=%d",
            len(added),
            len(removed),
            len(rescheduled),
            len(updated),
        )
        return changes

    # --- internals --------------------------------------------------------

    def _trigger(self, probe: P) -> _PhaseLockedTrigger:
        interval = probe.schedule.interval_s
        jitter = min(self._jitter_ratio * interval, self._max_jitter_s)
        return _PhaseLockedTrigger(interval, phase_s(probe.key, interval), jitter)

    def _add(self, probe: P, first: datetime | None = None) -> None:
        """Schedule `probe` on its trigger (its first run at `first` if
        given)."""
        when = {} if first is None else {"next_run_time": first}
        self._scheduler.add_job(
            self._check,
            self._trigger(probe),
            args=(probe.key,),
            id=_PROBE_PREFIX + probe.key,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=_grace(probe),
            **when,
        )

    def _deadline_s(self, probe: P) -> float:
        timeout = getattr(probe.spec, "timeout_s", None)
        if isinstance(timeout, int | float) and timeout > 0:
            return float(timeout) + self._deadline_margin_s
        return probe.schedule.interval_s

    def _submitted(self, event: Any) -> None:
        # Called synchronously by the scheduler right after it created the
        # run's task, so the entry is there before the run starts. With
        # coalesce, the last of the due times is the one being run.
        if isinstance(event, JobSubmissionEvent) and event.job_id.startswith(_PROBE_PREFIX):
            self._due[event.job_id.removeprefix(_PROBE_PREFIX)] = event.scheduled_run_times[-1]

    async def _tick(self) -> None:
        self._last_tick = self._clock()

    async def _check(self, key: str) -> None:
        started = self._clock()
        due = self._due.pop(key, None)
        probe = self._probes.get(key)
        if self._stopping or probe is None:
            return  # shutting down, or removed after this run was submitted
        task = asyncio.current_task()
        assert task is not None  # APScheduler runs coroutine jobs as tasks
        self._running[task] = key
        try:
            if due is not None and self._on_lag is not None:
                # Both times come from the system clock; a clock stepped back
                # between them must not make a negative lag for the metrics.
                self._report_lag(key, max(0.0, started - _datetime(due).timestamp()))
            await self._run_bounded(probe)
        finally:
            del self._running[task]

    def _report_lag(self, key: str, lag_s: float) -> None:
        assert self._on_lag is not None
        try:
            self._on_lag(key, lag_s)
        except Exception:
            _logger.exception("lag callback raised key=%s", key)

    async def _run_bounded(self, probe: P) -> None:
        key = probe.key
        limit = self._deadline_s(probe)
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                await self._run(probe)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by shutdown(): a normal end, not an error for
            # APScheduler to log with a traceback, so the task ends quietly.
            _logger.warning("probe run cancelled at shutdown key=%s", key)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                _logger.warning("probe run cut off key=%s deadline_s=%g", key, limit)
                if self._on_cutoff is not None:
                    try:
                        self._on_cutoff(probe, limit)
                    except Exception:
                        _logger.exception("cut-off callback raised key=%s", key)
            else:
                _logger.error(
                    "probe run raised key=%s error=%s", key, type(exc).__name__, exc_info=exc
                )


def _index(probes: Iterable[P]) -> dict[str, P]:
    out: dict[str, P] = {}
    for probe in probes:
        if probe.key in out:
            raise ValueError(f"two probes have the key {probe.key!r}")
        out[probe.key] = probe
    return out


def _grace(probe: ScheduledProbe) -> int:
    # A run later than one interval has a newer due time coalesced into it
    # anyway; APScheduler wants whole seconds here.
    return max(1, math.ceil(probe.schedule.interval_s))


def _datetime(when: Any) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime from APScheduler, got {when!r}")
    return when
