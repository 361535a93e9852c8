"""The lease and the members' heartbeats, on SQLite and on Postgres: one
holder at a time, by the database's clock; the epoch fences a holder that
lost it; a release hands it over at once."""

from __future__ import annotations

import threading

import pytest
from postgres_server import Backend

from watchdog.lease import Lease, LeaseLost, Members
from watchdog.store import Store

LONG = 3600.0


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def test_the_first_replica_takes_the_lease_and_keeps_its_epoch_while_it_renews(
    store: Store,
) -> None:
    a = Lease(store, "leader", "replica-a", LONG)
    assert a.holder() is None
    assert a.acquire() == 1
    assert a.acquire() == 1  # a renewal
    holder = a.holder()
    assert holder is not None
    assert (holder.holder, holder.epoch) == ("replica-a", 1)
    # Another replica cannot take it while it lasts.
    assert Lease(store, "leader", "replica-b", LONG).acquire() is None
    # Leases of other names are apart.
    assert Lease(store, "probes", "replica-b", LONG).acquire() == 1


def test_an_expired_lease_passes_to_the_next_replica_and_fences_the_last(
    store: Store,
) -> None:
    a = Lease(store, "leader", "replica-a", 0.0)  # expires at once
    b = Lease(store, "leader", "replica-b", LONG)
    assert a.acquire() == 1
    assert b.acquire() == 2
    # The last holder's renewal fails, and so does any write it fences.
    assert a.acquire() is None

    def fenced_write() -> None:
        with store.transaction("a fenced write") as tx:
            a.fence(tx, 1)
            tx.execute("INSERT INTO members (replica, seen_at) VALUES ('fenced', 0)")

    with pytest.raises(LeaseLost):
        fenced_write()
    assert Members(store, "x").alive(10**9) == []  # rolled back with the refusal
    with store.transaction("a fenced write") as tx:
        b.fence(tx, 2)  # the holder's own write goes through
    with pytest.raises(LeaseLost), store.transaction("an old epoch") as tx:
        b.fence(tx, 1)


def test_a_release_hands_the_lease_over_at_once(store: Store) -> None:
    a = Lease(store, "leader", "replica-a", LONG)
    b = Lease(store, "leader", "replica-b", LONG)
    epoch = a.acquire()
    assert epoch == 1
    assert not b.release(1)  # not b's to give
    assert not a.release(7)  # not at that epoch
    assert a.release(epoch)
    assert a.holder() is None
    assert b.acquire() == 2


def test_replicas_racing_for_the_lease_leave_exactly_one_holder(backend: Backend) -> None:
    stores = [backend.open() for _ in range(4)]
    won: list[tuple[str, int | None]] = []
    start = threading.Barrier(len(stores))

    def race(i: int) -> None:
        lease = Lease(stores[i], "leader", f"replica-{i}", LONG)
        start.wait(timeout=10)
        won.append((lease.me, lease.acquire()))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [(me, epoch) for me, epoch in won if epoch is not None]
    assert len(won) == len(stores)
    assert len(winners) == 1
    assert winners[0][1] == 1
    holder = Lease(stores[0], "leader", "anyone", LONG).holder()
    assert holder is not None
    assert holder.holder == winners[0][0]


def test_members_are_the_replicas_heard_from_lately(store: Store) -> None:
    Members(store, "replica-b").beat()
    Members(store, "replica-a").beat()
    Members(store, "replica-a").beat()  # a second beat is one member
    assert Members(store, "x").alive(LONG) == ["replica-a", "replica-b"]
    with store.transaction("age a heartbeat") as tx:
        tx.execute("UPDATE members SET seen_at = seen_at - 100 WHERE replica = 'replica-b'")
    assert Members(store, "x").alive(50) == ["replica-a"]


def test_a_lease_cannot_last_less_than_nothing(store: Store) -> None:
    with pytest.raises(ValueError, match="zero seconds or more"):
        Lease(store, "leader", "replica-a", -1)
