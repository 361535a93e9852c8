"""Delivery without loss: the loop around every sink that sends what the
outbox holds, retries transient failures with exponential backoff, gives up
on permanent ones, keeps each alert's notifications in order per sink, and
never lets a dead or slow sink hold up the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from alerts.model import Notification, Receipt, Recoverable, Sink, SinkError

__all__ = ["Backoff", "Delivery", "Entry", "Outbox"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One notification to deliver to one sink, as the outbox holds it."""

    id: int
    sink: str
    notification: Notification
    attempts: int


class Outbox(Protocol):
    """What delivery needs of the durable outbox."""

    def due(self, now: float, limit: int) -> Sequence[Entry]:
        """Pending entries due by `now`, only the first pending one of each
        alert occurrence per sink, oldest first."""
        ...

    def receipt(self, notification: Notification, sink: str) -> Receipt | None:
        """The receipt of the last delivered notification of the same alert
        occurrence to `sink`."""
        ...

    def begin(self, entry: Entry, at: float) -> None:
        """Record, durably, that an attempt at `entry` starts (its count)."""
        ...

    def delivered(self, entry: Entry, receipt: Receipt, at: float) -> None: ...

    def retry(self, entry: Entry, error: str, at: float, next_at: float) -> None: ...

    def give_up(self, entry: Entry, error: str, at: float) -> None: ...


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


class Delivery:
    """Sends what is due, sink by sink concurrently, one notification at a
    time per sink; `run_once` returns how many were delivered."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Mapping[str, Sink],
        clock: Callable[[], float],
        *,
        backoff: Backoff | None = None,
        send_timeout_s: float = 30.0,
        batch: int = 500,
    ) -> None:
        self.outbox = outbox
        self.sinks = dict(sinks)
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.send_timeout_s = send_timeout_s
        self.batch = batch

    async def run_once(self) -> int:
        """Deliver every entry due now."""
        by_sink: dict[str, list[Entry]] = {}
        for entry in self.outbox.due(self.clock(), self.batch):
            by_sink.setdefault(entry.sink, []).append(entry)
        counts = await asyncio.gather(
            *(self._deliver(name, entries) for name, entries in sorted(by_sink.items()))
        )
        return sum(counts)

    async def _deliver(self, name: str, entries: list[Entry]) -> int:
        sink = self.sinks.get(name)
        delivered = 0
        for entry in entries:
            if sink is None:  # a sink removed from the file since it was queued
                self.outbox.give_up(entry, f"no sink named {name!r}", self.clock())
                continue
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    previous = self.outbox.receipt(entry.notification, name)
                    receipt = await self._recovered(sink, entry, previous)
                    if receipt is None:
                        receipt = await sink.send(entry.notification, previous)
            except SinkError as err:
                self._failed(entry, str(err), err.permanent, err.retry_after_s)
                continue
            except TimeoutError:
                self._failed(
                    entry, f"{name}: no answer within {self.send_timeout_s:g}s", False, None
                )
                continue
            except Exception as err:  # a sink bug must not stop delivery
                log.exception(
                    "sink=%s notification=%s unexpected error", name, entry.notification.id
                )
                self._failed(entry, f"{name}: {type(err).__name__}", False, None)
                continue
            self.outbox.delivered(entry, receipt, self.clock())
            delivered += 1
        return delivered

    async def _recovered(
        self, sink: Sink, entry: Entry, previous: Receipt | None
    ) -> Receipt | None:
        """For a sink that can look: the receipt of an earlier attempt that
        did deliver `entry` though its outcome was lost; None when there is
        none (after recording that a new attempt starts)."""
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
        self.outbox.begin(entry, self.clock())
        return None

    def _failed(
        self, entry: Entry, error: str, permanent: bool, retry_after_s: float | None
    ) -> None:
        now = self.clock()
        if permanent:
            log.error(
                "delivery given up sink=%s notification=%s error=%s",
                entry.sink,
                entry.notification.id,
                error,
            )
            self.outbox.give_up(entry, error, now)
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
        self.outbox.retry(entry, error, now, now + delay)
