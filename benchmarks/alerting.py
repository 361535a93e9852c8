"""Benchmark of the alerting pipeline: a farm shutdown, and the outbox.

Everything runs in-process with a recording sink (no network) and an
injected clock for the alerting policy; wall time is measured with
time.perf_counter.

1. Farm shutdown. A topology of one farm with --dependents nodes running on
   it (--critical of them critical) is written to a temp file and loaded with
   `watchdog.config.load_config`; a `LiveState` has one probe on the farm
   (failure_threshold 1). Every probe reports up, then the farm's probe
   reports down: we time that `LiveState.record` (the transitions of every
   dependent) and the `Store.record` of those transitions in a file-backed
   store. Then the alert loop runs one round per simulated second exactly as
   `Daemon.alert_once` does (`Alerting.update(now, live.failed(),
   live.drifting())` -> `Outbox.put` -> `Delivery.run_once`) with a `Policy`
   of settle_s=10: the clock is advanced, not slept. The round that runs
   once the settle window has passed is timed from its start to the sink
   call. The alert loop goes on for --after simulated seconds to count any
   further message, then the farm comes back and one more round must send
   the resolution. Medians of --repeat runs.
2. Outbox throughput. --notifications notifications about distinct alerts
   are queued with one `Outbox.put` for one recording sink in a file-backed
   store, then `Delivery.run_once` rounds run until every one is delivered:
   notifications per second end to end (put + due + send + mark delivered),
   per second for delivery alone, and for `Outbox.put` alone.

The store keeps its production settings (WAL, synchronous=FULL), so the
file system of the temp dir matters: it is printed. Figures, never
assertions: tests never time anything.

    .venv/bin/python benchmarks/alerting.py [--dependents 1000] [--critical 50]
        [--notifications 10000] [--repeat 3] [--after 30] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from report import table, verdict

from alerts.delivery import Delivery
from alerts.model import Alert, Notification, Receipt
from alerts.rules import Alerting, Policy
from alerts.transitions import Transition
from topology import State
from watchdog.config import load_config
from watchdog.live import LiveState
from watchdog.outbox import Outbox
from watchdog.store import Store
from watchdog.stored import ThreadedOutbox, worker

SETTLE_S = 10.0
TICK_S = 1.0  # the daemon's alert loop tick
START = 1_700_000_000.0  # the simulated epoch
FARM = "farm"
FARM_PROBE = f"{FARM}#0"
SINK = "recorder"

TARGET_MESSAGES = 1  # one per root cause
TARGET_LATENCY_S = 1.0  # settle window's end -> sink call


class Clock:
    """The injected clock: simulated seconds since the epoch, advanced by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(slots=True)
class RecordingSink:
    """A sink that keeps every notification and the perf_counter of each call."""

    name: str = SINK
    calls: list[tuple[float, Notification]] = field(default_factory=list)
    closed: bool = False

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        self.calls.append((time.perf_counter(), notification))
        return Receipt(self.name, MappingProxyType({"n": str(len(self.calls))}))

    async def aclose(self) -> None:
        self.closed = True


class Pipeline:
    """The alert loop of the daemon, with its parts built as the daemon builds them."""

    def __init__(self, live: LiveState, store: Store, clock: Clock, sink: RecordingSink) -> None:
        self.live = live
        self.store = store
        self.clock = clock
        self.sink = sink
        self.alerting = Alerting(Policy(settle_s=SETTLE_S))
        self.outbox = Outbox(store)
        # As the daemon's: delivery awaits the outbox, run on the store's thread.
        self.delivery = Delivery(ThreadedOutbox(self.outbox, WORKER), {sink.name: sink}, clock)

    def commit(self, transitions: list[Transition]) -> None:
        """What `Daemon._commit` stores."""
        if transitions:
            topology = self.live.topology
            targets = {t.node: topology.recovery_target_s(t.node) for t in transitions}
            self.store.record(transitions, recovery_targets=targets)

    async def alert_once(self) -> int:
        """`Daemon.alert_once` without the metrics."""
        if not self.live.settled:
            return 0
        now = self.clock()
        notes = self.alerting.update(now, self.live.failed(), self.live.drifting())
        if notes:
            self.outbox.put(notes, list(self.delivery.sinks), now)
        return await self.delivery.run_once()


# The store's thread, as the daemon's: one for the whole run.
WORKER = worker()


# --- 1. the farm shutdown --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shutdown:
    """One farm shutdown, as measured."""

    dependents: int
    critical: int
    transitions: int
    failed: int
    record_s: float  # LiveState.record of the farm going down
    store_s: float  # Store.record of its transitions
    settling_round_s: float  # median alert round inside the settle window
    messages: int  # sent from the farm going down until --after seconds past the settle
    latency_s: float  # start of the first round past the settle window -> sink call
    round_s: float  # that whole round
    resolved: int  # messages sent by the first round after the farm is back
    events: tuple[str, ...]
    summary: str


def write_estate(path: Path, dependents: int, critical: int) -> None:
    """One farm with one probe, and `dependents` nodes running on it."""
    lines = [
        "version: 1",
        "nodes:",
        f"  {FARM}:",
        "    kind: farm",
        '    probes: [{tcp: "127.0.0.1:9", failure_threshold: 1, success_threshold: 1}]',
    ]
    width = len(str(dependents))
    for i in range(dependents):
        flag = ", critical: true" if i < critical else ""
        lines.append(f"  app-{i:0{width}d}: {{runs_on: [{FARM}]{flag}}}")
    path.write_text("\n".join(lines) + "\n")


async def _shutdown(directory: Path, dependents: int, critical: int, after_s: float) -> Shutdown:
    estate = directory / "estate.yaml"
    write_estate(estate, dependents, critical)
    config = load_config(estate)
    clock = Clock()
    live = LiveState(config.topology, config.probes, clock)
    sink = RecordingSink()
    with Store.open(directory / "state.db", clock=clock) as store:
        pipe = Pipeline(live, store, clock, sink)
        pipe.commit(live.record(FARM_PROBE, State.UP, "ok", 0.001))
        assert live.settled, "every probe has reported"
        for _ in range(3):  # a quiet estate: nothing to say
            clock.advance(TICK_S)
            await pipe.alert_once()
        assert not sink.calls, "nothing is sent while everything is up"

        clock.advance(TICK_S)
        down_at = clock()
        t0 = time.perf_counter()
        transitions = live.record(FARM_PROBE, State.DOWN, "connect refused", None)
        t1 = time.perf_counter()
        pipe.commit(transitions)
        t2 = time.perf_counter()

        # The daemon's loop ticks every second: rounds inside the settle
        # window, then the round past it, then the rest of --after.
        settling: list[float] = []
        latency_s = round_s = math.nan
        rounds = math.ceil((SETTLE_S + after_s) / TICK_S)
        first_past = True
        for _ in range(rounds):
            started = time.perf_counter()
            calls_before = len(sink.calls)
            past = clock() - down_at >= SETTLE_S
            await pipe.alert_once()
            ended = time.perf_counter()
            if not past:
                settling.append(ended - started)
            elif first_past:
                first_past = False
                if len(sink.calls) > calls_before:
                    latency_s = sink.calls[calls_before][0] - started
                round_s = ended - started
            clock.advance(TICK_S)
        messages = len(sink.calls)
        events = tuple(f"{n.event} {n.alert.key}" for _, n in sink.calls)
        summary = sink.calls[0][1].alert.summary if sink.calls else ""

        pipe.commit(live.record(FARM_PROBE, State.UP, "ok", 0.001))
        await pipe.alert_once()
        resolved = len(sink.calls) - messages
        events += tuple(f"{n.event} {n.alert.key}" for _, n in sink.calls[messages:])
        await sink.aclose()
    return Shutdown(
        dependents=dependents,
        critical=critical,
        transitions=len(transitions),
        failed=sum(1 for t in transitions if t.view == "effective"),
        record_s=t1 - t0,
        store_s=t2 - t1,
        settling_round_s=statistics.median(settling) if settling else math.nan,
        messages=messages,
        latency_s=latency_s,
        round_s=round_s,
        resolved=resolved,
        events=events,
        summary=summary,
    )


def measure_shutdown(
    directory: Path, dependents: int, critical: int, after_s: float, repeat: int
) -> list[Shutdown]:
    """`repeat` farm shutdowns, each in a fresh store."""
    runs = []
    for i in range(repeat):
        run_dir = directory / f"shutdown-{i}"
        run_dir.mkdir()
        runs.append(asyncio.run(_shutdown(run_dir, dependents, critical, after_s)))
    return runs


# --- 2. outbox throughput ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Throughput:
    """One outbox run, as measured."""

    notifications: int
    put_s: float
    deliver_s: float
    rounds: int
    delivered: int
    sent: int

    @property
    def total_s(self) -> float:
        return self.put_s + self.deliver_s


def notifications(count: int, at: float) -> list[Notification]:
    """`count` firing notifications about distinct alerts, shaped like the farm's."""
    width = len(str(count))
    out = []
    for i in range(count):
        node = f"node-{i:0{width}d}"
        alert = Alert(
            key=f"outage:{node}",
            kind="outage",
            severity="critical",
            root_cause=(node,),
            summary=f"{node} down",
            started_at=at,
        )
        out.append(Notification(f"{alert.key}@{at:.3f}#1:firing", alert, "firing", at))
    return out


async def _throughput(directory: Path, count: int) -> Throughput:
    clock = Clock()
    sink = RecordingSink()
    notes = notifications(count, clock())
    with Store.open(directory / "state.db", clock=clock) as store:
        outbox = Outbox(store)
        delivery = Delivery(ThreadedOutbox(outbox, WORKER), {sink.name: sink}, clock)
        t0 = time.perf_counter()
        queued = outbox.put(notes, [sink.name], clock())
        t1 = time.perf_counter()
        assert queued == count, f"queued {queued} of {count}"
        delivered = rounds = 0
        limit = math.ceil(count / delivery.batch) + 2  # a bound, never reached when all goes well
        for _ in range(limit):
            if delivered >= count:
                break
            got = await delivery.run_once()
            rounds += 1
            delivered += got
            if got == 0:
                break  # nothing due: something is wrong, stop rather than spin
        t2 = time.perf_counter()
        await sink.aclose()
    return Throughput(count, t1 - t0, t2 - t1, rounds, delivered, len(sink.calls))


def measure_throughput(directory: Path, count: int, repeat: int) -> list[Throughput]:
    """`repeat` outbox runs, each in a fresh store."""
    runs = []
    for i in range(repeat):
        run_dir = directory / f"outbox-{i}"
        run_dir.mkdir()
        runs.append(asyncio.run(_throughput(run_dir, count)))
    return runs


# --- the report ---------------------------------------------------------------


def file_system(path: Path) -> str:
    """The type of the file system holding `path` (from /proc/mounts)."""
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1]
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:,.2f} ms" if seconds < 10 else f"{seconds:,.2f} s"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "n/a"


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(
    shutdowns: list[Shutdown], outbox: list[Throughput], repeat: int, after_s: float, fs: str
) -> str:
    """The printed tables: the farm shutdown, the outbox, then the targets."""
    s = shutdowns[0]
    messages = max(r.messages for r in shutdowns)  # the worst run counts
    resolved = max(r.resolved for r in shutdowns)
    latency = _median([r.latency_s for r in shutdowns])
    worst_latency = max(r.latency_s for r in shutdowns)
    shutdown_rows = [
        ["", "median", "worst"],
        ["dependents (critical)", f"{s.dependents:,} ({s.critical})", ""],
        [
            "transitions (effective)",
            f"{s.transitions:,} ({s.failed:,})",
            "",
        ],
        [
            "LiveState.record, farm down",
            _ms(_median([r.record_s for r in shutdowns])),
            _ms(max(r.record_s for r in shutdowns)),
        ],
        [
            "Store.record of its transitions",
            _ms(_median([r.store_s for r in shutdowns])),
            _ms(max(r.store_s for r in shutdowns)),
        ],
        [
            "alert round inside the settle window",
            _ms(_median([r.settling_round_s for r in shutdowns])),
            _ms(max(r.settling_round_s for r in shutdowns)),
        ],
        ["settle window end -> sink call", _ms(latency), _ms(worst_latency)],
        [
            "  that whole round",
            _ms(_median([r.round_s for r in shutdowns])),
            _ms(max(r.round_s for r in shutdowns)),
        ],
        [f"messages, down to settle + {after_s:g} s", "", f"{messages}"],
        ["messages, first round after recovery", "", f"{resolved}"],
    ]
    o = outbox[0]
    put_s = _median([r.put_s for r in outbox])
    deliver_s = _median([r.deliver_s for r in outbox])
    total_s = _median([r.total_s for r in outbox])
    outbox_rows = [
        ["", "median", "rate"],
        ["notifications (distinct alerts)", f"{o.notifications:,}", ""],
        ["Outbox.put (one call)", _ms(put_s), _rate(o.notifications, put_s)],
        [
            f"Delivery.run_once x {o.rounds} rounds",
            _ms(deliver_s),
            _rate(o.notifications, deliver_s),
        ],
        ["end to end (put + deliver)", _ms(total_s), _rate(o.notifications, total_s)],
        ["delivered / sent", f"{min(r.delivered for r in outbox):,}", ""],
        ["  sink calls", f"{min(r.sent for r in outbox):,}", ""],
    ]
    targets = [
        ["target", "wanted", "measured", ""],
        [
            "messages per root cause (farm down)",
            f"{TARGET_MESSAGES}",
            f"{messages}",
            verdict(messages == TARGET_MESSAGES),
        ],
        [
            "messages per root cause (farm back)",
            f"{TARGET_MESSAGES}",
            f"{resolved}",
            verdict(resolved == TARGET_MESSAGES),
        ],
        [
            "settle window end -> sink call (worst)",
            f"< {TARGET_LATENCY_S:g} s",
            _ms(worst_latency),
            verdict(worst_latency < TARGET_LATENCY_S),
        ],
        [
            "outbox throughput, end to end",
            "(figure)",
            _rate(o.notifications, total_s),
            "",
        ],
    ]
    out = [
        f"Alerting pipeline benchmark (medians of {repeat} run{'s' if repeat != 1 else ''};"
        f" store on {fs},"
        " WAL, synchronous=FULL)",
        "",
        f"Farm shutdown: 1 farm, {s.dependents:,} dependents, settle {SETTLE_S:g} s,"
        f" one alert round per simulated {TICK_S:g} s",
        "",
        table(shutdown_rows),
        "",
        "Latency runs from the start of the first round past the settle window. The",
        f"daemon's alert loop ticks every {TICK_S:g} s and also wakes when a settling alert",
        "becomes due, so that round starts when the window ends.",
        "",
        "sent: " + "; ".join(s.events),
        "first message: " + (s.summary[:100] + ("..." if len(s.summary) > 100 else "")),
        "",
        f"Outbox: {o.notifications:,} notifications, one recording sink",
        "",
        table(outbox_rows),
        "",
        "Targets",
        "",
        table(targets),
    ]
    return "\n".join(out) + "\n"


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description="Benchmark the alerting pipeline.")
    parser.add_argument(
        "--dependents", type=_positive, default=1000, help="nodes on the farm (default 1000)"
    )
    parser.add_argument(
        "--critical", type=int, default=50, help="how many of them are critical (default 50)"
    )
    parser.add_argument(
        "--notifications",
        type=_positive,
        default=10_000,
        help="notifications through the outbox (default 10000)",
    )
    parser.add_argument("--repeat", type=_positive, default=3, help="runs per median (default 3)")
    parser.add_argument(
        "--after",
        type=float,
        default=30.0,
        help="simulated seconds of alert loop after the settle window (default 30)",
    )
    parser.add_argument(
        "--dir", metavar="DIR", help="where the stores go (default: a temp dir under $TMPDIR)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.critical <= args.dependents:
        parser.error("--critical must be between 0 and --dependents")
    if args.after < 0:
        parser.error("--after must not be negative")
    with tempfile.TemporaryDirectory(prefix="alerts-bench-", dir=args.dir) as scratch:
        directory = Path(scratch)
        shutdowns = measure_shutdown(
            directory, args.dependents, args.critical, args.after, args.repeat
        )
        outbox = measure_throughput(directory, args.notifications, args.repeat)
        fs = file_system(directory)
    sys.stdout.write(report(shutdowns, outbox, args.repeat, args.after, fs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
