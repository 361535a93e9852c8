"""The log probe on real files that the tests write while it follows them,
with a clock the test sets: a spike in a steady stream, steady noise, a new
error template flagged once, silence flagged then cleared, a missing file,
and a restart that resumes from the saved offsets."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from clocks import Clock

from topology import State
from watchdog.anomalies import LogRules
from watchdog.probe_state import ProbeState
from watchdog.probes.log import LogProbe, LogSpec
from watchdog.store import Store

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0
RULES = LogRules(interval_s=10.0, learning_s=60.0, min_count=5, silence_s=0)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(tmp_path / "state.db", clock=lambda: T0)
    yield opened  # type: ignore[misc]
    opened.close()


def write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def probe(path: Path, clock: Clock, store: Store | None = None, **rules: object) -> LogProbe:
    spec = LogSpec(str(path), rules=LogRules(**{**_fields(RULES), **rules}), from_start=True)
    state = ProbeState(store) if store is not None else None
    return LogProbe(spec, "api#0", state=state, clock=clock, interval_s=10.0)


def _fields(rules: LogRules) -> dict[str, object]:
    return {name: getattr(rules, name) for name in rules.__slots__}


async def steady(log: LogProbe, path: Path, clock: Clock, rng: random.Random, polls: int) -> None:
    """`polls` polls 10 s apart, each with 50 info lines and 1 to 3 errors."""
    for _ in range(polls):
        clock.now += 10
        infos = [
            f"INFO request {rng.randrange(10**6)} served in {rng.randrange(90)}ms"
            for _ in range(50)
        ]
        errors = [
            f"ERROR upstream 10.0.0.{rng.randrange(9)} refused" for _ in range(rng.randint(1, 3))
        ]
        write(path, *infos, *errors)
        result = await log.check()
        assert result.state is State.UP, result.reason  # steady noise is never flagged


async def test_a_spike_in_a_steady_stream_is_flagged_and_clears(tmp_path: Path) -> None:
    path, clock, rng = tmp_path / "app.log", Clock(T0), random.Random(7)
    path.touch()
    log = probe(path, clock)
    await steady(log, path, clock, rng, polls=30)

    clock.now += 10
    write(path, *[f"ERROR upstream 10.0.0.{i % 9} refused" for i in range(60)])
    result = await log.check()
    assert result.state is State.DEGRADED
    assert result.reason.startswith("error rate spike: 60 error lines in 10s")
    assert result.anomalies == (result.reason,)
    [shown] = log.details(private=True)["anomalies"]
    assert (shown["kind"], shown["count"]) == ("error_spike", 60)
    assert shown["sample"] == "ERROR upstream 10.0.0.0 refused"

    # The spike bucket stays the last complete one for one more interval.
    clock.now += 10
    write(path, "INFO calm again")
    assert (await log.check()).state is State.DEGRADED
    await steady(log, path, clock, rng, polls=3)  # asserts up again
    log.close()


async def test_a_new_error_template_is_flagged_once_not_per_line(tmp_path: Path) -> None:
    path, clock, rng = tmp_path / "app.log", Clock(T0), random.Random(8)
    path.touch()
    log = probe(path, clock)
    await steady(log, path, clock, rng, polls=8)

    clock.now += 10
    write(path, "ERROR disk /dev/sda1 full: cannot write segment 17")
    first = await log.check()
    clock.now += 10
    write(path, "ERROR disk /dev/sdb2 full: cannot write segment 18")
    second = await log.check()
    assert first.state is second.state is State.DEGRADED
    assert "new error template" in first.reason
    [anomaly] = log.details()["anomalies"]
    assert (anomaly["kind"], anomaly["count"]) == ("new_error_template", 2)
    log.close()


async def test_silence_is_flagged_then_cleared_when_lines_return(tmp_path: Path) -> None:
    path, clock = tmp_path / "app.log", Clock(T0)
    path.touch()
    log = probe(path, clock, silence_s=30.0, silence_is_down=True)
    write(path, "INFO started")
    assert (await log.check()).state is State.UP
    clock.now += 31
    quiet = await log.check()
    assert (quiet.state, quiet.reason.startswith("no log line for 31s")) == (State.DOWN, True)
    clock.now += 5
    write(path, "INFO back")
    assert (await log.check()).state is State.UP
    log.close()


async def test_a_missing_file_is_a_finding_until_it_appears(tmp_path: Path) -> None:
    path, clock = tmp_path / "app.log", Clock(T0)
    log = probe(path, clock)
    missing = await log.check()
    assert (missing.state, missing.reason) == (State.DEGRADED, f"no log file matches {path}")
    write(path, "INFO started", "INFO ready")
    ok = await log.check()
    assert (ok.state, ok.reason) == (State.UP, "ok: 2 new lines")
    log.close()


async def test_a_restart_resumes_from_the_saved_offset_and_templates(
    tmp_path: Path, store: Store
) -> None:
    path, clock = tmp_path / "app.log", Clock(T0)
    write(path, "INFO one", "ERROR cannot reach db-1", "INFO two")
    log = probe(path, clock, store)
    assert (await log.check()).reason == "ok: 3 new lines"
    write(path, "INFO three")
    assert log.counters.lines == 3
    log.close()  # the daemon stops; a line arrives while it is down
    write(path, "INFO four")

    clock.now += 120  # past learning: a template known before is not new
    again = probe(path, clock, store)
    write(path, "ERROR cannot reach db-2")
    result = await again.check()
    assert (result.state, result.reason) == (State.UP, "ok: 3 new lines")
    assert again.counters.lines == 3  # three, four and the error: none twice, none lost
    # Its learning period is not started again: a new error is new at once.
    clock.now += 10
    write(path, "ERROR disk full on /dev/sda1")
    fresh = await again.check()
    assert (fresh.state, fresh.reason.startswith("new error template")) == (State.DEGRADED, True)
    again.close()


async def test_a_quiet_poll_writes_nothing_to_the_store(tmp_path: Path, store: Store) -> None:
    path, clock = tmp_path / "app.log", Clock(T0)
    write(path, "INFO one")
    log = probe(path, clock, store)
    await log.check()

    def saved() -> list[tuple[str, float]]:
        rows = store.query("test", "SELECT part, saved_at FROM probe_state ORDER BY part")
        return [(part, at) for part, at in rows]

    first = saved()
    assert [part for part, _ in first] == ["analyzer", "positions"]
    clock.now += 1  # the same rate bucket, no line: nothing changed
    await log.check()
    assert saved() == first
    log.close()


async def test_a_store_that_cannot_save_does_not_stop_the_probe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tmp_path / "app.log", Clock(T0)
    store = Store.open(tmp_path / "other.db", clock=lambda: T0)
    log = probe(path, clock, store)
    store.close()  # the daemon stopping while a poll runs, or a full disk
    write(path, "INFO one")
    result = await log.check()
    assert (result.state, result.reason) == (State.UP, "ok: 1 new line")
    assert "cannot save log probe state" in caplog.text
    log.close()


OUT_OF_DESCRIPTORS = """
import asyncio, json, os, resource, sys
from watchdog.probes.log import LogProbe, LogSpec

path = sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

async def main():
    probe = LogProbe(LogSpec(path, from_start=True), "api#0", state=None, interval_s=10.0)
    await asyncio.to_thread(lambda: None)  # its worker thread, as a running daemon has it
    hog = []
    try:
        for _ in range(1000):  # bounded: the limit is 256
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    result = await probe.check()
    for fd in hog:
        os.close(fd)
    after = await probe.check()
    probe.close()
    print(json.dumps([[str(r.state), r.reason, r.inconclusive] for r in (result, after)]))

asyncio.run(main())
"""


def test_a_log_probe_out_of_descriptors_is_inconclusive_not_degraded(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    write(log, "INFO started", "INFO serving")
    done = subprocess.run(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS, str(log)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        ["unknown", "no verdict: the watchdog is out of file descriptors (EMFILE)", "descriptors"],
        ["up", "ok: 2 new lines", ""],
    ]
