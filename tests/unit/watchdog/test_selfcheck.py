"""The watchdog's own trouble told apart from the estate's: loop stalls,
inconclusive runs, and the one alert about the watchdog itself."""

from __future__ import annotations

import errno

from clocks import Clock

from topology import State
from watchdog.probes.result import ProbeResult, inconclusive, local_trouble, timeout_reason
from watchdog.selfcheck import Impairment, LoopMonitor


def monitor(clock: Clock) -> LoopMonitor:
    loop = LoopMonitor(period_s=0.1, keep_s=60.0, clock=clock)
    loop.record(clock.now, 0.0)
    return loop


def test_the_loop_monitor_finds_the_stalls_that_overlap_a_run() -> None:
    clock = Clock(100.0)
    loop = monitor(clock)
    clock.now = 101.5
    loop.record(101.5, 1.4)  # woke 1.4 s late: stalled from 100.1 to 101.5
    clock.now = 101.6
    loop.record(101.6, 0.0)
    assert loop.stalled_s(100.5, 101.0) == 1.4
    assert loop.stalled_s(101.55, 101.6) == 0.0
    assert loop.stalled_s(99.0, 100.0) == 0.0


def test_the_loop_monitor_sees_a_stall_still_going_on() -> None:
    clock = Clock(100.0)
    loop = monitor(clock)
    clock.now = 103.1  # nothing woke the monitor for 3.1 s: the loop is stuck now
    assert round(loop.stalled_s(102.0, 103.1), 6) == 3.0


def test_old_stalls_are_forgotten() -> None:
    clock = Clock(100.0)
    loop = monitor(clock)
    loop.record(100.5, 2.0)
    assert loop.worst_s == 2.0
    clock.now = 200.0
    loop.record(200.0, 0.0)
    assert loop.worst_s == 0.0
    assert loop.stalled_s(99.0, 101.0) == 0.0


def test_a_timeout_during_a_stall_is_inconclusive_and_a_refusal_is_not() -> None:
    clock = Clock(100.0)
    loop = monitor(clock)
    loop.record(101.0, 0.5)
    clock.now = 101.2
    loop.record(101.2, 0.0)
    judge = Impairment()
    timeout = ProbeResult(State.DOWN, timeout_reason(2.0))
    judged = judge.judge(timeout, started=100.0, ended=101.2, timeout_s=2.0, loop=loop)
    assert (judged.state, judged.inconclusive) == (State.UNKNOWN, "stall")
    assert judged.reason == (
        "no verdict: the watchdog's event loop stalled for 0.5s during the check"
    )
    # A stall under a fifth of the timeout does not excuse it.
    assert judge.judge(timeout, started=100.0, ended=101.2, timeout_s=5.0, loop=loop) is timeout
    refused = ProbeResult(State.DOWN, "connect refused")
    assert judge.judge(refused, started=100.0, ended=101.2, timeout_s=2.0, loop=loop) is refused


def test_the_watchdog_says_so_while_runs_are_inconclusive_then_stops() -> None:
    impairment = Impairment(window_s=60.0)
    assert impairment.alert(1000.0) is None
    for i in range(1000):
        impairment.note("descriptors", 1000.0 + i * 0.01)
    impairment.note("cut_off", 1005.0)
    alert = impairment.alert(1010.0)
    assert alert is not None
    assert (alert.key, alert.kind, alert.severity, alert.started_at) == (
        "impaired:watchdog",
        "impaired",
        "warning",
        1000.0,
    )
    assert alert.summary == (
        "the watchdog cannot judge part of the estate: 1,001 probe runs in the last 1m "
        "gave no verdict (cut off at the deadline: 1, out of file descriptors: 1,000); "
        "their targets keep their last verdict"
    )
    assert impairment.alert(1070.0) is None
    assert impairment.counts(1070.0) == {}


def test_local_trouble_is_the_watchdogs_own_resources_only() -> None:
    assert local_trouble(OSError(errno.EMFILE, "Too many open files")) == (
        "descriptors",
        "the watchdog is out of file descriptors (EMFILE)",
    )
    # asyncio folds the errors of several addresses into one text.
    folded = OSError("Multiple exceptions: [Errno 24] Too many open files, [Errno 24] ...")
    assert local_trouble(folded) is not None
    assert local_trouble(OSError(errno.ECONNREFUSED, "refused")) is None
    assert local_trouble(OSError(errno.EAGAIN, "again")) is None
    assert local_trouble(OSError(errno.EAGAIN, "again"), spawning=True) == (
        "processes",
        "the watchdog cannot start a process now (EAGAIN)",
    )
    wrapped = RuntimeError("connect failed")
    wrapped.__cause__ = OSError(errno.ENOBUFS, "No buffer space")
    assert local_trouble(wrapped) == (
        "buffers",
        "the system is out of socket buffers (ENOBUFS)",
    )
    assert inconclusive("memory", "x") == ProbeResult(
        State.UNKNOWN, "no verdict: x", None, inconclusive="memory"
    )
