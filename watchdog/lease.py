"""Leases: what only one replica at a time may do (record incidents, run
the escalations, own the outbox), held by whoever renewed it last, until a
time by the database's clock; and the replicas heard from lately.

A lease is a row, never an advisory lock (those break behind transaction
poolers). Taking it is one statement that succeeds only when the row has
expired or is already ours (`UPDATE ... WHERE expires_at <= now OR holder =
me RETURNING epoch`; it lasts while `expires_at > now`). The epoch grows
each time the lease changes hands: a write that only the holder may make
checks, in its own transaction, that the lease is still its own at that
epoch (`fence`), so a holder that lost the lease (a pause, a partition)
cannot write after the next one took over.

Times are the database's, so replicas whose clocks disagree agree on who
holds what. Synchronous, like the store: the daemon calls it from a thread
(`watchdog.cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass

from watchdog.db import Transaction
from watchdog.store import LeaseLost, Store

__all__ = ["Holder", "Lease", "LeaseLost", "Members"]

# The database's clock in seconds since the epoch, as each dialect says it.
_NOW = {
    "postgres": "extract(epoch from clock_timestamp())::double precision",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease, at which epoch, until when (database time)."""

    holder: str
    epoch: int
    expires_at: float


class Lease:
    """The lease `name` as replica `me` sees it, `ttl_s` long once taken."""

    def __init__(self, store: Store, name: str, me: str, ttl_s: float) -> None:
        if ttl_s < 0:
            raise ValueError("a lease lasts zero seconds or more")
        self.store = store
        self.name = name
        self.me = me
        self.ttl_s = ttl_s
        self._now = _NOW[store.dialect]

    def acquire(self) -> int | None:
        """Take the lease, or renew it when it is ours: its epoch (the same
        while we keep it, one more than the last holder's when we take it
        over), or None while another replica holds it."""
        now = self._now
        with self.store.transaction("cannot take the lease") as tx:
            # A lease never taken is a row held by nobody, long expired.
            tx.execute(
                "INSERT INTO leases (name, holder, epoch, expires_at) VALUES (?, '', 0, 0)"
                " ON CONFLICT (name) DO NOTHING",
                (self.name,),
            )
            taken = tx.execute(
                "UPDATE leases SET"
                " epoch = CASE WHEN holder = ? THEN epoch ELSE epoch + 1 END,"
                f" holder = ?, expires_at = {now} + ?"
                f" WHERE name = ? AND (expires_at <= {now} OR holder = ?)"
                " RETURNING epoch",
                (self.me, self.me, self.ttl_s, self.name, self.me),
            ).first()
        return int(taken[0]) if taken is not None else None

    def release(self, epoch: int) -> bool:
        """Give the lease up at once (a clean stop), if it is still ours at
        `epoch`, so the next replica need not wait for it to expire; whether
        it was."""
        with self.store.transaction("cannot release the lease") as tx:
            result = tx.execute(
                f"UPDATE leases SET expires_at = {self._now} - 1"
                " WHERE name = ? AND holder = ? AND epoch = ?",
                (self.name, self.me, epoch),
            )
        return result.changed == 1

    def holder(self) -> Holder | None:
        """Who holds the lease now, None when nobody does (never taken, or
        expired)."""
        rows = self.store.query(
            "cannot read the lease",
            "SELECT holder, epoch, expires_at FROM leases"
            f" WHERE name = ? AND expires_at > {self._now}",
            (self.name,),
        )
        if not rows:
            return None
        holder, epoch, expires_at = rows[0]
        return Holder(holder, int(epoch), float(expires_at))

    def fence(self, tx: Transaction, epoch: int) -> None:
        """In a transaction that makes a holder-only write, as its last
        statement before the commit: raise `LeaseLost` (which undoes the
        write) unless the lease is still ours at `epoch` and unexpired.

        No row lock: a lock held for the length of a farm's history would
        hold up the lease's renewal (ours, and the other replicas', which
        must read the row to beat), and make live replicas look dead. A
        takeover needs the lease to have expired first, and it is checked
        unexpired as late as the commit: what is left is that commit's round
        trip, far inside the quarter lease that the holder keeps renewed."""
        row = tx.execute(
            "SELECT 1 FROM leases WHERE name = ? AND holder = ? AND epoch = ?"
            f" AND expires_at > {self._now}",
            (self.name, self.me, epoch),
        ).first()
        if row is None:
            raise LeaseLost(f"the lease {self.name!r} is no longer {self.me}'s at epoch {epoch}")


class Members:
    """The replicas of one estate, as their heartbeats say: what probe
    sharding splits the probes between."""

    def __init__(self, store: Store, me: str) -> None:
        self.store = store
        self.me = me
        self._now = _NOW[store.dialect]

    def beat(self) -> None:
        """Say that this replica is alive, now (database time)."""
        with self.store.transaction("cannot record a heartbeat") as tx:
            tx.execute(
                f"INSERT INTO members (replica, seen_at) VALUES (?, {self._now})"
                " ON CONFLICT (replica) DO UPDATE SET seen_at = excluded.seen_at",
                (self.me,),
            )

    def alive(self, within_s: float) -> list[str]:
        """The replicas heard from within the last `within_s` seconds, by
        name."""
        rows = self.store.query(
            "cannot read the members",
            f"SELECT replica FROM members WHERE seen_at >= {self._now} - ? ORDER BY replica",
            (within_s,),
        )
        return [replica for (replica,) in rows]
