"""Exactly once in Slack across lost answers: a message Slack accepted whose
answer never arrived (the daemon killed mid-delivery, a timeout) is found by
its metadata on the next attempt instead of being posted again. The real
slack-sdk client, the real outbox on SQLite, a Slack-compatible server on
loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clocks import Clock
from slack_server import Fault, SlackServer
from stored_async import threaded
from waiting import until

from alerts.delivery import Backoff, Delivery
from alerts.model import Alert, Impacted, Notification
from alerts.sinks.slack import SlackSink
from topology import State
from watchdog.outbox import Outbox
from watchdog.store import Store

pytestmark = pytest.mark.anyio

TOKEN = "xoxb-recovery-T0KEN-3131"
CHANNELS = {"#incidents": "C0INCIDENTS", "#ops": "C0OPS"}
T0 = 1_700_000_100.0
DEADLINE_S = 10.0

ALERT = Alert(
    key="outage:farm-oms-1",
    kind="outage",
    severity="critical",
    root_cause=("farm-oms-1",),
    summary="farm-oms-1 down",
    started_at=T0,
    critical=(Impacted("orders-workflow", State.DOWN, 600.0, T0),),
)


@pytest.fixture
def slack(no_proxy: None) -> Iterator[SlackServer]:
    with SlackServer(token=TOKEN, channels=CHANNELS) as server:
        yield server


def sink_for(server: SlackServer, channel: str = "#incidents") -> SlackSink:
    return SlackSink(
        TOKEN,
        base_url=server.base_url,
        channels={"default": channel},
        link_base="http://127.0.0.1:9120",
        timeout_s=1.0,
    )


def note(event: Any, at: float) -> Notification:
    return Notification(f"{ALERT.key}@{T0}#{event}", ALERT, event, at)


def delivery(store: Store, sink: SlackSink, clock: Clock) -> Delivery:
    return Delivery(threaded(Outbox(store)), {"slack": sink}, clock, backoff=Backoff(base_s=1.0))


@pytest.mark.parametrize("channel", ["#incidents", "C0INCIDENTS"])
async def test_a_daemon_killed_mid_delivery_does_not_post_twice_after_restart(
    slack: SlackServer, tmp_path: Path, channel: str
) -> None:
    clock = Clock(T0)
    store = Store.open(tmp_path / "state.db", clock=clock)
    Outbox(store).put([note("firing", T0)], ["slack"], T0)
    slack.fail_next(Fault.lost_answer())
    first = asyncio.create_task(delivery(store, sink_for(slack, channel), clock).run_once())
    await until(lambda: slack.messages)
    first.cancel()  # killed: the message is in Slack, its outcome nowhere
    await asyncio.gather(first, return_exceptions=True)
    store.close()
    slack.release.set()

    # The restarted daemon: a new store, outbox, sink and delivery.
    store = Store.open(tmp_path / "state.db", clock=clock)
    assert await delivery(store, sink_for(slack, channel), clock).run_once() == 1
    [message] = slack.messages
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert Outbox(store).counts() == {("slack", "delivered"): 1}
    # The receipt is the message's, so the resolution updates it.
    receipt = Outbox(store).receipt(note("resolved", T0 + 60), "slack")
    assert receipt is not None
    assert dict(receipt.data) == {"channel": "C0INCIDENTS", "ts": message.ts}
    store.close()


async def test_a_reply_whose_answer_timed_out_is_found_in_the_thread(
    slack: SlackServer, tmp_path: Path
) -> None:
    clock = Clock(T0)
    store = Store.open(tmp_path / "state.db", clock=clock)
    outbox = Outbox(store)
    deliver = delivery(store, sink_for(slack), clock)
    outbox.put([note("firing", T0)], ["slack"], T0)
    assert await deliver.run_once() == 1

    clock.now = T0 + 60
    outbox.put([note("repeat", T0 + 60)], ["slack"], T0 + 60)
    slack.fail_next(Fault.lost_answer())
    assert await deliver.run_once() == 0  # timed out: to be retried
    slack.release.set()
    clock.now += 5
    assert await deliver.run_once() == 1

    original, reply = slack.messages
    assert reply.thread_ts == original.ts
    assert len(slack.calls_to("chat.postMessage")) == 2
    # Looked up once (the hung call is recorded when released, so not by order).
    assert len(slack.calls_to("conversations.replies")) == 1
    store.close()


async def test_a_failed_attempt_that_posted_nothing_is_posted_on_retry(
    slack: SlackServer, tmp_path: Path
) -> None:
    clock = Clock(T0)
    store = Store.open(tmp_path / "state.db", clock=clock)
    Outbox(store).put([note("firing", T0)], ["slack"], T0)
    deliver = delivery(store, sink_for(slack), clock)
    slack.fail_next(Fault.server_error())
    assert await deliver.run_once() == 0
    clock.now += 5
    assert await deliver.run_once() == 1
    assert len(slack.messages) == 1
    assert [c.method for c in slack.calls] == [
        "chat.postMessage",
        "conversations.list",
        "conversations.history",
        "chat.postMessage",
    ]
    store.close()


async def test_without_the_scope_to_look_it_posts_again_rather_than_never(
    slack: SlackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    store = Store.open(tmp_path / "state.db", clock=clock)
    Outbox(store).put([note("firing", T0)], ["slack"], T0)
    deliver = delivery(store, sink_for(slack, "C0INCIDENTS"), clock)
    slack.fail_next(Fault.lost_answer())
    assert await deliver.run_once() == 0
    slack.release.set()
    clock.now += 5
    slack.fail_next(Fault.error("missing_scope"))
    with caplog.at_level(logging.WARNING, logger="alerts.delivery"):
        assert await deliver.run_once() == 1
    assert len(slack.messages) == 2  # at least once: a duplicate, not a loss
    assert "cannot check an earlier attempt" in caplog.text
    assert TOKEN not in caplog.text
    store.close()


async def test_a_notice_whose_answer_was_lost_is_found_in_the_channel_not_a_thread(
    slack: SlackServer, tmp_path: Path
) -> None:
    clock = Clock(T0)
    store = Store.open(tmp_path / "state.db", clock=clock)
    outbox = Outbox(store)
    deliver = delivery(store, sink_for(slack, "C0INCIDENTS"), clock)
    maneuver = Alert("maneuver:7", "maneuver", "info", ("kv-a",), "alice started drain kv-a", T0)
    started = Notification("maneuver:7:running", maneuver, "notice", T0)
    ended = Notification("maneuver:7:end", maneuver, "notice", T0 + 60)
    outbox.put([started], ["slack"], T0)
    assert await deliver.run_once() == 1

    clock.now = T0 + 60
    outbox.put([ended], ["slack"], T0 + 60)  # the same occurrence: it has a previous receipt
    slack.fail_next(Fault.lost_answer())
    assert await deliver.run_once() == 0
    slack.release.set()
    clock.now += 5
    assert await deliver.run_once() == 1

    assert [(m.text, m.thread_ts) for m in slack.messages] == [
        (":loudspeaker: alice started drain kv-a", None),
        (":loudspeaker: alice started drain kv-a", None),
    ]
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert len(slack.calls_to("conversations.history")) == 1
    assert slack.calls_to("conversations.replies") == []
    store.close()
