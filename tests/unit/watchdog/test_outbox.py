"""The durable outbox and the delivery loop around every sink, on a real
SQLite file, with recording sinks and an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType

import pytest
from clocks import Clock

from alerts.codec import dumps, loads
from alerts.delivery import Backoff, Delivery
from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from topology import State
from watchdog.outbox import Outbox
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
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "state.db", clock=lambda: 0.0)


def test_a_notification_survives_the_round_trip_through_json() -> None:
    assert loads(dumps(note())) == note()


async def test_it_delivers_each_notification_once_per_sink(store: Store) -> None:
    clock = Clock(1000.0)
    outbox = Outbox(store)
    slack, am = Recording("slack"), Recording("alertmanager")
    delivery = Delivery(outbox, {"slack": slack, "alertmanager": am}, clock)

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
    delivery = Delivery(outbox, {"slack": slack}, Clock(1000.0))
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
    delivery = Delivery(outbox, {"slack": slack}, clock, backoff=Backoff(base_s=10, max_s=60))
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
    delivery = Delivery(outbox, {"slack": slack}, clock)
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
        outbox, {"webhook": dead, "slow": hanging, "slack": slack}, clock, send_timeout_s=0.05
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


async def test_a_restart_delivers_what_was_queued_and_nothing_twice(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    with Store.open(tmp_path / "state.db", clock=clock) as store:
        outbox = Outbox(store)
        outbox.put([note("firing", 1)], ["slack"], clock.now)
        await Delivery(outbox, {"slack": Recording("slack")}, clock).run_once()
        outbox.put([note("resolved", 2)], ["slack"], clock.now)

    slack = Recording("slack")
    with Store.open(tmp_path / "state.db", clock=clock) as store:
        outbox = Outbox(store)
        assert await Delivery(outbox, {"slack": slack}, clock).run_once() == 1
    assert [sent for sent, _ in slack.sent] == ["outage:farm@900.000#2:resolved"]
    assert slack.sent[0][1] == Receipt("slack", MappingProxyType({"n": "1"}))
