"""The durable outbox and the delivery loop around every sink, on a real
SQLite file and on a real Postgres, with recording sinks and an injected
clock; the outbox's own SQL is read for its query plan (SQLite's)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType

import pytest
from clocks import Clock
from postgres_server import Backend
from stored_async import threaded

from alerts.codec import dumps, loads
from alerts.delivery import Backoff, Delivery
from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from topology import State
from watchdog.outbox import _DUE, _DUE_FOR_SINK, _NEXT_DUE, Outbox
from watchdog.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recording:
    """A sink that records what it is sent, failing as told first."""

    def __init__(self, name: str, failures: list[SinkError | str] | None = None) -> None:
        self._name = name
        self.failures = list(failures or [])
        self.sent: list[tuple[str, Receipt | None]] = []

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "hang":
                await asyncio.sleep(3600)
            assert isinstance(failure, SinkError)
            raise failure
        self.sent.append((notification.id, previous))
        return Receipt(self._name, MappingProxyType({"n": str(len(self.sent))}))

    async def aclose(self) -> None:
        pass


def note(event: str = "firing", n: int = 1, key: str = "outage:farm") -> Notification:
    alert = Alert(
        key=key,
        kind="outage",
        severity="critical",
        root_cause=("farm",),
        summary="farm down takes critical workflow down (9m left)",
        started_at=900.0,
        critical=(Impacted("workflow", State.DOWN, 600.0, 900.0),),
        collateral=("search",),
        labels=MappingProxyType({"team": "orders"}),
    )
    return Notification(f"{key}@900.000#{n}:{event}", alert, event, 1000.0 + n)  # type: ignore[arg-type]


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def test_a_notification_survives_the_round_trip_through_json() -> None:
    assert loads(dumps(note())) == note()


async def test_it_delivers_each_notification_once_per_sink(store: Store) -> None:
    clock = Clock(1000.0)
    outbox = Outbox(store)
    slack, am = Recording("slack"), Recording("alertmanager")
    delivery = Delivery(threaded(outbox), {"slack": slack, "alertmanager": am}, clock)

    assert outbox.put([note()], ["slack", "alertmanager"], clock.now) == 2
    assert outbox.put([note()], ["slack", "alertmanager"], clock.now) == 0  # queued once
    assert await delivery.run_once() == 2
    assert await delivery.run_once() == 0
    assert slack.sent == [("outage:farm@900.000#1:firing", None)]
    assert am.sent == [("outage:farm@900.000#1:firing", None)]
    assert outbox.counts() == {("alertmanager", "delivered"): 1, ("slack", "delivered"): 1}


async def test_the_next_notification_gets_the_previous_receipt(store: Store) -> None:
    outbox = Outbox(store)
    slack = Recording("slack")
    delivery = Delivery(threaded(outbox), {"slack": slack}, Clock(1000.0))
    outbox.put([note("firing", 1), note("resolved", 2)], ["slack"], 1000.0)
    await delivery.run_once()
    await delivery.run_once()
    assert slack.sent == [
        ("outage:farm@900.000#1:firing", None),
        ("outage:farm@900.000#2:resolved", Receipt("slack", MappingProxyType({"n": "1"}))),
    ]


async def test_transient_failures_retry_with_backoff_and_keep_the_order(store: Store) -> None:
    clock = Clock(1000.0)
    outbox = Outbox(store)
    slack = Recording("slack", [SinkError("slack: 500", permanent=False)] * 2)
    delivery = Delivery(
        threaded(outbox), {"slack": slack}, clock, backoff=Backoff(base_s=10, max_s=60)
    )
    outbox.put([note("firing", 1), note("resolved", 2)], ["slack"], clock.now)

    assert await delivery.run_once() == 0  # attempt 1 fails: retry in 10s
    clock.now += 9
    assert await delivery.run_once() == 0  # not due; the resolution waits its turn
    clock.now += 1
    assert await delivery.run_once() == 0  # attempt 2 fails: retry in 20s
    clock.now += 20
    assert await delivery.run_once() == 1
    assert await delivery.run_once() == 1
    assert [sent for sent, _ in slack.sent] == [
        "outage:farm@900.000#1:firing",
        "outage:farm@900.000#2:resolved",
    ]


async def test_retry_after_wins_when_longer(store: Store) -> None:
    clock = Clock(1000.0)
    outbox = Outbox(store)
    slack = Recording(
        "slack", [SinkError("slack: ratelimited", permanent=False, retry_after_s=120)]
    )
    delivery = Delivery(threaded(outbox), {"slack": slack}, clock)
    outbox.put([note()], ["slack"], clock.now)
    await delivery.run_once()
    clock.now += 119
    assert await delivery.run_once() == 0
    clock.now += 1
    assert await delivery.run_once() == 1


async def test_a_dead_sink_never_blocks_the_others(store: Store) -> None:
    clock = Clock(1000.0)
    outbox = Outbox(store)
    dead = Recording("webhook", [SinkError("webhook: http 404", permanent=True)])
    hanging = Recording("slow", ["hang"])
    slack = Recording("slack")
    delivery = Delivery(
        threaded(outbox),
        {"webhook": dead, "slow": hanging, "slack": slack},
        clock,
        send_timeout_s=0.05,
    )
    outbox.put([note()], ["webhook", "slow", "slack"], clock.now)

    assert await delivery.run_once() == 1
    assert [sent for sent, _ in slack.sent] == ["outage:farm@900.000#1:firing"]
    assert outbox.counts() == {
        ("slack", "delivered"): 1,
        ("slow", "pending"): 1,
        ("webhook", "failed"): 1,
    }
    clock.now += 3600
    assert await delivery.run_once() == 1  # the slow one, answering now; the dead one never again
    assert dead.sent == []


async def test_a_restart_delivers_what_was_queued_and_nothing_twice(backend: Backend) -> None:
    clock = Clock(1000.0)
    with backend.open(clock=clock) as store:
        outbox = Outbox(store)
        outbox.put([note("firing", 1)], ["slack"], clock.now)
        await Delivery(threaded(outbox), {"slack": Recording("slack")}, clock).run_once()
        outbox.put([note("resolved", 2)], ["slack"], clock.now)

    slack = Recording("slack")
    with backend.open(clock=clock) as store:
        outbox = Outbox(store)
        assert await Delivery(threaded(outbox), {"slack": slack}, clock).run_once() == 1
    assert [sent for sent, _ in slack.sent] == ["outage:farm@900.000#2:resolved"]
    assert slack.sent[0][1] == Receipt("slack", MappingProxyType({"n": "1"}))


def test_it_reads_what_is_due_per_sink(store: Store) -> None:
    outbox = Outbox(store)
    outbox.put([note("firing", 1), note("resolved", 2)], ["slack", "webhook"], 1000.0)
    outbox.put([note("firing", 1, key="outage:db")], ["webhook"], 1000.0)
    [slack_firing, webhook_firing, db_firing] = outbox.due(1000.0, 10)

    assert [e.notification.id for e in outbox.due(1000.0, 10, sink="webhook")] == [
        "outage:farm@900.000#1:firing",
        "outage:db@900.000#1:firing",
    ]
    assert outbox.due(1000.0, 10, sink="slack") == [slack_firing]
    assert outbox.due(1000.0, 1, sink="webhook") == [webhook_firing]
    assert outbox.due(999.0, 10, sink="slack") == []
    assert outbox.due(1000.0, 10, sink="nobody") == []
    assert outbox.pending() == {"slack": 2, "webhook": 3}
    outbox.delivered(db_firing, Receipt("webhook"), 1000.0)
    assert outbox.pending() == {"slack": 2, "webhook": 2}


def test_the_next_due_is_that_of_the_first_pending_entry_of_each_occurrence(
    store: Store,
) -> None:
    outbox = Outbox(store)
    assert outbox.next_due("slack") is None
    outbox.put([note("firing", 1), note("resolved", 2)], ["slack"], 1000.0)
    assert outbox.next_due("slack") == 1000.0

    [firing] = outbox.due(1000.0, 10, sink="slack")
    outbox.retry(firing, "slack: 500", 1000.0, 1060.0)
    # The resolution was queued due at 1000, but waits for the firing.
    assert outbox.next_due("slack") == 1060.0
    assert outbox.due(1059.0, 10, sink="slack") == []
    outbox.put([note("firing", 1, key="outage:db")], ["slack"], 1010.0)
    assert outbox.next_due("slack") == 1010.0
    assert outbox.next_due("webhook") is None

    outbox.give_up(firing, "slack: gone", 1020.0)
    assert outbox.next_due("slack") == 1000.0  # the resolution, due all along


def test_reading_what_is_due_never_walks_the_delivered_history_in_sqlite(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db", clock=lambda: 0.0)
    outbox = Outbox(store)
    history = [
        (f"n{i}:{sink}", f"outage:n{i}@900.000", sink, "{}", 1.0, 1.0, "delivered")
        for i in range(50_000)
        for sink in ("slack", "webhook")
    ]
    with store.transaction("cannot fill the outbox") as connection:
        connection.executemany(
            "INSERT INTO outbox (notification_id, occurrence, sink, notification, created_at,"
            " next_attempt_at, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
            history,
        )
    outbox.put([note("firing", 1), note("resolved", 2)], ["slack", "webhook"], 1000.0)

    for sql, parameters in (
        (_DUE, (1000.0, 500)),
        (_DUE_FOR_SINK, (1000.0, "slack", 500)),
        (_NEXT_DUE, ("slack",)),
    ):
        plan = [row[3] for row in store.query("x", f"EXPLAIN QUERY PLAN {sql}", parameters)]
        assert plan[0].startswith("SEARCH o USING INDEX outbox_pending"), plan
        assert not any(step.startswith("SCAN") for step in plan), plan
    assert [e.notification.id for e in outbox.due(1000.0, 500, sink="slack")] == [
        "outage:farm@900.000#1:firing"
    ]
