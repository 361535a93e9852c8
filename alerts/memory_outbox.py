"""An outbox in memory: what a replica delivers on its own, without the
shared store: to the Alertmanagers (which deduplicate what every replica
sends them), and, while the store cannot be reached, the alerts about
critical nodes (a duplicate is better than silence). It keeps the order and
the retries of `Delivery`, not across a restart: what a restart loses here,
another replica or the holder's durable outbox delivers.

Bounded: past `limit` pending entries the oldest are dropped (and counted),
so an unreachable sink cannot grow it without end; it remembers at most
`limit` notifications it queued (not to queue one twice) and `limit`
receipts (what the next message of an alert answers), the oldest forgotten
first, and a receipt no longer once its alert resolved."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.delivery import Entry
from alerts.model import Notification, Receipt

__all__ = ["MemoryOutbox"]


@dataclass(slots=True)
class _Row:
    entry: Entry
    next_at: float
    state: str = "pending"  # pending, delivered, failed
    receipt: Receipt | None = None


class MemoryOutbox:
    """`alerts.delivery.Outbox` in memory, plus `put` and `counts` as the
    durable one has them."""

    def __init__(self, limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError("an outbox holds one entry or more")
        self.limit = limit
        self.dropped = 0
        self._rows: dict[int, _Row] = {}
        self._ids = itertools.count(1)
        # (notification id, sink), oldest first.
        self._queued: OrderedDict[tuple[str, str], None] = OrderedDict()
        # The last receipt of each occurrence per sink: what the next
        # message of the same alert updates or answers.
        self._receipts: OrderedDict[tuple[str, str], Receipt] = OrderedDict()

    async def put(
        self, notifications: Sequence[Notification], sinks: Sequence[str], at: float
    ) -> int:
        """Queue each notification for each sink, once; return how many."""
        added = 0
        for note in notifications:
            for sink in sinks:
                if (note.id, sink) in self._queued:
                    continue
                self._queued[(note.id, sink)] = None
                if len(self._queued) > self.limit:
                    self._queued.popitem(last=False)
                ident = next(self._ids)
                self._rows[ident] = _Row(Entry(ident, sink, note, 0), at)
                added += 1
        self._trim()
        return added

    def _trim(self) -> None:
        """Drop what is finished, then the oldest pending past the limit."""
        for ident in [i for i, row in self._rows.items() if row.state != "pending"]:
            del self._rows[ident]
        while len(self._rows) > self.limit:
            oldest = min(self._rows)
            entry = self._rows.pop(oldest).entry
            self._queued.pop((entry.notification.id, entry.sink), None)
            self.dropped += 1

    def _first_pending(self, sink: str | None) -> list[_Row]:
        seen: set[tuple[str, str]] = set()
        out = []
        for _, row in sorted(self._rows.items()):
            if row.state != "pending" or (sink is not None and row.entry.sink != sink):
                continue
            occurrence = (row.entry.notification.alert.occurrence, row.entry.sink)
            if occurrence not in seen:
                seen.add(occurrence)
                out.append(row)
        return out

    async def due(self, now: float, limit: int, sink: str | None = None) -> list[Entry]:
        """See `alerts.delivery.Outbox.due`."""
        rows = [r for r in self._first_pending(sink) if r.next_at <= now]
        return [r.entry for r in rows[:limit]]

    async def next_due(self, sink: str) -> float | None:
        """See `alerts.delivery.Outbox.next_due`."""
        return min((r.next_at for r in self._first_pending(sink)), default=None)

    async def pending(self) -> dict[str, int]:
        """See `alerts.delivery.Outbox.pending`."""
        out: dict[str, int] = {}
        for row in self._rows.values():
            if row.state == "pending":
                out[row.entry.sink] = out.get(row.entry.sink, 0) + 1
        return out

    async def receipt(self, notification: Notification, sink: str) -> Receipt | None:
        """See `alerts.delivery.Outbox.receipt`."""
        return self._receipts.get((notification.alert.occurrence, sink))

    async def begin(self, entry: Entry, at: float) -> bool:
        """See `alerts.delivery.Outbox.begin`: one process, so the claim is
        whether the entry is still pending at the same count."""
        row = self._rows.get(entry.id)
        if row is None or row.state != "pending" or row.entry.attempts != entry.attempts:
            return False
        row.entry = Entry(entry.id, entry.sink, entry.notification, entry.attempts + 1)
        return True

    async def delivered(self, entry: Entry, receipt: Receipt, at: float) -> None:
        """See `alerts.delivery.Outbox.delivered`."""
        row = self._rows.get(entry.id)
        if row is not None:
            row.state, row.receipt = "delivered", receipt
        occurrence = (entry.notification.alert.occurrence, entry.sink)
        if entry.notification.event == "resolved":
            self._receipts.pop(occurrence, None)  # nothing follows a resolution
        else:
            self._receipts[occurrence] = receipt
            self._receipts.move_to_end(occurrence)
            if len(self._receipts) > self.limit:
                self._receipts.popitem(last=False)
        self._trim()

    async def retry(self, entry: Entry, error: str, at: float, next_at: float) -> None:
        """See `alerts.delivery.Outbox.retry`."""
        row = self._rows.get(entry.id)
        if row is not None:
            row.next_at = next_at

    async def give_up(self, entry: Entry, error: str, at: float) -> None:
        """See `alerts.delivery.Outbox.give_up`."""
        row = self._rows.get(entry.id)
        if row is not None:
            row.state = "failed"
        self._trim()

    async def counts(self) -> dict[tuple[str, str], int]:
        """Pending entries per (sink, 'pending'): the finished are not kept."""
        return {(sink, "pending"): n for sink, n in (await self.pending()).items()}
