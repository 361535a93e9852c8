"""The outbox in memory (`alerts.memory_outbox.MemoryOutbox`): queueing once
per notification and sink, the first pending entry per occurrence and sink
in order, due times and limits, the claim, receipts for the next message of
an occurrence, retries, giving up, counts, the bound on what it holds; and
a real `Delivery` around it with a recording sink."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from clocks import Clock

from alerts.delivery import Delivery, Entry
from alerts.memory_outbox import MemoryOutbox
from alerts.model import Alert, Impacted, Notification, Receipt
from topology import State

pytestmark = pytest.mark.anyio

T0 = 1000.0


def note(
    event: str, key: str = "outage:farm", n: int = 1, started_at: float = 900.0
) -> Notification:
    alert = Alert(
        key=key,
        kind="outage",
        severity="critical",
        root_cause=(key.removeprefix("outage:"),),
        summary=f"{key} down",
        started_at=started_at,
        critical=(Impacted("workflow", State.DOWN, 600.0, started_at),),
    )
    return Notification(f"{alert.occurrence}#{n}:{event}", alert, event, T0 + n)  # type: ignore[arg-type]


FIRING, REPEAT, RESOLVED = note("firing", n=1), note("repeat", n=2), note("resolved", n=3)


def receipt(sink: str, n: int) -> Receipt:
    return Receipt(sink, MappingProxyType({"n": str(n)}))


def ids(entries: list[Entry]) -> list[tuple[str, str]]:
    return [(e.notification.id, e.sink) for e in entries]


class Recording:
    """A sink that records what it is sent and with which previous receipt."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.sent: list[tuple[Notification, Receipt | None]] = []

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        self.sent.append((notification, previous))
        return receipt(self._name, len(self.sent))

    async def aclose(self) -> None:
        pass


async def test_a_notification_is_queued_once_per_sink() -> None:
    outbox = MemoryOutbox()
    assert await outbox.put([FIRING], ["webhook", "slack"], T0) == 2
    assert await outbox.put([FIRING, REPEAT], ["webhook", "slack"], T0) == 2  # the repeat only
    assert await outbox.put([FIRING], ["webhook", "console"], T0) == 1  # a new sink
    assert await outbox.pending() == {"webhook": 2, "slack": 2, "console": 1}
    assert await outbox.put([], ["webhook"], T0) == 0
    assert await outbox.put([RESOLVED], [], T0) == 0


async def test_due_gives_the_first_pending_entry_of_each_occurrence_per_sink_oldest_first() -> None:
    outbox = MemoryOutbox()
    other = note("firing", "outage:db", 1)
    await outbox.put([FIRING, REPEAT], ["webhook"], T0)
    await outbox.put([other], ["webhook", "slack"], T0)
    await outbox.put([RESOLVED], ["slack"], T0)

    assert ids(await outbox.due(T0, 10)) == [
        (FIRING.id, "webhook"),
        (other.id, "webhook"),
        (other.id, "slack"),
        (RESOLVED.id, "slack"),  # the farm's first message to slack
    ]
    assert ids(await outbox.due(T0, 10, sink="webhook")) == [
        (FIRING.id, "webhook"),
        (other.id, "webhook"),
    ]
    assert ids(await outbox.due(T0, 2)) == [(FIRING.id, "webhook"), (other.id, "webhook")]
    assert await outbox.due(T0, 10, sink="nowhere") == []


async def test_the_next_message_of_an_occurrence_comes_due_once_the_first_is_delivered() -> None:
    outbox = MemoryOutbox()
    await outbox.put([FIRING, REPEAT, RESOLVED], ["webhook"], T0)
    for n, expected in enumerate((FIRING, REPEAT, RESOLVED), 1):
        [entry] = await outbox.due(T0, 10)
        assert entry.notification == expected
        assert await outbox.begin(entry, T0)
        await outbox.delivered(entry, receipt("webhook", n), T0)
    assert await outbox.due(T0, 10) == []
    assert await outbox.pending() == {}


async def test_due_respects_the_next_attempt_time() -> None:
    outbox = MemoryOutbox()
    await outbox.put([FIRING], ["webhook"], T0)
    [entry] = await outbox.due(T0, 10)
    assert await outbox.begin(entry, T0)
    await outbox.retry(entry, "503", T0, T0 + 30)

    assert await outbox.due(T0 + 29, 10) == []
    assert await outbox.next_due("webhook") == T0 + 30
    [again] = await outbox.due(T0 + 30, 10)
    assert (again.id, again.attempts) == (entry.id, 1)
    assert await outbox.next_due("slack") is None


async def test_an_entry_is_claimed_once_per_attempt() -> None:
    outbox = MemoryOutbox()
    await outbox.put([FIRING], ["webhook"], T0)
    [entry] = await outbox.due(T0, 10)
    assert await outbox.begin(entry, T0)
    assert not await outbox.begin(entry, T0)  # the same attempt, claimed already
    [next_attempt] = await outbox.due(T0, 10)
    assert next_attempt.attempts == 1
    assert await outbox.begin(next_attempt, T0)
    await outbox.delivered(next_attempt, receipt("webhook", 1), T0)
    assert not await outbox.begin(next_attempt, T0)  # finished
    assert not await outbox.begin(Entry(999, "webhook", FIRING, 0), T0)  # unknown


async def test_a_delivered_receipt_is_found_for_the_next_message_of_its_occurrence() -> None:
    outbox = MemoryOutbox()
    later = note("firing", "outage:farm", 1, started_at=5000.0)  # another occurrence
    assert await outbox.receipt(REPEAT, "webhook") is None
    await outbox.put([FIRING], ["webhook", "slack"], T0)
    for entry in await outbox.due(T0, 10):
        assert await outbox.begin(entry, T0)
        await outbox.delivered(entry, receipt(entry.sink, 7), T0)

    assert await outbox.receipt(REPEAT, "webhook") == receipt("webhook", 7)
    assert await outbox.receipt(RESOLVED, "slack") == receipt("slack", 7)
    assert await outbox.receipt(REPEAT, "console") is None
    assert await outbox.receipt(later, "webhook") is None


async def test_giving_up_drops_the_entry_and_lets_the_next_come_due() -> None:
    outbox = MemoryOutbox()
    await outbox.put([FIRING, RESOLVED], ["webhook"], T0)
    [entry] = await outbox.due(T0, 10)
    assert await outbox.begin(entry, T0)
    await outbox.give_up(entry, "410 gone", T0)

    assert ids(await outbox.due(T0, 10)) == [(RESOLVED.id, "webhook")]
    assert await outbox.counts() == {("webhook", "pending"): 1}
    assert await outbox.receipt(RESOLVED, "webhook") is None  # nothing was delivered
    assert await outbox.put([FIRING], ["webhook"], T0) == 0  # not queued again


async def test_counts_are_the_pending_entries_per_sink() -> None:
    outbox = MemoryOutbox()
    assert await outbox.counts() == {}
    await outbox.put([FIRING, REPEAT], ["webhook"], T0)
    await outbox.put([FIRING], ["slack"], T0)
    [first, *_] = await outbox.due(T0, 10, sink="webhook")
    assert await outbox.begin(first, T0)
    await outbox.delivered(first, receipt("webhook", 1), T0)
    assert await outbox.counts() == {("webhook", "pending"): 1, ("slack", "pending"): 1}


async def test_past_its_limit_it_drops_the_oldest_pending_and_counts_them() -> None:
    outbox = MemoryOutbox(limit=3)
    notes = [note("firing", f"outage:n{i}", 1) for i in range(5)]
    assert await outbox.put(notes[:3], ["webhook"], T0) == 3
    assert outbox.dropped == 0
    assert await outbox.put(notes[3:], ["webhook"], T0) == 2

    assert outbox.dropped == 2
    assert [e.notification for e in await outbox.due(T0, 10)] == notes[2:]
    assert await outbox.pending() == {"webhook": 3}
    # A dropped notification may be queued again (and drops the oldest).
    assert await outbox.put([notes[0]], ["webhook"], T0) == 1
    assert outbox.dropped == 3
    assert [e.notification for e in await outbox.due(T0, 10)] == [*notes[3:], notes[0]]


async def test_finished_entries_do_not_count_against_the_limit() -> None:
    outbox = MemoryOutbox(limit=2)
    notes = [note("firing", f"outage:n{i}", 1) for i in range(4)]
    await outbox.put(notes[:2], ["webhook"], T0)
    for entry in await outbox.due(T0, 10):
        assert await outbox.begin(entry, T0)
        await outbox.delivered(entry, receipt("webhook", entry.id), T0)
    await outbox.put(notes[2:], ["webhook"], T0)
    assert outbox.dropped == 0
    assert await outbox.pending() == {"webhook": 2}


async def test_what_it_remembers_of_delivered_notifications_stays_within_its_limit() -> None:
    box = MemoryOutbox(limit=10)
    for i in range(1000):
        firing = note("firing", key=f"outage:n{i}", started_at=float(i))
        await box.put([firing], ["am"], T0)
        [entry] = await box.due(T0 + 1, 10)
        assert await box.begin(entry, T0)
        await box.delivered(entry, receipt("am", i), T0)
    # The latest ones are still known: neither queued twice nor without receipt.
    assert await box.put([firing], ["am"], T0) == 0
    assert await box.receipt(firing, "am") == receipt("am", 999)
    assert len(box._queued) <= 10
    assert len(box._receipts) <= 10


async def test_a_resolution_ends_what_it_remembers_of_its_alert() -> None:
    box = MemoryOutbox()
    await box.put([FIRING, RESOLVED], ["am"], T0)
    for n in (1, 2):
        [entry] = await box.due(T0 + 10, 10)
        assert await box.begin(entry, T0)
        await box.delivered(entry, receipt("am", n), T0)
    assert await box.receipt(FIRING, "am") is None
    assert await box.due(T0 + 10, 10) == []


def test_it_holds_one_entry_or_more() -> None:
    with pytest.raises(ValueError, match="one entry or more"):
        MemoryOutbox(limit=0)


async def test_delivery_sends_firing_then_resolved_the_resolution_with_the_firings_receipt() -> (
    None
):
    clock = Clock(T0)
    outbox = MemoryOutbox()
    hook = Recording("webhook")
    delivery = Delivery(outbox, {"webhook": hook}, clock)
    await outbox.put([FIRING, RESOLVED], ["webhook"], T0)

    # One message of the occurrence per round: its order kept.
    for _ in range(4):  # bounded: two rounds deliver it all
        if not await outbox.pending():
            break
        await delivery.run_once()

    assert [(n.id, previous) for n, previous in hook.sent] == [
        (FIRING.id, None),
        (RESOLVED.id, receipt("webhook", 1)),
    ]
    assert await outbox.pending() == {}
    assert delivery.status()["webhook"].delivered == 2
