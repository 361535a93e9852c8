"""The probe scheduler on a real asyncio loop with a real APScheduler: short
intervals, and every wait bounded by a deadline on a condition, never an
assertion on how long something took."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from waiting import until

from watchdog.scheduler import Changes, ProbeScheduler, phase_s

# How long a test waits for a condition before it fails; never reached when
# the scheduler works.
WAIT_S = 5.0
SHORT_S = 0.05


@dataclass(frozen=True, slots=True)
class Every:
    interval_s: float


@dataclass(frozen=True, slots=True)
class Spec:
    timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Probe:
    """The shape of `watchdog.config.ProbeConfig` the scheduler needs."""

    key: str
    schedule: Every = Every(SHORT_S)
    spec: Spec = Spec()


@dataclass
class Runs:
    """The `run` the scheduler is given: records every run per key and how
    many overlap; keys in `hang` never finish, keys in `boom` raise, keys in
    `slow` take `slow_s`."""

    hang: set[str] = field(default_factory=set)
    boom: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)
    slow_s: float = 0.15
    started: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    seen: dict[str, Probe] = field(default_factory=dict)
    now: Counter[str] = field(default_factory=Counter)
    most: Counter[str] = field(default_factory=Counter)

    async def __call__(self, probe: Probe) -> None:
        key = probe.key
        self.started[key] += 1
        self.seen[key] = probe
        self.now[key] += 1
        self.most[key] = max(self.most[key], self.now[key])
        try:
            if key in self.hang:
                await asyncio.Event().wait()
            if key in self.slow:
                await asyncio.sleep(self.slow_s)
            if key in self.boom:
                raise RuntimeError("probe bug")
            self.finished[key] += 1
        except asyncio.CancelledError:
            self.cancelled[key] += 1
            raise
        finally:
            self.now[key] -= 1


@contextlib.asynccontextmanager
async def running(
    probes: list[Probe], run: Runs, clock: Callable[[], float] = time.time, **options: Any
) -> AsyncIterator[ProbeScheduler[Probe]]:
    """A started scheduler, shut down at the end of the block whatever happens."""
    options.setdefault("deadline_margin_s", SHORT_S)
    options.setdefault("heartbeat_s", SHORT_S)
    scheduler = ProbeScheduler(probes, run, clock, **options)
    scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.shutdown(grace_s=1.0)


def healthy(scheduler: ProbeScheduler[Probe]) -> bool:
    # A function, not the property inline, so that mypy does not take the
    # value as fixed after a first assert on it.
    return scheduler.healthy


@pytest.fixture(autouse=True)
def _apscheduler_never_sees_an_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # A probe's failure, cut-off or cancellation at shutdown must stay inside
    # the scheduler's own handling: APScheduler logs errors for what escapes.
    yield
    escaped = [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.name.startswith("apscheduler") and r.levelno >= logging.ERROR
    ]
    assert escaped == []


def messages(caplog: pytest.LogCaptureFixture, start: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(start)]


@pytest.mark.anyio
async def test_it_runs_every_probe_repeatedly() -> None:
    run = Runs()
    probes = [Probe(f"node{i}#0") for i in range(5)]
    async with running(probes, run) as scheduler:
        await until(
            lambda: all(run.started[p.key] >= 3 for p in probes), WAIT_S, awaited="three runs each"
        )
        assert scheduler.healthy


def test_it_spreads_phases_evenly_and_the_same_every_time() -> None:
    keys = [f"node{i}#0" for i in range(1000)]
    phases = [phase_s(key, 10.0) for key in keys]
    # The same in every process: a digest of the key, not hash() (which
    # PYTHONHASHSEED changes), so a restart keeps each probe's phase.
    assert (phase_s("node0#0", 10.0), phase_s("farm-oms-1#0", 30.0)) == (
        2.676812468234842,
        11.708179892402987,
    )
    assert all(0 <= p < 10.0 for p in phases)
    per_second = Counter(int(p) for p in phases)
    assert sorted(per_second) == list(range(10))
    assert max(per_second.values()) < 150  # 100 expected in each second
    assert len({round(p, 3) for p in phases}) > 900


@pytest.mark.anyio
async def test_it_schedules_each_first_run_at_the_probes_phase_within_one_interval() -> None:
    interval, jitter = 10.0, 0.5  # the default jitter: 10% of 10 s, capped at 0.5 s
    probes = [Probe(f"node{i}#0", Every(interval)) for i in range(200)]
    before = time.time()
    async with running(probes, Runs()) as scheduler:
        for probe in probes:
            when = scheduler.next_run(probe.key)
            assert when is not None
            first = when.timestamp()
            assert before <= first <= before + interval + jitter + 1
            off_grid = (first - phase_s(probe.key, interval)) % interval
            assert off_grid <= jitter + 1e-5 or off_grid >= interval - 1e-5


def test_its_runs_stay_on_the_grid_however_long_it_jitters() -> None:
    # APScheduler's own IntervalTrigger drifts by jitter/2 a period; the
    # scheduler's trigger must not. Private, since only the scheduler uses it.
    from watchdog.scheduler import _PhaseLockedTrigger

    interval, phase, jitter = 10.0, 3.25, 5.0
    trigger = _PhaseLockedTrigger(interval, phase, jitter)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, now)
    first = round((fire.timestamp() - phase) // interval)
    for k in range(first, first + 1000):
        grid = phase + k * interval
        assert grid - 1e-5 <= fire.timestamp() <= grid + jitter + 1e-5
        fire = trigger.get_next_fire_time(fire, now)


@pytest.mark.anyio
async def test_it_cuts_off_a_probe_that_hangs_and_the_others_keep_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog.scheduler")
    run = Runs(hang={"stuck#0"})
    probes = [Probe("stuck#0", spec=Spec(timeout_s=SHORT_S)), Probe("fine#0")]
    async with running(probes, run):
        await until(lambda: run.cancelled["stuck#0"] >= 2, WAIT_S, awaited="two cut-offs")
        await until(
            lambda: run.finished["fine#0"] >= 5, WAIT_S, awaited="five runs of the other probe"
        )
    assert run.finished["stuck#0"] == 0
    cut = messages(caplog, "probe run cut off key=stuck#0 deadline_s=0.1")
    assert len(cut) >= 2


@pytest.mark.anyio
async def test_it_logs_a_probe_that_raises_and_keeps_scheduling_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="watchdog.scheduler")
    run = Runs(boom={"buggy#0"})
    probes = [Probe("buggy#0"), Probe("fine#0")]
    async with running(probes, run):
        await until(
            lambda: run.started["buggy#0"] >= 3, WAIT_S, awaited="three runs of the raising probe"
        )
        await until(
            lambda: run.finished["fine#0"] >= 3, WAIT_S, awaited="three runs of the other probe"
        )
    raised = messages(caplog, "probe run raised key=buggy#0 error=RuntimeError")
    assert len(raised) >= 3
    assert all(r.exc_info is not None for r in raised)


@pytest.mark.anyio
async def test_it_never_runs_a_probe_while_its_previous_run_is_in_flight() -> None:
    # Each run takes three intervals: runs due meanwhile are skipped, not stacked.
    run = Runs(slow={"slow#0", "slow#1"}, slow_s=3 * SHORT_S)
    probes = [Probe("slow#0"), Probe("slow#1")]
    async with running(probes, run) as scheduler:
        await until(
            lambda: all(run.finished[p.key] >= 3 for p in probes),
            WAIT_S,
            awaited="three slow runs each",
        )
        assert scheduler.in_flight <= 2
    assert run.most == Counter({"slow#0": 1, "slow#1": 1})


@pytest.mark.anyio
async def test_replace_adds_removes_reschedules_and_leaves_the_rest_alone() -> None:
    run = Runs()
    keep = Probe("keep#0", Every(10.0))
    tweak = Probe("tweak#0")
    gone = Probe("gone#0")
    slowed = Probe("slowed#0")
    async with running([keep, tweak, gone, slowed], run) as scheduler:
        await until(
            lambda: all(run.started[p.key] >= 2 for p in (tweak, gone, slowed)),
            WAIT_S,
            awaited="first runs",
        )
        # replace() does not await: no run can start between the reads and it.
        keep_next = scheduler.next_run(keep.key)
        gone_runs, slowed_runs = run.started[gone.key], run.started[slowed.key]
        tweaked = replace(tweak, spec=Spec(timeout_s=2.0))
        added = Probe("added#0")
        changes = scheduler.replace([keep, tweaked, replace(slowed, schedule=Every(10.0)), added])

        assert changes == Changes(
            added=("added#0",),
            removed=("gone#0",),
            rescheduled=("slowed#0",),
            updated=("tweak#0",),
        )
        assert scheduler.next_run(keep.key) == keep_next
        assert scheduler.next_run(gone.key) is None
        slowed_next = scheduler.next_run(slowed.key)
        assert slowed_next is not None
        off_grid = (slowed_next.timestamp() - phase_s(slowed.key, 10.0)) % 10.0
        assert off_grid <= 0.5 + 1e-5 or off_grid >= 10.0 - 1e-5

        await until(lambda: run.started[added.key] >= 2, WAIT_S, awaited="runs of the added probe")
        await until(
            lambda: run.seen[tweak.key] == tweaked, WAIT_S, awaited="a run of the updated probe"
        )
        assert run.started[gone.key] == gone_runs
        # A run submitted just before the reload may still start.
        assert run.started[slowed.key] <= slowed_runs + 1
        assert scheduler.next_run(keep.key) == keep_next


@pytest.mark.anyio
async def test_probes_added_soon_run_first_within_soon_then_on_their_phase() -> None:
    run = Runs()
    keep = Probe("keep#0", Every(600.0))
    # The scheduler's own clock, held still: where it puts the first runs is
    # arithmetic on it, not a measure of how fast anything went.
    now = time.time()
    async with running([keep], run, clock=lambda: now) as scheduler:
        moved = [Probe(f"moved#{i}", Every(600.0)) for i in range(20)]
        scheduler.replace([keep, *moved], soon_s=0.5)
        firsts = [scheduler.next_run(p.key) for p in moved]
        assert all(f is not None and now <= f.timestamp() <= now + 0.5 + 1e-6 for f in firsts)
        # Then each goes back to its own phase, as anywhere else.
        await until(
            lambda: all(run.started[p.key] >= 1 for p in moved), WAIT_S, awaited="first runs"
        )
        for probe in moved:
            after = scheduler.next_run(probe.key)
            assert after is not None
            off_grid = (after.timestamp() - phase_s(probe.key, 600.0)) % 600.0
            assert off_grid <= 0.5 + 1e-5 or off_grid >= 600.0 - 1e-5
        assert run.started[keep.key] <= 1  # not moved: its own turn


@pytest.mark.anyio
async def test_shutdown_lets_runs_finish_within_the_grace_period() -> None:
    run = Runs(slow={"slow#0"}, slow_s=0.2)
    scheduler = ProbeScheduler([Probe("slow#0")], run, time.time, heartbeat_s=SHORT_S)
    scheduler.start()
    try:
        await until(lambda: scheduler.in_flight == 1, WAIT_S, awaited="a run in flight")
    finally:
        await scheduler.shutdown(grace_s=WAIT_S)
    assert scheduler.in_flight == 0
    assert run.finished["slow#0"] == run.started["slow#0"]
    assert run.cancelled["slow#0"] == 0


@pytest.mark.anyio
async def test_shutdown_cancels_runs_past_the_grace_period_and_nothing_runs_after() -> None:
    run = Runs(hang={"stuck#0"})
    probes = [Probe("stuck#0", spec=Spec(timeout_s=60.0)), Probe("fine#0")]
    scheduler = ProbeScheduler(probes, run, time.time, heartbeat_s=SHORT_S)
    scheduler.start()
    try:
        await until(lambda: run.started["stuck#0"] == 1, WAIT_S, awaited="the hanging run")
        await until(lambda: run.finished["fine#0"] >= 2, WAIT_S, awaited="runs of the other probe")
        assert healthy(scheduler)
    finally:
        await scheduler.shutdown(grace_s=SHORT_S)
    assert scheduler.in_flight == 0
    assert run.cancelled["stuck#0"] == 1
    assert not healthy(scheduler)
    started = sum(run.started.values())
    await asyncio.sleep(4 * SHORT_S)  # several intervals: none may start a run
    assert sum(run.started.values()) == started
    await scheduler.shutdown()  # a second time does nothing


@pytest.mark.anyio
async def test_it_reports_each_runs_lag_as_non_negative_seconds() -> None:
    lags: list[tuple[str, float]] = []
    probes = [Probe(f"node{i}#0") for i in range(3)]
    run = Runs()

    def on_lag(key: str, seconds: float) -> None:
        lags.append((key, seconds))

    async with running(probes, run, on_lag=on_lag):
        await until(lambda: len(lags) >= 15, WAIT_S, awaited="fifteen lag reports")
    assert {key for key, _ in lags} == {p.key for p in probes}
    assert all(isinstance(s, float) and s >= 0 for _, s in lags)
    assert len(lags) <= sum(run.started.values())


@pytest.mark.anyio
async def test_a_lag_callback_that_raises_does_not_stop_the_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="watchdog.scheduler")
    run = Runs()

    def on_lag(key: str, seconds: float) -> None:
        raise ValueError("metrics bug")

    async with running([Probe("fine#0")], run, on_lag=on_lag):
        await until(lambda: run.finished["fine#0"] >= 3, WAIT_S, awaited="three runs")
    assert messages(caplog, "lag callback raised key=fine#0")


@pytest.mark.anyio
async def test_healthy_needs_a_recent_heartbeat() -> None:
    skew = [0.0]

    def clock() -> float:
        return time.time() + skew[0]

    run = Runs()
    scheduler = ProbeScheduler([Probe("fine#0")], run, clock, heartbeat_s=SHORT_S)
    assert not healthy(scheduler)
    scheduler.start()
    try:
        assert healthy(scheduler)
        skew[0] = 60.0  # as if the loop had not ticked for a minute
        assert not healthy(scheduler)
        await until(lambda: healthy(scheduler), WAIT_S, awaited="the next heartbeat")
    finally:
        await scheduler.shutdown()
    assert not healthy(scheduler)


@pytest.mark.anyio
async def test_it_takes_the_daemons_probe_config_log_probes_included() -> None:
    # Imported here so that a broken config module fails this test alone.
    from watchdog.config import LogSpec, ProbeConfig, Schedule
    from watchdog.probes import HttpSpec

    http = ProbeConfig(
        "web", 0, "http", HttpSpec("http://127.0.0.1:9/", timeout_s=SHORT_S), Schedule(0.1), 3
    )
    log = ProbeConfig("web", 1, "log", LogSpec("/var/log/*.log"), Schedule(0.1), 4)
    started: Counter[str] = Counter()
    cancelled: Counter[str] = Counter()

    async def hang(probe: ProbeConfig) -> None:
        started[probe.key] += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled[probe.key] += 1
            raise

    scheduler = ProbeScheduler([http, log], hang, time.time, deadline_margin_s=SHORT_S)
    scheduler.start()
    try:
        assert scheduler.next_run("web#1") is not None
        # Cut off at the spec's timeout plus the margin (a log probe, which
        # has no timeout, at its interval), then run again.
        await until(lambda: cancelled["web#0"] >= 2, WAIT_S, awaited="two cut-offs")
        await until(
            lambda: cancelled["web#1"] >= 2, WAIT_S, awaited="two cut-offs of the log probe"
        )
    finally:
        await scheduler.shutdown()
    assert set(started) == {"web#0", "web#1"}


def test_it_refuses_two_probes_with_one_key() -> None:
    with pytest.raises(ValueError, match="two probes have the key 'a#0'"):
        ProbeScheduler([Probe("a#0"), Probe("a#0")], Runs(), time.time)


def test_it_refuses_a_jitter_over_half_the_interval() -> None:
    with pytest.raises(ValueError, match=r"jitter_ratio must be within \[0, 0.5\], got 0.6"):
        ProbeScheduler([], Runs(), time.time, jitter_ratio=0.6)


@pytest.mark.anyio
async def test_it_starts_once() -> None:
    scheduler: ProbeScheduler[Probe] = ProbeScheduler([], Runs(), time.time)
    scheduler.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            scheduler.start()
    finally:
        await scheduler.shutdown()
