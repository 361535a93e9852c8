"""Delivery without loss: the loop around every sink that sends what the
outbox holds, retries transient failures with exponential backoff, gives up
on permanent ones, keeps each alert's notifications in order per sink, and
never lets a dead or slow sink hold up the others: running, each sink has a
worker of its own that waits only for its own sends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from alerts.model import Notification, Receipt, Recoverable, Sink, SinkError

__all__ = ["Backoff", "Delivery", "Entry", "Outbox", "SinkStatus"]

log = logging.getLogger(__name__)

# How long a store that failed is left alone before a worker reads it again
# (a wake comes sooner), doubled per failure in a row up to `poll_s`: a
# broken file is neither hammered nor logged about in a loop.
_STORE_RETRY_S = 1.0
# The shortest sleep of a worker that found nothing to do though something
# looked due: never a busy loop, whatever the outbox answers.
_MIN_SLEEP_S = 0.01


@dataclass(frozen=True, slots=True)
class Entry:
    """One notification to deliver to one sink, as the outbox holds it."""

    id: int
    sink: str
    notification: Notification
    attempts: int


class Outbox(Protocol):
    """What delivery needs of the durable outbox. Async: an outbox in a
    database answers over the network or from a thread, and delivery's
    workers share the loop with everything else, so they never wait for it
    blocking. Each call raises what the store raises when it fails (a
    worker logs it and tries again later)."""

    async def due(self, now: float, limit: int, sink: str | None = None) -> Sequence[Entry]:
        """Pending entries due by `now` (of `sink` only, unless None): only
        the first pending one of each alert occurrence per sink, oldest
        first, at most `limit`."""
        ...

    async def next_due(self, sink: str) -> float | None:
        """When the earliest entry of `sink` that `due` would return falls
        due (maybe already past); None when nothing is pending for it."""
        ...

    async def pending(self) -> Mapping[str, int]:
        """How many entries are pending, per sink that has any."""
        ...

    async def receipt(self, notification: Notification, sink: str) -> Receipt | None:
        """The receipt of the last delivered notification of the same alert
        occurrence to `sink`."""
        ...

    async def begin(self, entry: Entry, at: float) -> bool:
        """Claim `entry` for one attempt, recording, durably, that it
        starts (its count): a compare-and-set that succeeds only if the
        entry is still pending at `entry.attempts`. False when it is not
        (another replica, or a holder that lost its lease, has it): then
        the attempt is not made."""
        ...

    async def delivered(self, entry: Entry, receipt: Receipt, at: float) -> None:
        """Record, durably, that `entry` was delivered with `receipt`."""
        ...

    async def retry(self, entry: Entry, error: str, at: float, next_at: float) -> None:
        """Record a transient failure of `entry`: tried again at `next_at`."""
        ...

    async def give_up(self, entry: Entry, error: str, at: float) -> None:
        """Record a permanent failure of `entry`: never tried again."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: `base_s` doubled per attempt, at most `max_s`;
    a sink's Retry-After wins when it asks for longer."""

    base_s: float = 1.0
    max_s: float = 300.0

    def delay_s(self, attempts: int, retry_after_s: float | None) -> float:
        """How long to wait after `attempts` failed attempts."""
        delay: float = min(self.max_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return max(delay, retry_after_s or 0.0)


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """What delivery to one sink is doing, for the API and metrics. Times
    are the delivery's clock; counts are since the `Delivery` was made."""

    sink: str
    running: bool  # its worker runs (`start` .. `stop`)
    sending_since: float | None  # when the attempt in flight started
    waiting: bool  # asleep until `next_attempt_at` or a wake, nothing due left untried
    next_attempt_at: float | None  # the earliest pending entry's due time, at the last look
    delivered: int
    failures: int  # failed attempts, transient or permanent
    last_error: str  # the last attempt's error; '' when it delivered (or none yet)
    last_attempt_at: float | None

    @property
    def busy(self) -> bool:
        """An attempt is in flight (a hanging sink stays busy until its
        send timeout)."""
        return self.sending_since is not None


class _Worker:
    """The mutable state of one sink's delivery; its task when running."""

    __slots__ = (
        "delivered",
        "failures",
        "last_attempt_at",
        "last_error",
        "next_attempt_at",
        "sending_since",
        "store_failures",
        "task",
        "waiting",
        "wake",
    )

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.sending_since: float | None = None
        self.waiting = False
        self.next_attempt_at: float | None = None
        self.delivered = 0
        self.failures = 0
        self.last_error = ""
        self.last_attempt_at: float | None = None
        self.store_failures = 0  # rounds in a row that the outbox failed


class Delivery:
    """Sends what the outbox holds, one notification at a time per sink,
    each sink independently of the others.

    Two ways to drive it: `run_once()` delivers one round of what is due
    now; or `start()` (or `async with delivery.running():`) gives each sink
    a worker of its own that delivers its due entries, then sleeps until its
    next entry is due or `wake()` is called, until `stop()`."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Mapping[str, Sink],
        clock: Callable[[], float],
        *,
        backoff: Backoff | None = None,
        send_timeout_s: float = 30.0,
        batch: int = 500,
        poll_s: float = 60.0,
    ) -> None:
        """`clock` gives seconds since the epoch, as the outbox's times;
        `send_timeout_s` bounds one attempt; `batch` bounds one read of the
        outbox; `poll_s` bounds a worker's sleep, so that it also sees
        entries queued without a wake (another process, a clock that
        jumped)."""
        self.outbox = outbox
        self.sinks = dict(sinks)
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.send_timeout_s = send_timeout_s
        self.batch = batch
        self.poll_s = poll_s
        self._workers = {name: _Worker() for name in self.sinks}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._giving_up: asyncio.Task[None] | None = None

    # --- one round ----------------------------------------------------------

    async def run_once(self) -> int:
        """Deliver every entry due now, each sink on its own and concurrently
        (in order, one at a time per sink); entries of a sink no longer
        configured are given up when due. Returns how many were delivered.
        Raises RuntimeError while the workers run: `wake()` them instead."""
        if self.is_running:
            raise RuntimeError("delivery is running: wake() it instead of run_once()")
        names = sorted(set(self.sinks) | set(await self.outbox.pending()))
        rounds = await asyncio.gather(*(self._round(name) for name in names))
        return sum(delivered for delivered, _ in rounds)

    # --- running ------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """The workers run (between `start` and `stop`)."""
        return self._loop is not None

    def start(self) -> None:
        """Start a worker per sink in the running event loop, after giving
        up every pending entry of a sink no longer configured. Raises
        RuntimeError when already running."""
        if self.is_running:
            raise RuntimeError("delivery is already running")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._thread = threading.get_ident()
        # The workers wait for it before their first round: what a removed
        # sink had queued is given up before anything else is sent.
        giving_up = asyncio.create_task(self._give_up_removed(), name="delivery give up")
        self._giving_up = giving_up
        for name, worker in self._workers.items():
            worker.wake.clear()
            worker.task = asyncio.create_task(
                self._work(name, worker, giving_up), name=f"delivery {name}"
            )

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every worker: a send in flight is cut off (its entry stays
        pending and is tried again at the next start; a `Recoverable` sink
        first looks whether it went through). Waits at most `timeout_s` for
        the workers to end; does nothing when not running."""
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if self._giving_up is not None:
            tasks.append(self._giving_up)
            self._giving_up = None
        for worker in self._workers.values():
            worker.task = None
        self._loop = self._thread = None
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: a task here ends only by cancellation
        for task in pending:
            log.warning("delivery worker did not stop task=%r", task.get_name())

    @contextlib.asynccontextmanager
    async def running(self, stop_timeout_s: float = 5.0) -> AsyncIterator[Delivery]:
        """`async with delivery.running():` the workers run inside the block."""
        self.start()
        try:
            yield self
        finally:
            await self.stop(stop_timeout_s)

    def wake(self, sink: str | None = None) -> None:
        """Have the workers (only `sink`'s, if given) look at the outbox now,
        as after queueing notifications. Cheap, callable any number of
        times and from any thread; does nothing when not running."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if threading.get_ident() == thread:
            self._wake(sink)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake, sink)

    def status(self) -> dict[str, SinkStatus]:
        """Each configured sink's delivery, by name (no outbox read: for
        pending counts, ask the outbox)."""
        return {
            name: SinkStatus(
                sink=name,
                running=w.task is not None and not w.task.done(),
                sending_since=w.sending_since,
                waiting=w.waiting,
                next_attempt_at=w.next_attempt_at,
                delivered=w.delivered,
                failures=w.failures,
                last_error=w.last_error,
                last_attempt_at=w.last_attempt_at,
            )
            for name, w in sorted(self._workers.items())
        }

    def _wake(self, sink: str | None) -> None:
        for name, worker in self._workers.items():
            if sink is None or sink == name:
                worker.waiting = False  # so that a caller can wait for the round it asked for
                worker.wake.set()

    async def _work(self, name: str, worker: _Worker, giving_up: asyncio.Task[None]) -> None:
        """One sink's worker: once `giving_up` is over, deliver what is due,
        sleep until the next entry is due or a wake, again, until
        cancelled."""
        await asyncio.wait([giving_up])  # it never raises: it logs
        while True:
            # Cleared before reading: a wake during the round asks for another.
            worker.wake.clear()
            try:
                _, handled = await self._round(name)
                next_at = await self.outbox.next_due(name)
                worker.store_failures = 0
            except Exception as err:  # the store failing: the worker outlives it
                worker.store_failures += 1
                retry_s = min(self.poll_s, _STORE_RETRY_S * 2.0 ** (worker.store_failures - 1))
                log.error(
                    "delivery round failed sink=%s error=%s at=%s retry_in_s=%.1f",
                    name,
                    type(err).__name__,
                    _where(err),
                    retry_s,
                )
                handled, next_at = 0, self.clock() + retry_s
            worker.next_attempt_at = next_at
            delay = None if next_at is None else next_at - self.clock()
            if delay is not None and delay <= 0:
                if handled:
                    await asyncio.sleep(0)  # more is due: go on, letting others run
                    continue
                delay = _MIN_SLEEP_S
            await self._sleep(worker, delay)

    async def _sleep(self, worker: _Worker, delay: float | None) -> None:
        """Until `delay` seconds passed (at most `poll_s`) or a wake."""
        if worker.wake.is_set():
            return
        worker.waiting = True
        try:
            async with asyncio.timeout(self.poll_s if delay is None else min(delay, self.poll_s)):
                await worker.wake.wait()
        except TimeoutError:
            pass
        finally:
            worker.waiting = False

    async def _give_up_removed(self) -> None:
        """Give up the pending entries of sinks no longer configured: no
        worker would ever deliver them."""
        try:
            pending = await self.outbox.pending()
            for name in sorted(set(pending) - set(self.sinks)):
                error = f"no sink named {name!r}"
                count = 0
                # Each read returns the first pending entry of each
                # occurrence; giving them up brings the next ones forward.
                while count < pending[name]:
                    entries = await self.outbox.due(math.inf, self.batch, sink=name)
                    if not entries:
                        break
                    for entry in entries:
                        await self.outbox.give_up(entry, error, self.clock())
                    count += len(entries)
                log.warning("delivery given up sink=%s entries=%d error=%s", name, count, error)
        except Exception as err:  # a store failing now fails every round after: logged there
            log.error(
                "cannot give up entries of removed sinks error=%s at=%s",
                type(err).__name__,
                _where(err),
            )

    # --- attempts -----------------------------------------------------------

    async def _round(self, name: str) -> tuple[int, int]:
        """Attempt, in order, the entries of sink `name` due now; returns
        (delivered, attempted)."""
        entries = await self.outbox.due(self.clock(), self.batch, sink=name)
        sink = self.sinks.get(name)
        delivered = 0
        for entry in entries:
            if sink is None:  # a sink removed from the file since it was queued
                await self.outbox.give_up(entry, f"no sink named {name!r}", self.clock())
            elif await self._attempt(name, sink, entry):
                delivered += 1
        return delivered, len(entries)

    async def _attempt(self, name: str, sink: Sink, entry: Entry) -> bool:
        """One attempt at `entry`, its outcome recorded; True if delivered."""
        worker = self._workers[name]
        # The outbox's time is not the sink's: read before its attempt's
        # deadline starts (a failing store fails the round, as `due` does).
        previous = await self.outbox.receipt(entry.notification, name)
        # The claim, before any send: an entry two deliveries read (two
        # replicas around a change of lease holder) is sent by one.
        if not await self.outbox.begin(entry, self.clock()):
            log.info(
                "delivery skipped: claimed elsewhere sink=%s notification=%s",
                name,
                entry.notification.id,
            )
            return False
        worker.sending_since = worker.last_attempt_at = self.clock()
        try:
            async with asyncio.timeout(self.send_timeout_s) as deadline:
                receipt = await self._recovered(sink, entry, previous, deadline)
                if receipt is None:
                    receipt = await sink.send(entry.notification, previous)
        except SinkError as err:
            await self._failed(worker, entry, str(err), err.permanent, err.retry_after_s)
            return False
        except TimeoutError:
            error = f"{name}: no answer within {self.send_timeout_s:g}s"
            await self._failed(worker, entry, error, False, None)
            return False
        except Exception as err:  # a sink bug must not stop delivery
            # Neither its message nor a traceback: either may quote a secret
            # (a token in a header, a URL with its password).
            log.error(
                "delivery attempt failed unexpectedly sink=%s notification=%s error=%s at=%s",
                name,
                entry.notification.id,
                type(err).__name__,
                _where(err),
            )
            await self._failed(worker, entry, f"{name}: {type(err).__name__}", False, None)
            return False
        finally:
            worker.sending_since = None
        await self.outbox.delivered(entry, receipt, self.clock())
        worker.delivered += 1
        worker.last_error = ""
        return True

    async def _recovered(
        self, sink: Sink, entry: Entry, previous: Receipt | None, deadline: asyncio.Timeout
    ) -> Receipt | None:
        """For a sink that can look: the receipt of an earlier attempt that
        did deliver `entry` though its outcome was lost; None when there is
        none."""
        if not isinstance(sink, Recoverable):
            return None
        if entry.attempts:
            try:
                found = await sink.find(entry.notification, previous)
            except SinkError as err:
                if not err.permanent:
                    raise
                # Cannot look (a missing scope): at least once rather than never.
                log.warning("cannot check an earlier attempt sink=%s error=%s", entry.sink, err)
                found = None
            if found is not None:
                log.info(
                    "already delivered by an earlier attempt sink=%s notification=%s",
                    entry.sink,
                    entry.notification.id,
                )
                return found
        return None

    async def _failed(
        self,
        worker: _Worker,
        entry: Entry,
        error: str,
        permanent: bool,
        retry_after_s: float | None,
    ) -> None:
        now = self.clock()
        worker.failures += 1
        worker.last_error = error
        if permanent:
            log.error(
                "delivery given up sink=%s notification=%s error=%s",
                entry.sink,
                entry.notification.id,
                error,
            )
            await self.outbox.give_up(entry, error, now)
            return
        delay = self.backoff.delay_s(entry.attempts + 1, retry_after_s)
        log.warning(
            "delivery failed sink=%s notification=%s attempt=%d retry_in_s=%.1f error=%s",
            entry.sink,
            entry.notification.id,
            entry.attempts + 1,
            delay,
            error,
        )
        await self.outbox.retry(entry, error, now, now + delay)


def _where(err: BaseException) -> str:
    """`file:line` of the innermost frame `err` went through: where a bug
    is, without the message or the values that a traceback would show."""
    tb = err.__traceback__
    if tb is None:
        return "unknown"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
