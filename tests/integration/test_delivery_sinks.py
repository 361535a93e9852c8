"""Delivery per sink with real sinks: the Slack sink (the real slack-sdk
client) against a Slack-compatible server on loopback that hangs, and the
webhook sink against a loopback HTTP receiver. The webhook gets its firing
and its resolution while Slack still has not answered; what Slack missed is
delivered at the next start, posted once and then updated."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from clocks import Clock
from http_wire import Recorder
from slack_server import Fault, SlackServer
from stored_async import threaded
from waiting import until

from alerts.delivery import Delivery
from alerts.model import Alert, Impacted, Notification
from alerts.sinks.slack import SlackSink
from alerts.sinks.webhook import WebhookSink
from topology import State
from watchdog.outbox import Outbox
from watchdog.store import Store

pytestmark = pytest.mark.anyio

TOKEN = "xoxb-per-sink-T0KEN-5150"
CHANNELS = {"#incidents": "C0INCIDENTS", "#ops": "C0OPS"}
T0 = 1_700_000_200.0
# Bounds on a send, far above how long the test waits for the webhook: so
# that Slack is still hanging, with the request in flight, meanwhile.
SEND_TIMEOUT_S = 60.0

ALERT = Alert(
    key="outage:farm-oms-1",
    kind="outage",
    severity="critical",
    root_cause=("farm-oms-1",),
    summary="farm-oms-1 down",
    started_at=T0,
    critical=(Impacted("orders-workflow", State.DOWN, 600.0, T0),),
)
FIRING = Notification(f"{ALERT.occurrence}#1:firing", ALERT, "firing", T0 + 10)
RESOLVED = Notification(f"{ALERT.occurrence}#2:resolved", ALERT, "resolved", T0 + 70)


@pytest.fixture
def slack(no_proxy: None) -> Iterator[SlackServer]:
    with SlackServer(token=TOKEN, channels=CHANNELS) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=SEND_TIMEOUT_S) as client:
        yield client


def slack_sink(server: SlackServer) -> SlackSink:
    return SlackSink(
        TOKEN,
        base_url=server.base_url,
        channels={"default": "#ops", "critical": "#incidents"},
        link_base="http://127.0.0.1:9120",
        timeout_s=SEND_TIMEOUT_S,
    )


async def test_a_hanging_slack_does_not_delay_the_webhook(
    slack: SlackServer,
    client: httpx.AsyncClient,
    serve: Any,
    tmp_path: Path,
) -> None:
    clock = Clock(T0 + 70)
    store = Store.open(tmp_path / "state.db", clock=clock)
    outbox = Outbox(store)
    outbox.put([FIRING, RESOLVED], ["slack", "webhook"], clock.now)
    slack.fail_next(Fault.hanging())
    receiver = Recorder()
    serving: AbstractAsyncContextManager[Any] = serve(receiver)
    async with serving as server:
        hook = WebhookSink(f"http://127.0.0.1:{server.port}/hook", client)
        sink = slack_sink(slack)
        delivery = Delivery(
            threaded(outbox), {"slack": sink, "webhook": hook}, clock, send_timeout_s=SEND_TIMEOUT_S
        )
        async with delivery.running():
            # Received, then marked delivered once the answer is read: wait for both.
            await until(
                lambda: delivery.status()["webhook"].delivered == 2,
                awaited="the webhook's two events",
            )
            status = delivery.status()
            # Slack has the firing's request and has not answered it.
            assert status["slack"].busy
            assert (slack.calls, slack.messages) == ([], [])
            assert (status["webhook"].delivered, status["webhook"].busy) == (2, False)
        await sink.aclose()

    bodies = [json.loads(request.body) for request in receiver.requests]
    assert [(b["id"], b["event"]) for b in bodies] == [
        (FIRING.id, "firing"),
        (RESOLVED.id, "resolved"),
    ]
    assert outbox.counts() == {("slack", "pending"): 2, ("webhook", "delivered"): 2}

    # Slack answers again; the next start delivers what it missed, in order.
    slack.release.set()
    sink = slack_sink(slack)
    async with Delivery(threaded(outbox), {"slack": sink}, clock).running():
        await until(
            lambda: outbox.counts() == {("slack", "delivered"): 2, ("webhook", "delivered"): 2},
            awaited="slack's deliveries",
        )
    await sink.aclose()
    store.close()

    # Posted once, then updated by the resolution, which also replies in its thread.
    original, reply = slack.messages
    assert (original.channel, original.thread_ts, original.updates) == ("C0INCIDENTS", None, 1)
    assert (reply.channel, reply.thread_ts) == ("C0INCIDENTS", original.ts)
