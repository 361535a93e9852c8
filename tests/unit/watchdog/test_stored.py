"""The stored concerns as the daemon's loop awaits them: each call runs on
the store's one worker thread, so a store that hangs holds up neither the
loop nor what it runs (probes, the API); calls keep their order, and a
failing store's error reaches the caller. Blocking is a gate the test opens
(no sleeps, no durations asserted): the loop must keep ticking while a call
is held on the worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres_server import Backend
from waiting import until

from alerts.model import Alert, Notification
from watchdog.api_link import CallError
from watchdog.daemon import Daemon
from watchdog.outbox import Outbox
from watchdog.store import Store, StoreError
from watchdog.stored import ThreadedOutbox, worker

pytestmark = pytest.mark.anyio

T0 = 1000.0
# Loop turns seen while a store call is held: enough to show the loop ran
# on (with a blocked loop there would be none).
TICKS = 5


class Gate:
    """Holds whatever calls `wait` on its thread until the test opens it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.threads: list[str] = []

    def wait(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        if not self.opened.wait(timeout=30):  # bounded: a broken test fails, never hangs
            raise AssertionError("the gate was never opened")


class Ticker:
    """A probe scheduler's stand-in: counts its turns, every 50 ms."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.ticks += 1


@pytest.fixture
def executor() -> Iterator[Any]:
    pool = worker()
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as opened:
        yield opened


async def held(call: Callable[[], Any], gate: Gate) -> tuple[Any, int, int]:
    """Run `call()` (an awaitable's maker) while a ticker runs; once the
    store is held, wait for TICKS more ticks, then open the gate. Returns
    what the call returned, the ticks seen while it was held, and the
    ticks before it was."""
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    try:
        task = asyncio.ensure_future(call())
        await until(gate.entered.is_set, awaited="the store call to start")
        before = ticker.ticks
        await until(lambda: ticker.ticks >= before + TICKS, awaited="ticks during the call")
        assert not task.done()  # still held on the worker, and the loop ran on
        gate.opened.set()
        result = await task
        return result, ticker.ticks - before, before
    finally:
        ticking.cancel()


def note(n: int = 1) -> Notification:
    alert = Alert(
        key="outage:db",
        kind="outage",
        severity="critical",
        root_cause=("db",),
        summary="db is down",
        started_at=T0,
    )
    return Notification(f"outage:db#{n}", alert, "firing", T0)


async def test_the_loop_ticks_on_while_the_outbox_is_held_and_the_answer_is_right(
    store: Store, executor: Any
) -> None:
    gate = Gate()

    class Held(Outbox):
        def counts(self) -> dict[tuple[str, str], int]:
            gate.wait()
            return super().counts()

    outbox = ThreadedOutbox(Held(store), executor)
    assert await outbox.put([note()], ["slack", "webhook"], T0) == 2

    counts, during, _ = await held(outbox.counts, gate)

    assert counts == {("slack", "pending"): 1, ("webhook", "pending"): 1}
    assert during >= TICKS
    assert gate.threads == ["watchdog-store_0"]  # the store's thread, not the loop's


async def test_calls_keep_their_order_on_the_one_worker(store: Store, executor: Any) -> None:
    outbox = ThreadedOutbox(Outbox(store), executor)
    # Not awaited one by one: asked together, they still run in order.
    put, counts = await asyncio.gather(
        outbox.put([note(1), note(2)], ["slack"], T0), outbox.counts()
    )
    assert (put, counts) == (2, {("slack", "pending"): 2})


async def test_a_failing_store_raises_its_error_to_the_awaiting_caller(
    store: Store, executor: Any
) -> None:
    class Broken(Outbox):
        def pending(self) -> dict[str, int]:
            raise StoreError("cannot read the outbox: disk I/O error")

    with pytest.raises(StoreError, match="disk I/O error"):
        await ThreadedOutbox(Broken(store), executor).pending()
    # The worker outlives it: the next call is answered.
    assert await ThreadedOutbox(Outbox(store), executor).pending() == {}


ESTATE = """\
version: 1
state: {{path: {state}}}
nodes:
  db:
    probes: [{{tcp: '127.0.0.1:9', interval: 1m}}]
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE.format(state=tmp_path / "state.db"))
    made = Daemon(path)
    try:
        yield made
    finally:
        made._writer.shutdown(wait=True)
        made.store.close()


async def test_an_alert_round_waits_for_a_held_store_without_holding_the_loop(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    ended = daemon.silences.ended

    def held_ended(now: float) -> Any:
        gate.wait()
        return ended(now)

    monkeypatch.setattr(daemon.silences, "ended", held_ended)

    queued, during, _ = await held(daemon.alert_once, gate)

    assert queued == 0  # nothing has reported yet: nothing to say
    assert during >= TICKS
    assert daemon.alert_rounds == 1


async def test_an_api_read_of_a_held_store_leaves_the_loop_running(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    counts = daemon.outbox.counts

    def held_counts() -> dict[tuple[str, str], int]:
        gate.wait()
        return counts()

    monkeypatch.setattr(daemon.outbox, "counts", held_counts)
    await daemon.stored.outbox.put([note()], ["console"], T0)

    answer, during, _ = await held(lambda: daemon.api_call("outbox_counts", {}), gate)

    assert answer == [["console", "pending", 1]]
    assert during >= TICKS


async def test_a_failing_store_answers_the_api_503_and_the_daemon_goes_on(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(now: float) -> Any:
        raise StoreError("cannot read silences: server closed the connection")

    monkeypatch.setattr(daemon.silences, "active", broken)
    with pytest.raises(CallError) as refused:
        await daemon.api_call("silences", {})
    assert refused.value.status == 503
    assert await daemon.api_call("maneuvers", {}) == []
