"""The durable outbox in the state store: every notification is written for
each sink before it is sent, and kept with its outcome, so a sink outage or a
daemon restart loses nothing and a delivered notification is not sent again.

`Outbox` implements `alerts.delivery.Outbox` (the interface delivery uses),
plus `put` and `counts`, in portable SQL on either backend of the store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType

from alerts.codec import dumps, loads
from alerts.delivery import Entry
from alerts.model import Notification, Receipt
from watchdog.db import Transaction
from watchdog.store import Fence, LeaseLost, Store

__all__ = ["Outbox"]

# The first pending entry of each occurrence per sink. Only pending entries
# are read, through the partial index `outbox_pending`, however long the
# delivered history: `+o.id` keeps SQLite from walking the whole table in id
# order to save the sort of the few entries due (Postgres takes it as `id`).
_FIRST_PENDING = (
    " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending'"
    " AND p.occurrence = o.occurrence AND p.sink = o.sink AND p.id < o.id)"
)
_DUE = (
    "SELECT o.id, o.sink, o.notification, o.attempts FROM outbox o"
    " WHERE o.state = 'pending' AND o.next_attempt_at <= ?"
    f"{_FIRST_PENDING} ORDER BY +o.id LIMIT ?"
)
_DUE_FOR_SINK = (
    "SELECT o.id, o.sink, o.notification, o.attempts FROM outbox o"
    " WHERE o.state = 'pending' AND o.next_attempt_at <= ? AND o.sink = ?"
    f"{_FIRST_PENDING} ORDER BY +o.id LIMIT ?"
)
_NEXT_DUE = (
    "SELECT min(o.next_attempt_at) FROM outbox o WHERE o.state = 'pending' AND o.sink = ?"
    f"{_FIRST_PENDING}"
)


class Outbox:
    """The outbox table of a `Store` (it implements `alerts.delivery.Outbox`)."""

    def __init__(self, store: Store, fence: Fence | None = None) -> None:
        self.store = store
        # For a replica of several: what only the lease's holder may write
        # (queueing alerts, claiming an entry) checks, in the same
        # transaction, that it still holds the lease. An attempt's outcome is
        # recorded whoever holds it: it happened.
        self.fence = fence

    def _fence(self, tx: Transaction) -> None:
        if self.fence is not None:
            self.fence(tx)

    def put(
        self,
        notifications: Sequence[Notification],
        sinks: Sequence[str],
        at: float,
        *,
        fenced: bool = True,
    ) -> int:
        """Queue each notification for each sink, once (a notification
        already queued for a sink is not queued again); return how many.
        Not `fenced`: any replica may queue it (what a person did through
        it: a maneuver's announcement)."""
        rows = [
            (n.id, n.alert.occurrence, sink, dumps(n), at, at)
            for n in notifications
            for sink in sinks
        ]
        if not rows:
            return 0
        with self.store.transaction("cannot queue notifications") as tx:
            queued = tx.executemany(
                "INSERT INTO outbox (notification_id, occurrence, sink, notification,"
                " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            if fenced:
                self._fence(tx)  # last, just before the commit
            return queued

    def due(self, now: float, limit: int, sink: str | None = None) -> list[Entry]:
        """Pending entries due by `now` (of `sink` only, unless None): per
        sink, only the first pending one of each alert occurrence, so an
        alert's messages keep their order; oldest first, at most `limit`."""
        rows = self.store.query(
            "cannot read the outbox",
            _DUE if sink is None else _DUE_FOR_SINK,
            (now, limit) if sink is None else (now, sink, limit),
        )
        return [Entry(row[0], row[1], loads(row[2]), row[3]) for row in rows]

    def next_due(self, sink: str) -> float | None:
        """When the earliest entry of `sink` that `due` would return falls
        due (maybe already past); None when nothing is pending for it."""
        rows = self.store.query("cannot read the outbox", _NEXT_DUE, (sink,))
        at: float | None = rows[0][0] if rows else None
        return at

    def pending(self) -> dict[str, int]:
        """How many entries are pending, per sink that has any."""
        rows = self.store.query(
            "cannot read the outbox",
            "SELECT sink, count(*) FROM outbox WHERE state = 'pending' GROUP BY sink",
        )
        return dict(rows)

    def receipt(self, notification: Notification, sink: str) -> Receipt | None:
        """The receipt of the last delivered notification of the same alert
        occurrence to `sink`."""
        rows = self.store.query(
            "cannot read the outbox",
            "SELECT receipt FROM outbox WHERE occurrence = ? AND sink = ? AND state = 'delivered'"
            " AND receipt IS NOT NULL ORDER BY id DESC LIMIT 1",
            (notification.alert.occurrence, sink),
        )
        if not rows:
            return None
        data = json.loads(rows[0][0])
        return Receipt(data["sink"], MappingProxyType(dict(data["data"])))

    # Attempts are counted as `entry.attempts + 1`, not incremented: an
    # attempt recorded by `begin` and then by its outcome counts once.

    def begin(self, entry: Entry, at: float) -> bool:
        """Claim `entry` for an attempt, before it starts: a compare-and-set
        on its count that must change exactly one row (as healthchecks'
        `sendalerts` claims a flip). False when it changed none: another
        delivery has it, or this replica lost the lease."""
        try:
            with self.store.transaction("cannot record a delivery attempt") as tx:
                claimed = tx.execute(
                    "UPDATE outbox SET attempts = ?"
                    " WHERE id = ? AND attempts = ? AND state = 'pending'",
                    (entry.attempts + 1, entry.id, entry.attempts),
                )
                self._fence(tx)  # last: the claim is undone if it fails
                return claimed.changed == 1
        except LeaseLost:
            return False

    def delivered(self, entry: Entry, receipt: Receipt, at: float) -> None:
        """Mark `entry` delivered with the sink's receipt."""
        text = json.dumps({"sink": receipt.sink, "data": dict(receipt.data)})
        with self.store.transaction("cannot mark a notification delivered") as tx:
            tx.execute(
                "UPDATE outbox SET state = 'delivered', attempts = ?, receipt = ?,"
                " finished_at = ?, last_error = '' WHERE id = ?",
                (entry.attempts + 1, text, at, entry.id),
            )

    def retry(self, entry: Entry, error: str, at: float, next_at: float) -> None:
        """Record a transient failure; try again at `next_at`."""
        with self.store.transaction("cannot reschedule a notification") as tx:
            tx.execute(
                "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                (entry.attempts + 1, error, next_at, entry.id),
            )

    def give_up(self, entry: Entry, error: str, at: float) -> None:
        """Record a permanent failure: the entry is not tried again."""
        with self.store.transaction("cannot give up a notification") as tx:
            tx.execute(
                "UPDATE outbox SET state = 'failed', attempts = ?, last_error = ?,"
                " finished_at = ? WHERE id = ?",
                (entry.attempts + 1, error, at, entry.id),
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """How many entries per (sink, state): for the API and metrics."""
        rows = self.store.query(
            "cannot read the outbox",
            "SELECT sink, state, count(*) FROM outbox GROUP BY sink, state",
        )
        return {(sink, state): count for sink, state, count in rows}
