"""Replicas of one estate (`watchdog.cluster`): rendezvous sharding of the
probes (`owner`, `shard`), the shared observations between two replicas on
the same store, the incidents a new lease holder reconciles, a
`Coordinator`'s turns; the durable outbox's claim (`Outbox.begin` as a
compare-and-set, fenced writes); and the verdicts another replica judged
(`Hysteresis.force`, `LiveState.record(verdict=..., at=...)`). The
store-backed tests run on SQLite and on a real Postgres."""

from __future__ import annotations

import itertools
import queue
import threading
from collections import Counter
from pathlib import Path
from types import MappingProxyType

import pytest
from clocks import Clock
from postgres_server import Backend

from alerts.model import Alert, Impacted, Notification
from alerts.transitions import Transition
from topology import State
from watchdog.cluster import (
    Coordinator,
    Heartbeat,
    Observation,
    Observations,
    Standing,
    owner,
    reconcile_incidents,
    shard,
)
from watchdog.config import load_config
from watchdog.db import Transaction
from watchdog.hysteresis import Hysteresis
from watchdog.live import LiveState
from watchdog.outbox import Outbox
from watchdog.store import LeaseLost, Store, StoreError

UP, UNKNOWN, DEGRADED, DOWN = State.UP, State.UNKNOWN, State.DEGRADED, State.DOWN
KEYS = [f"svc-{i:04}#0" for i in range(3000)]
LONG = 3600.0


# --- sharding -----------------------------------------------------------------


def owners(keys: list[str], members: list[str]) -> dict[str, str]:
    return {key: owner(key, members) for key in keys}


def test_every_key_has_exactly_one_owner_among_the_members_whatever_their_order() -> None:
    members = ["replica-a", "replica-b", "replica-c"]
    found = owners(KEYS, members)
    assert set(found.values()) <= set(members)
    for order in itertools.permutations(members):
        assert owners(KEYS[:300], list(order)) == {k: found[k] for k in KEYS[:300]}


def test_an_owner_needs_a_member() -> None:
    with pytest.raises(ValueError, match="no member"):
        owner("svc#0", [])


def test_the_shards_of_all_members_partition_the_keys() -> None:
    members = ["replica-a", "replica-b", "replica-c"]
    shards = {m: shard(KEYS, members, m) for m in members}
    assert frozenset().union(*shards.values()) == frozenset(KEYS)
    assert sum(len(s) for s in shards.values()) == len(KEYS)  # no key in two shards
    found = owners(KEYS, members)
    for member, keys in shards.items():
        assert keys == {k for k, o in found.items() if o == member}


def test_removing_a_member_moves_only_its_own_keys() -> None:
    before = owners(KEYS, ["replica-a", "replica-b", "replica-c"])
    after = owners(KEYS, ["replica-a", "replica-b"])
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == "replica-c"}
    assert moved  # the removed member had a share to give away
    for member in ("replica-a", "replica-b"):
        kept = shard(KEYS, ["replica-a", "replica-b", "replica-c"], member)
        assert kept <= shard(KEYS, ["replica-a", "replica-b"], member)


def test_adding_a_member_takes_keys_only_from_the_others_into_itself() -> None:
    before = owners(KEYS, ["replica-a", "replica-b", "replica-c"])
    after = owners(KEYS, ["replica-a", "replica-b", "replica-c", "replica-d"])
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved
    assert {after[k] for k in moved} == {"replica-d"}
    assert {before[k] for k in moved} == {"replica-a", "replica-b", "replica-c"}


def test_three_members_each_get_a_fair_share() -> None:
    members = ["replica-a", "replica-b", "replica-c"]
    counts = Counter(owners(KEYS, members).values())
    assert set(counts) == set(members)
    for member in members:
        assert 0.20 * len(KEYS) <= counts[member] <= 0.47 * len(KEYS), counts


def test_me_counts_among_the_members_before_its_heartbeat_is_seen() -> None:
    seen = ["replica-a", "replica-b"]
    mine = shard(KEYS, seen, "replica-c")
    assert mine  # a share, though the others do not know it yet
    assert mine == shard(KEYS, [*seen, "replica-c"], "replica-c")
    # What the others think theirs (without it) covers its share too, until
    # they see it: nothing is left unprobed meanwhile.
    theirs = shard(KEYS, seen, "replica-a") | shard(KEYS, seen, "replica-b")
    assert theirs == frozenset(KEYS)


# --- shared observations ------------------------------------------------------


def obs(probe: str, at: float, verdict: State = UP, reason: str = "ok") -> Observation:
    return Observation(probe, verdict, verdict, reason, 0.25, at, tls_expires_at=at + 86400)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def test_a_reader_first_gets_everything_not_its_own_then_only_what_is_new(
    backend: Backend,
) -> None:
    a = Observations(backend.open(), "replica-a")
    b = Observations(backend.open(), "replica-b")
    c = Observations(backend.open(), "replica-c")
    a.write([obs("p#0", 10.0), obs("q#0", 11.0, DOWN, "refused")])
    c.write([obs("r#0", 12.0)])
    b.write([obs("mine#0", 13.0)])
    members = ["replica-a", "replica-b", "replica-c"]

    first = b.read(members)
    assert sorted(first, key=lambda o: o.probe) == [
        obs("p#0", 10.0),
        obs("q#0", 11.0, DOWN, "refused"),
        obs("r#0", 12.0),
    ]
    assert b.read(members) == []  # nothing new

    a.write([obs("s#0", 20.0)])
    assert b.read(members) == [obs("s#0", 20.0)]
    c.write([obs("t#0", 21.0), obs("u#0", 22.0)])
    a.write([obs("v#0", 23.0)])
    assert sorted(o.probe for o in b.read(members)) == ["t#0", "u#0", "v#0"]
    assert b.read(members) == []


def test_a_rewrite_of_a_probe_replaces_its_row(backend: Backend) -> None:
    a = Observations(backend.open(), "replica-a")
    b = Observations(backend.open(), "replica-b")
    members = ["replica-a", "replica-b"]
    a.write([obs("p#0", 10.0, DOWN, "refused"), obs("q#0", 10.0)])
    assert len(b.read(members)) == 2

    a.write([obs("p#0", 20.0, UP, "back")])
    assert b.read(members) == [obs("p#0", 20.0, UP, "back")]
    # A replica that reads for the first time sees one row per probe, the last.
    fresh = Observations(backend.open(), "replica-c")
    assert sorted(fresh.read(members), key=lambda o: o.probe) == [
        obs("p#0", 20.0, UP, "back"),
        obs("q#0", 10.0),
    ]


def test_a_replica_never_reads_its_own_rows(store: Store) -> None:
    a = Observations(store, "replica-a")
    b = Observations(store, "replica-b")
    members = ["replica-a", "replica-b"]
    a.write([obs("p#0", 10.0)])
    assert a.read(members) == []
    b.write([obs("q#0", 11.0)])
    a.write([obs("r#0", 12.0)])
    assert a.read(members) == [obs("q#0", 11.0)]
    a.write([obs("s#0", 13.0)])
    assert a.read(members) == []


def test_an_empty_write_changes_nothing(store: Store) -> None:
    a = Observations(store, "replica-a")
    a.write([])
    assert Observations(store, "replica-b").read(["replica-a"]) == []


def test_a_restarted_writer_continues_its_numbering(backend: Backend) -> None:
    reader = Observations(backend.open(), "replica-b")
    members = ["replica-a", "replica-b"]
    Observations(backend.open(), "replica-a").write([obs("p#0", 10.0), obs("q#0", 11.0)])
    assert len(reader.read(members)) == 2

    restarted = Observations(backend.open(), "replica-a")
    restarted.write([obs("r#0", 30.0)])
    assert reader.read(members) == [obs("r#0", 30.0)]
    restarted.write([obs("p#0", 31.0, DOWN)])
    assert reader.read(members) == [obs("p#0", 31.0, DOWN)]


def test_a_restarted_writer_is_read_though_its_old_rows_were_taken_over(
    backend: Backend,
) -> None:
    members = ["replica-a", "replica-b", "replica-c"]
    reader = Observations(backend.open(), "replica-c")
    Observations(backend.open(), "replica-a").write([obs("p#0", 1.0), obs("q#0", 2.0)])
    assert len(reader.read(members)) == 2
    # q moves to replica-b (replica-a died): replica-a's highest row is gone.
    Observations(backend.open(), "replica-b").write([obs("q#0", 3.0)])
    assert reader.read(members) == [obs("q#0", 3.0)]

    Observations(backend.open(), "replica-a").write([obs("r#0", 4.0)])
    assert reader.read(members) == [obs("r#0", 4.0)]


def test_a_reader_skips_replicas_that_are_not_alive_after_its_first_read(
    store: Store,
) -> None:
    a = Observations(store, "replica-a")
    b = Observations(store, "replica-b")
    a.write([obs("p#0", 10.0)])
    assert b.read(["replica-b"]) == [obs("p#0", 10.0)]  # the first read takes all
    a.write([obs("q#0", 11.0)])
    assert b.read(["replica-b"]) == []  # replica-a is not among the members
    assert b.read(["replica-a", "replica-b"]) == [obs("q#0", 11.0)]


# --- reconciling incidents ----------------------------------------------------

TARGETS = {"web": 600.0, "db": 300.0, "cache": 900.0, "gone": 60.0, "search": 1200.0}


def failed(store: Store, node: str, at: float) -> None:
    store.record([Transition(node, "effective", UP, DOWN, at, (node,))], recovery_targets=TARGETS)


def test_reconciling_opens_what_failed_meanwhile_and_ends_what_recovered(store: Store) -> None:
    for node in ("db", "cache", "gone"):
        failed(store, node, 100.0)
    states = {
        "web": (DOWN, 500.0, ("db",)),
        "search": (DEGRADED, 550.0, ("search",)),
        "db": (UP, 600.0, ()),
        "cache": (DOWN, 100.0, ("cache",)),  # still failed: its incident goes on
        "api": (UNKNOWN, 0.0, ()),  # no data: neither a failure nor a recovery
        "ok": (UP, 0.0, ()),
    }

    assert reconcile_incidents(store, states, recovery_targets=TARGETS, at=700.0, fence=None) == (
        2,
        1,
    )

    open_now = {i.node: i for i in store.open_incidents()}
    assert set(open_now) == {"cache", "gone", "web", "search"}  # gone: not in states
    web, search = open_now["web"], open_now["search"]
    assert (web.started_at, web.worst, web.root_cause, web.recovery_target_s) == (
        500.0,
        DOWN,
        ("db",),
        600.0,
    )
    assert (search.started_at, search.worst) == (550.0, DEGRADED)
    assert open_now["cache"].started_at == 100.0
    [db] = store.incidents(0.0, node="db")
    assert db.ended_at == 700.0
    assert store.incidents(0.0, node="api") == []
    # Once reconciled, a second pass has nothing to do.
    assert reconcile_incidents(store, states, recovery_targets=TARGETS, at=800.0, fence=None) == (
        0,
        0,
    )


def lost(tx: Transaction) -> None:
    raise LeaseLost("the lease is someone else's")


def test_a_fence_that_refuses_opens_nothing(store: Store) -> None:
    failed(store, "db", 100.0)
    states = {"web": (DOWN, 500.0, ("web",)), "db": (UP, 600.0, ())}
    with pytest.raises(LeaseLost):
        reconcile_incidents(store, states, recovery_targets=TARGETS, at=700.0, fence=lost)
    assert [i.node for i in store.open_incidents()] == ["db"]
    assert store.incidents(0.0, node="web") == []


def test_a_fence_that_refuses_ends_nothing_either(store: Store) -> None:
    failed(store, "db", 100.0)
    with pytest.raises(LeaseLost):
        reconcile_incidents(
            store, {"db": (UP, 600.0, ())}, recovery_targets=TARGETS, at=700.0, fence=lost
        )
    assert [i.node for i in store.open_incidents()] == ["db"]


def test_a_fence_that_lets_through_is_checked_in_the_write(store: Store) -> None:
    checked: list[Transaction] = []
    states = {"web": (DOWN, 500.0, ("web",))}
    assert reconcile_incidents(
        store, states, recovery_targets=TARGETS, at=700.0, fence=checked.append
    ) == (1, 0)
    assert len(checked) == 1
    assert [i.node for i in store.open_incidents()] == ["web"]


# --- the coordinator ----------------------------------------------------------


def test_one_replica_holds_the_lease_both_are_members_a_release_hands_it_over(
    backend: Backend,
) -> None:
    a = Coordinator(backend.open(), "replica-a", LONG)
    b = Coordinator(backend.open(), "replica-b", LONG)

    first = a.turn()
    assert first.epoch is not None
    assert "replica-a" in first.members
    second = b.turn()
    assert second.epoch is None  # the first's lease lasts
    assert set(second.members) == {"replica-a", "replica-b"}
    again = a.turn()
    assert again.epoch == first.epoch  # a renewal keeps the epoch
    assert set(again.members) == {"replica-a", "replica-b"}

    assert a.release(first.epoch)
    taken = b.turn()
    assert taken.epoch == first.epoch + 1
    assert a.turn().epoch is None
    assert not a.release(first.epoch)  # no longer its own


# --- the outbox's claim -------------------------------------------------------


def note(event: str = "firing", n: int = 1) -> Notification:
    alert = Alert(
        key="outage:farm",
        kind="outage",
        severity="critical",
        root_cause=("farm",),
        summary="farm down takes critical workflow down (9m left)",
        started_at=900.0,
        critical=(Impacted("workflow", DOWN, 600.0, 900.0),),
        labels=MappingProxyType({"team": "orders"}),
    )
    return Notification(f"{alert.occurrence}#{n}:{event}", alert, event, 1000.0 + n)  # type: ignore[arg-type]


def test_of_two_claims_of_the_same_entry_one_wins(backend: Backend) -> None:
    here, there = Outbox(backend.open()), Outbox(backend.open())
    assert here.put([note()], ["webhook"], 1000.0) == 1
    [mine] = here.due(1000.0, 10)
    [theirs] = there.due(1000.0, 10)
    assert (mine.id, mine.attempts) == (theirs.id, theirs.attempts) == (mine.id, 0)

    assert [here.begin(mine, 1001.0), there.begin(theirs, 1001.0)] == [True, False]
    [claimed] = here.due(1000.0, 10)
    assert claimed.attempts == 1
    # The next attempt is claimed at its own count, once.
    assert there.begin(claimed, 1002.0)
    assert not here.begin(claimed, 1002.0)


def test_a_finished_entry_cannot_be_claimed(store: Store) -> None:
    outbox = Outbox(store)
    outbox.put([note()], ["webhook"], 1000.0)
    [entry] = outbox.due(1000.0, 10)
    outbox.give_up(entry, "gone", 1001.0)
    assert not outbox.begin(entry, 1002.0)


def test_a_replica_that_lost_the_lease_claims_nothing(store: Store) -> None:
    Outbox(store).put([note()], ["webhook"], 1000.0)
    [entry] = Outbox(store).due(1000.0, 10)

    assert Outbox(store, fence=lost).begin(entry, 1001.0) is False

    assert Outbox(store).due(1000.0, 10) == [entry]  # untouched
    assert Outbox(store).begin(entry, 1001.0)


def test_a_fenced_put_of_a_replica_without_the_lease_queues_nothing(store: Store) -> None:
    refused = Outbox(store, fence=lost)
    with pytest.raises(LeaseLost):
        refused.put([note()], ["webhook"], 1000.0)
    assert Outbox(store).pending() == {}

    # What a person did through it is queued by any replica.
    assert refused.put([note("firing", 2)], ["webhook", "slack"], 1000.0, fenced=False) == 2
    assert Outbox(store).pending() == {"webhook": 1, "slack": 1}


def test_a_holders_fence_is_checked_in_the_claim(store: Store) -> None:
    checked: list[Transaction] = []
    outbox = Outbox(store, fence=checked.append)
    assert outbox.put([note()], ["webhook"], 1000.0) == 1
    [entry] = outbox.due(1000.0, 10)
    assert outbox.begin(entry, 1001.0)
    assert len(checked) == 2  # the put and the claim


# --- verdicts judged elsewhere ------------------------------------------------


def test_a_forced_verdict_holds_and_restarts_the_runs() -> None:
    h = Hysteresis(failure_threshold=3, success_threshold=2)
    h.update(UP)
    h.update(DOWN)
    h.update(DOWN)  # one more would make it down
    h.force(UP)
    assert h.state == UP
    assert h.update(DOWN) == UP  # the run starts again from the forced verdict
    assert h.update(DOWN) == UP
    assert h.update(DOWN) == DOWN


def test_a_forced_verdict_is_not_a_first_result() -> None:
    h = Hysteresis(failure_threshold=3, success_threshold=2)
    h.force(DOWN)
    assert h.state == DOWN
    assert h.update(UP) == DOWN  # not taken as is: the runs apply
    assert h.update(UP) == UP


ESTATE = """\
version: 1
nodes:
  farm:
    kind: farm
    probes: [{tcp: "127.0.0.1:9001", failure_threshold: 3, success_threshold: 2}]
  web:
    critical: true
    runs_on: [farm]
    probes: [{http: "http://127.0.0.1:8081/", failure_threshold: 1}]
"""


@pytest.fixture
def live(tmp_path: Path) -> tuple[LiveState, Clock]:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    config = load_config(path)
    clock = Clock(1000.0)
    state = LiveState(config.topology, config.probes, clock)
    for key in ("farm#0", "web#0"):
        state.record(key, UP, "ok", 0.01)
    return state, clock


def test_a_remote_result_is_taken_with_its_verdict_and_time(
    live: tuple[LiveState, Clock],
) -> None:
    state, clock = live
    changes = state.record("farm#0", DOWN, "refused there", 0.5, verdict=DOWN, at=1500.0)

    # No threshold here: the replica that ran it judged it.
    assert changes[0] == Transition(
        "farm", "observed", UP, DOWN, 1500.0, ("farm",), "refused there"
    )
    assert {(t.node, t.view, t.new, t.at) for t in changes[1:]} == {
        ("farm", "effective", DOWN, 1500.0),
        ("web", "effective", DOWN, 1500.0),
    }
    last = state.last["farm#0"]
    assert (last.verdict, last.last_state, last.last_reason, last.last_at) == (
        DOWN,
        DOWN,
        "refused there",
        1500.0,
    )
    assert state.since["web"] == 1500.0
    assert clock.now == 1000.0


def test_a_remote_verdict_wins_over_its_result_and_local_runs_go_on_from_it(
    live: tuple[LiveState, Clock],
) -> None:
    state, clock = live
    # Judged there: one failed result, not yet a verdict.
    assert state.record("farm#0", DOWN, "refused", None, verdict=UP, at=1100.0) == []
    last = state.last["farm#0"]
    assert (last.verdict, last.last_state, last.last_at) == (UP, DOWN, 1100.0)
    # The probe comes here: its threshold counts from the verdict taken.
    clock.now = 1200.0
    assert state.record("farm#0", DOWN, "refused", None) == []
    assert state.record("farm#0", DOWN, "refused", None) == []
    changes = state.record("farm#0", DOWN, "refused", None)
    assert changes[0] == Transition("farm", "observed", UP, DOWN, 1200.0, ("farm",), "refused")
    assert state.last["farm#0"].last_at == 1200.0


# --- the heartbeat ------------------------------------------------------------


class Turns:
    """A coordinator whose second turn cannot reach the store."""

    def __init__(self) -> None:
        self.count = 0

    def turn(self) -> Standing:
        self.count += 1
        if self.count == 2:
            raise StoreError("the store is gone")
        return Standing(7, ("replica-a",))


def test_the_heartbeat_turns_on_a_thread_of_its_own_and_hands_over_each_outcome() -> None:
    said: queue.Queue[tuple[object, str]] = queue.Queue()
    turns = Turns()
    beat = Heartbeat(
        turns,  # type: ignore[arg-type]
        0.01,
        lambda outcome, began: said.put((outcome, threading.current_thread().name)),
    )
    beat.start()
    try:
        got = [said.get(timeout=10) for _ in range(3)]
    finally:
        beat.stop(10)
    assert [type(outcome) for outcome, _ in got] == [Standing, StoreError, Standing]
    assert {name for _, name in got} == {"watchdog-lease"}
    done = turns.count
    beat.stop(10)
    assert turns.count == done  # stopped: no turn after


def test_a_heartbeat_never_started_stops_at_once() -> None:
    Heartbeat(Turns(), 1.0, lambda outcome, began: None).stop(10)  # type: ignore[arg-type]
