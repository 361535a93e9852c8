"""Delivery with a worker per sink, on the real outbox (SQLite, Postgres)
awaited as the daemon awaits it (its calls on a worker thread), with
recording sinks and a clock set by hand: a sink that hangs, fails or throttles
delays only itself; order per occurrence, backoff, wakes, stopping with a send
in flight, sink bugs logged without their message, and a slow outbox write
not taken for a sink that does not answer."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from clocks import Clock
from postgres_server import Backend
from stored_async import threaded
from waiting import until

from alerts.delivery import Backoff, Delivery, Entry
from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from topology import State
from watchdog.outbox import Outbox
from watchdog.store import Store, StoreError

pytestmark = pytest.mark.anyio

T0 = 1000.0
SECRET = "xoxb-s3cr3t-in-a-bug-7731"


class Recording:
    """A sink that records what it delivers. `failures` are raised first,
    one per attempt; while `hang` is set, a send blocks until `release` is
    set (never, unless the test does) and records whether it was cut off."""

    def __init__(self, name: str, failures: list[Exception] | None = None) -> None:
        self._name = name
        self.failures = list(failures or [])
        self.hang = False
        self.release = asyncio.Event()
        self.sent: list[tuple[str, Receipt | None]] = []
        self.cancelled = 0
        self.raised_at: list[str] = []  # file:line of each failure raised

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        if self.hang:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.failures:
            frame = inspect.currentframe()
            assert frame is not None
            self.raised_at.append(f"{__file__}:{frame.f_lineno + 1}")
            raise self.failures.pop(0)
        self.sent.append((notification.id, previous))
        return Receipt(self._name, MappingProxyType({"n": str(len(self.sent))}))

    async def aclose(self) -> None:
        pass


class Finding(Recording):
    """A `Recoverable` recording sink: the far side keeps what it was sent
    even when the answer is lost (`hang` after posting)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.posted: dict[str, Receipt] = {}
        self.lookups: list[str] = []

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        receipt = Receipt(self.name, MappingProxyType({"n": str(len(self.posted) + 1)}))
        self.posted[notification.id] = receipt
        await super().send(notification, previous)
        return receipt

    async def find(self, notification: Notification, previous: Receipt | None) -> Receipt | None:
        self.lookups.append(notification.id)
        return self.posted.get(notification.id)


def note(event: str, key: str = "outage:farm", n: int = 1) -> Notification:
    alert = Alert(
        key=key,
        kind="outage",
        severity="critical",
        root_cause=(key.removeprefix("outage:"),),
        summary=f"{key} down",
        started_at=900.0,
        critical=(Impacted("workflow", State.DOWN, 600.0, 900.0),),
    )
    return Notification(f"{alert.occurrence}#{n}:{event}", alert, event, T0 + n)  # type: ignore[arg-type]


FIRING, RESOLVED = note("firing", n=1), note("resolved", n=2)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as store:
        yield store


@pytest.fixture
def outbox(store: Store) -> Outbox:
    return Outbox(store)


async def settled(delivery: Delivery, *sinks: str) -> None:
    """Until each of `sinks`' workers sleeps with nothing due left untried
    (so after a `wake()`, until the round it asked for is over)."""
    await until(
        lambda: all(delivery.status()[s].waiting for s in sinks), awaited=f"{sinks} waiting"
    )


def ids(sink: Recording) -> list[str]:
    return [sent for sent, _ in sink.sent]


async def test_it_delivers_to_one_sink_while_another_hangs(outbox: Outbox) -> None:
    clock = Clock(T0)
    slow, hook = Recording("slow"), Recording("webhook")
    slow.hang = True
    delivery = Delivery(
        threaded(outbox), {"slow": slow, "webhook": hook}, clock, send_timeout_s=3600
    )
    outbox.put([FIRING, RESOLVED], ["slow", "webhook"], T0)

    async with delivery.running():
        await until(lambda: len(hook.sent) == 2, awaited="the webhook's two deliveries")
        await settled(delivery, "webhook")
        status = delivery.status()
        assert status["slow"].busy
        assert status["slow"].sending_since == T0
        assert not status["slow"].waiting
        assert (status["webhook"].busy, status["webhook"].delivered) == (False, 2)
        assert status["webhook"].next_attempt_at is None  # nothing pending

    assert ids(hook) == [FIRING.id, RESOLVED.id]
    assert hook.sent[1][1] == Receipt("webhook", MappingProxyType({"n": "1"}))
    assert (slow.sent, slow.cancelled) == ([], 1)
    assert outbox.counts() == {("slow", "pending"): 2, ("webhook", "delivered"): 2}


async def test_a_sink_that_times_out_retries_on_its_own_schedule(outbox: Outbox) -> None:
    clock = Clock(T0)
    slow, hook = Recording("slow"), Recording("webhook")
    slow.hang = True
    delivery = Delivery(
        threaded(outbox),
        {"slow": slow, "webhook": hook},
        clock,
        backoff=Backoff(base_s=30),
        send_timeout_s=0.05,
    )
    outbox.put([FIRING], ["slow", "webhook"], T0)

    async with delivery.running():
        await settled(delivery, "slow", "webhook")
        slow_status = delivery.status()["slow"]
        assert slow_status.last_error == "slow: no answer within 0.05s"
        assert (slow_status.failures, slow_status.next_attempt_at) == (1, T0 + 30)
        assert ids(hook) == [FIRING.id]

        slow.hang = False
        clock.now += 30
        delivery.wake()
        await until(lambda: slow.sent, awaited="the retry")
    assert ids(slow) == [FIRING.id]


async def test_it_keeps_the_order_of_each_occurrence(outbox: Outbox) -> None:
    clock = Clock(T0)
    hook = Recording("webhook")
    a = [note(e, "outage:a", n) for n, e in enumerate(("firing", "repeat", "resolved"), 1)]
    b = [note(e, "outage:b", n) for n, e in enumerate(("firing", "repeat", "resolved"), 1)]
    for first, second in zip(a, b, strict=True):  # queued interleaved, a round apart
        outbox.put([first, second], ["webhook"], T0)

    async with Delivery(threaded(outbox), {"webhook": hook}, clock).running():
        await until(lambda: len(hook.sent) == 6, awaited="six deliveries")

    assert ids(hook) == [a[0].id, b[0].id, a[1].id, b[1].id, a[2].id, b[2].id]
    previous = dict(hook.sent)
    # Each message gets the receipt of its own occurrence's message before.
    assert previous[a[1].id] == Receipt("webhook", MappingProxyType({"n": "1"}))
    assert previous[b[1].id] == Receipt("webhook", MappingProxyType({"n": "2"}))
    assert previous[a[2].id] == Receipt("webhook", MappingProxyType({"n": "3"}))
    assert previous[b[2].id] == Receipt("webhook", MappingProxyType({"n": "4"}))


async def test_it_backs_off_and_honours_retry_after(outbox: Outbox) -> None:
    clock = Clock(T0)
    slack = Recording(
        "slack",
        [
            SinkError("slack: 500", permanent=False),
            SinkError("slack: ratelimited", permanent=False, retry_after_s=120),
        ],
    )
    delivery = Delivery(
        threaded(outbox), {"slack": slack}, clock, backoff=Backoff(base_s=10, max_s=60)
    )
    outbox.put([FIRING, RESOLVED], ["slack"], T0)

    async with delivery.running():
        await settled(delivery, "slack")
        status = delivery.status()["slack"]
        assert (status.last_error, status.next_attempt_at) == ("slack: 500", T0 + 10)

        clock.now = T0 + 9
        delivery.wake()
        await settled(delivery, "slack")  # woken too early: nothing due, not even the resolution
        assert (slack.sent, delivery.status()["slack"].failures) == ([], 1)

        clock.now = T0 + 10
        delivery.wake()
        await settled(delivery, "slack")
        status = delivery.status()["slack"]
        assert (status.last_error, status.next_attempt_at) == ("slack: ratelimited", T0 + 130)

        clock.now = T0 + 130
        delivery.wake()
        await until(lambda: len(slack.sent) == 2, awaited="both deliveries")
        await settled(delivery, "slack")
        status = delivery.status()["slack"]
        assert (status.delivered, status.failures, status.last_error) == (2, 2, "")
    assert ids(slack) == [FIRING.id, RESOLVED.id]


async def test_a_wake_from_any_thread_delivers_what_was_queued(outbox: Outbox) -> None:
    clock = Clock(T0)
    slack, hook = Recording("slack"), Recording("webhook")
    delivery = Delivery(threaded(outbox), {"slack": slack, "webhook": hook}, clock)
    delivery.wake()  # not running: nothing to wake, no error

    async with delivery.running():
        await settled(delivery, "slack", "webhook")
        assert delivery.status()["webhook"].next_attempt_at is None
        outbox.put([FIRING], ["slack", "webhook"], T0)

        delivery.wake("webhook")
        await until(lambda: hook.sent, awaited="the webhook's delivery")
        await settled(delivery, "webhook")
        assert slack.sent == []  # asleep: only the webhook was woken

        await asyncio.to_thread(delivery.wake)
        await until(lambda: slack.sent, awaited="slack's delivery")
    assert (ids(slack), ids(hook)) == ([FIRING.id], [FIRING.id])


async def test_stopping_cuts_off_a_send_in_flight_which_is_retried_later(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    slack = Recording("slack")
    slack.hang = True
    delivery = Delivery(threaded(outbox), {"slack": slack}, clock, send_timeout_s=3600)
    outbox.put([FIRING], ["slack"], T0)

    delivery.start()
    await until(lambda: delivery.status()["slack"].busy, awaited="a send in flight")
    with caplog.at_level(logging.WARNING, logger="alerts.delivery"):
        await delivery.stop(timeout_s=5.0)

    assert slack.cancelled == 1
    assert "did not stop" not in caplog.text
    assert not delivery.status()["slack"].running
    assert not delivery.status()["slack"].busy
    assert outbox.counts() == {("slack", "pending"): 1}
    [entry] = outbox.due(clock.now, 10)
    # The attempt was claimed before it was sent, so it counts: the next
    # one knows it may have reached the sink (one that can look, looks).
    assert entry.attempts == 1

    slack.hang = False
    assert await delivery.run_once() == 1  # at the next start
    assert ids(slack) == [FIRING.id]


async def test_a_recoverable_sink_cut_off_mid_send_is_asked_before_sending_again(
    outbox: Outbox,
) -> None:
    clock = Clock(T0)
    slack = Finding("slack")
    slack.hang = True  # posted, then the answer never comes
    outbox.put([FIRING, RESOLVED], ["slack"], T0)
    delivery = Delivery(threaded(outbox), {"slack": slack}, clock, send_timeout_s=3600)
    async with delivery.running():
        await until(lambda: slack.posted, awaited="the first post")
    assert slack.cancelled == 1

    slack.hang = False
    async with Delivery(threaded(outbox), {"slack": slack}, clock).running() as restarted:
        await until(lambda: outbox.counts() == {("slack", "delivered"): 2}, awaited="delivery")
        assert restarted.status()["slack"].delivered == 2
    assert slack.lookups == [FIRING.id]  # looked up once, found: not posted again
    assert list(slack.posted) == [FIRING.id, RESOLVED.id]
    assert ids(slack) == [RESOLVED.id]
    # The resolution updates the message that the lost attempt posted.
    assert slack.sent[0][1] == Receipt("slack", MappingProxyType({"n": "1"}))


async def test_a_sink_bug_is_logged_without_its_message_and_retried(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    buggy = Recording("buggy", [KeyError(f"Authorization: Bearer {SECRET}")])
    delivery = Delivery(threaded(outbox), {"buggy": buggy}, clock, backoff=Backoff(base_s=5))
    outbox.put([FIRING], ["buggy"], T0)

    with caplog.at_level(logging.DEBUG, logger="alerts.delivery"):
        async with delivery.running():
            await settled(delivery, "buggy")
            assert delivery.status()["buggy"].last_error == "buggy: KeyError"
            clock.now += 5
            delivery.wake()
            await until(lambda: buggy.sent, awaited="the retry")

    assert SECRET not in caplog.text
    assert "Traceback" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)
    assert caplog.messages[:2] == [
        "delivery attempt failed unexpectedly sink=buggy"
        f" notification={FIRING.id} error=KeyError at={buggy.raised_at[0]}",
        f"delivery failed sink=buggy notification={FIRING.id} attempt=1 retry_in_s=5.0"
        " error=buggy: KeyError",
    ]
    assert ids(buggy) == [FIRING.id]


class Failing(Outbox):
    """The real outbox, whose first `times` reads fail as a broken file's do."""

    def __init__(self, store: Store, times: int) -> None:
        super().__init__(store)
        self.times = times
        self.raised_at = ""

    def due(self, now: float, limit: int, sink: str | None = None) -> list[Entry]:
        if self.times:
            self.times -= 1
            frame = inspect.currentframe()
            assert frame is not None
            self.raised_at = f"{__file__}:{frame.f_lineno + 1}"
            raise StoreError(f"cannot read the outbox: disk I/O error near {SECRET}")
        return super().due(now, limit, sink)


async def test_a_worker_outlives_a_failing_store_and_backs_off(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Failing(store, times=2)
    hook = Recording("webhook")
    delivery = Delivery(threaded(outbox), {"webhook": hook}, Clock(T0))
    outbox.put([FIRING], ["webhook"], T0)

    with caplog.at_level(logging.ERROR, logger="alerts.delivery"):
        async with delivery.running():
            # Woken rather than waiting the retry out (either gives the same rounds).
            await until(lambda: len(caplog.records) == 1, awaited="the first failure")
            delivery.wake()
            await until(lambda: len(caplog.records) == 2, awaited="the second failure")
            delivery.wake()
            await until(lambda: hook.sent, awaited="the delivery after the failures")

    line = f"delivery round failed sink=webhook error=StoreError at={outbox.raised_at}"
    assert caplog.messages == [f"{line} retry_in_s=1.0", f"{line} retry_in_s=2.0"]
    assert SECRET not in caplog.text


async def test_starting_gives_up_what_a_removed_sink_had_queued(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    hook = Recording("webhook")
    outbox.put([FIRING, RESOLVED], ["gone", "webhook"], T0)
    [gone, _] = outbox.due(T0, 10)
    outbox.retry(gone, "gone: 500", T0, T0 + 3600)  # not due for an hour: given up all the same

    with caplog.at_level(logging.WARNING, logger="alerts.delivery"):
        async with Delivery(threaded(outbox), {"webhook": hook}, clock).running():
            await until(lambda: len(hook.sent) == 2, awaited="the webhook's deliveries")

    assert outbox.counts() == {("gone", "failed"): 2, ("webhook", "delivered"): 2}
    assert "delivery given up sink=gone entries=2 error=no sink named 'gone'" in caplog.messages


async def test_run_once_is_refused_while_running_and_start_twice(outbox: Outbox) -> None:
    delivery = Delivery(threaded(outbox), {"webhook": Recording("webhook")}, Clock(T0))
    async with delivery.running():
        assert delivery.is_running
        with pytest.raises(RuntimeError) as running:
            await delivery.run_once()
        assert str(running.value) == "delivery is running: wake() it instead of run_once()"
        with pytest.raises(RuntimeError) as twice:
            delivery.start()
        assert str(twice.value) == "delivery is already running"
    assert not delivery.is_running
    await delivery.stop()  # stopping twice: nothing to do
    assert await delivery.run_once() == 0


async def test_run_once_reads_each_sink_on_its_own(outbox: Outbox) -> None:
    clock = Clock(T0)
    busy, quiet = Recording("busy"), Recording("quiet")
    flood = [note("firing", f"outage:n{i}") for i in range(5)]
    outbox.put(flood, ["busy"], T0)
    outbox.put([FIRING], ["quiet"], T0)
    delivery = Delivery(threaded(outbox), {"busy": busy, "quiet": quiet}, clock, batch=3)

    assert await delivery.run_once() == 4  # a full batch for one sink leaves the other its own
    assert ids(busy) == [n.id for n in flood[:3]]
    assert ids(quiet) == [FIRING.id]
    assert await delivery.run_once() == 2


class HeldBegin(Outbox):
    """The real outbox, whose `begin` waits (on the store's thread) until
    the test lets it go, as a slow database's write does."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.entered = threading.Event()
        self.go = threading.Event()

    def begin(self, entry: Entry, at: float) -> bool:
        self.entered.set()
        if not self.go.wait(timeout=30):  # bounded: a broken test fails, never hangs
            raise AssertionError("begin was never let go")
        return super().begin(entry, at)


async def test_a_slow_outbox_write_is_not_counted_as_the_sink_not_answering(
    store: Store,
) -> None:
    outbox = HeldBegin(store)
    slack = Finding("slack")
    outbox.put([FIRING], ["slack"], T0)
    # A deadline far shorter than the write is held: were the write inside
    # it, the attempt would fail as the sink's timeout.
    delivery = Delivery(threaded(outbox), {"slack": slack}, Clock(T0), send_timeout_s=0.05)

    async with delivery.running():
        await until(outbox.entered.is_set, awaited="the attempt's begin")
        for _ in range(6):  # well past the 50 ms deadline, the write still held
            await asyncio.sleep(0.05)
        outbox.go.set()
        await until(lambda: ids(slack) == [FIRING.id], awaited="the delivery")
        await settled(delivery, "slack")
        status = delivery.status()["slack"]

    assert (status.delivered, status.failures, status.last_error) == (1, 0, "")
    assert outbox.counts() == {("slack", "delivered"): 1}
