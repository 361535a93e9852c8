"""The Slack sink with the real slack-sdk clients against a Slack-compatible
server on loopback: exact payloads, threads and updates, rate limits, and
errors that say what failed without ever showing the token or webhook URL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from slack_server import Fault, SlackServer

from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from alerts.sinks.slack import SlackSink, SlackWebhookSink, blocks
from topology import State

TOKEN = "xoxb-d1st1nct1ve-T0KEN-never-shown-4242"
WEBHOOK_SECRET = "T0WD/B0WD/s3cr3t-w3bh00k-p4th-7777"
CHANNEL_IDS = {"#incidents": "C0INCIDENTS", "#ops": "C0OPS"}
ROUTES = {"critical": "#incidents", "default": "#ops"}
API = "http://127.0.0.1:9120"
T0 = 1_700_000_000.0

ALERT = Alert(
    key="outage:farm-oms-1",
    kind="outage",
    severity="critical",
    root_cause=("farm-oms-1",),
    summary="farm-oms-1 down: 2 critical nodes down",
    started_at=T0,
    critical=(
        Impacted("orders-workflow", State.DOWN, 600.0, T0),
        Impacted("orders-store", State.DEGRADED, 600.0, T0 + 30),
    ),
    collateral=("orders-search", "search-ui", "reports"),
)

LINKS = (
    "<http://127.0.0.1:9120/api/v1/status|Status>"
    " · <http://127.0.0.1:9120/api/v1/incidents?node=farm-oms-1|Incidents of farm-oms-1>"
    " · alert `outage:farm-oms-1`"
)

# The summary names the critical nodes (those the rules write do): the
# text says it once, with the root cause.
FIRING_TEXT = "critical: farm-oms-1 down: 2 critical nodes down (root cause farm-oms-1)"
FIRING_BLOCKS = [
    {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": ":red_circle: farm-oms-1 down: 2 critical nodes down",
            "emoji": True,
        },
    },
    {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*Root cause*\n`farm-oms-1`"},
            {"type": "mrkdwn", "text": "*Severity*\ncritical"},
        ],
    },
    {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Critical nodes down or degraded (2)*\n"
            "• `orders-workflow` down, recovery target 10m, 7m30s left\n"
            "• `orders-store` degraded, recovery target 10m, 8m left",
        },
    },
    {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "*Collateral:* 3 other nodes fail because of it"}],
    },
    {"type": "context", "elements": [{"type": "mrkdwn", "text": LINKS}]},
]

RESOLVED_TEXT = (
    "resolved after 10m30s: farm-oms-1 down: 2 critical nodes down (root cause farm-oms-1)"
)
RESOLVED_BLOCKS = [
    {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": ":white_check_mark: Resolved: farm-oms-1 down: 2 critical nodes down",
            "emoji": True,
        },
    },
    {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*Root cause*\n`farm-oms-1`"},
            {"type": "mrkdwn", "text": "*Lasted*\n10m30s"},
        ],
    },
    {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Critical nodes that were down or degraded (2)*\n"
            "• `orders-workflow` down for 10m30s, target 10m *breached by 30s*\n"
            "• `orders-store` degraded for 10m, within its target of 10m",
        },
    },
    {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "*Collateral:* 3 other nodes failed because of it"}
        ],
    },
    {"type": "context", "elements": [{"type": "mrkdwn", "text": LINKS}]},
]
RESOLVED_REPLY = ":white_check_mark: Resolved after 10m30s: root cause `farm-oms-1`"


def notification(event: Any, at: float, alert: Alert = ALERT) -> Notification:
    return Notification(id=f"{alert.key}:{event}:{at:g}", alert=alert, event=event, at=at)


def metadata(event: str, at: float, alert: Alert = ALERT) -> dict[str, Any]:
    """The metadata naming a notification, posted with each message."""
    ident = f"{alert.key}:{event}:{at:g}"
    return {"event_type": "watchdog_notification", "event_payload": {"id": ident}}


@pytest.fixture(autouse=True)
def _no_proxy(no_proxy: None) -> None:
    """Every test here talks to the local Slack server."""


@pytest.fixture
def slack() -> Iterator[Any]:
    with SlackServer(token=TOKEN, channels=CHANNEL_IDS, webhook_secret=WEBHOOK_SECRET) as server:
        yield server


def sink_for(server: Any, *, token: str = TOKEN, **options: Any) -> SlackSink:
    return SlackSink(token, base_url=server.base_url, channels=ROUTES, link_base=API, **options)


def webhook_for(server: Any, **options: Any) -> SlackWebhookSink:
    return SlackWebhookSink(server.webhook_url, link_base=API, **options)


async def fire(sink: SlackSink) -> Receipt:
    return await sink.send(notification("firing", T0 + 150), None)


# -- the Web API --------------------------------------------------------------


@pytest.mark.anyio
async def test_it_posts_a_firing_alert_as_block_kit(slack: Any) -> None:
    sink = sink_for(slack)
    receipt = await fire(sink)
    await sink.aclose()

    (call,) = slack.calls
    assert call.method == "chat.postMessage"
    assert call.token == TOKEN
    assert call.params == {
        "channel": "#incidents",
        "text": FIRING_TEXT,
        "blocks": FIRING_BLOCKS,
        "unfurl_links": False,
        "metadata": metadata("firing", T0 + 150),
    }
    (message,) = slack.messages
    assert receipt == Receipt("slack", {"channel": "C0INCIDENTS", "ts": message.ts})


def test_it_builds_the_blocks_as_a_pure_function() -> None:
    assert blocks(notification("firing", T0 + 150), T0 + 150, API) == FIRING_BLOCKS
    assert blocks(notification("resolved", T0 + 630), T0 + 630, API + "/") == RESOLVED_BLOCKS
    late = blocks(notification("escalated", T0 + 700), T0 + 700, API)
    assert late[2]["text"]["text"] == (
        "*Critical nodes down or degraded (2)*\n"
        "• `orders-workflow` down, recovery target 10m, *breached 1m40s ago*\n"
        "• `orders-store` degraded, recovery target 10m, *breached 1m10s ago*"
    )


@pytest.mark.anyio
async def test_it_resolves_by_updating_the_original_and_replying_in_its_thread(
    slack: Any,
) -> None:
    sink = sink_for(slack)
    first = await fire(sink)
    receipt = await sink.send(notification("resolved", T0 + 630), first)
    await sink.aclose()

    original, reply = slack.messages
    update, posted = slack.calls[1:]
    assert update.method == "chat.update"
    assert update.params == {
        "channel": "C0INCIDENTS",
        "ts": original.ts,
        "text": RESOLVED_TEXT,
        "blocks": RESOLVED_BLOCKS,
    }
    assert posted.method == "chat.postMessage"
    assert posted.params == {
        "channel": "C0INCIDENTS",
        "thread_ts": original.ts,
        "text": RESOLVED_REPLY,
        "metadata": metadata("resolved", T0 + 630),
    }
    assert (original.text, original.blocks, original.updates) == (
        RESOLVED_TEXT,
        RESOLVED_BLOCKS,
        1,
    )
    assert reply.thread_ts == original.ts
    assert receipt == Receipt(
        "slack", {"channel": "C0INCIDENTS", "ts": original.ts, "reply_ts": reply.ts}
    )


@pytest.mark.anyio
async def test_it_replies_in_the_thread_for_repeat_and_escalated(slack: Any) -> None:
    sink = sink_for(slack)
    first = await fire(sink)
    repeat = await sink.send(notification("repeat", T0 + 300), first)
    escalated = await sink.send(notification("escalated", T0 + 700), repeat)
    await sink.aclose()

    original = slack.messages[0]
    assert [c.params for c in slack.calls[1:]] == [
        {
            "channel": "C0INCIDENTS",
            "thread_ts": original.ts,
            "text": "Still firing after 5m, root cause `farm-oms-1`: "
            "`orders-workflow` (5m left of 10m), `orders-store` (5m30s left of 10m)",
            "metadata": metadata("repeat", T0 + 300),
        },
        {
            "channel": "C0INCIDENTS",
            "thread_ts": original.ts,
            "text": ":rotating_light: Escalated: recovery target breached, root cause "
            "`farm-oms-1`: `orders-workflow` (target 10m breached 1m40s ago), "
            "`orders-store` (target 10m breached 1m10s ago)",
            "reply_broadcast": True,
            "metadata": metadata("escalated", T0 + 700),
        },
    ]
    # Every receipt points at the original: the thread stays one thread.
    assert repeat.data["ts"] == escalated.data["ts"] == original.ts
    assert [m.thread_ts for m in slack.messages] == [None, original.ts, original.ts]


@pytest.mark.anyio
async def test_it_routes_by_severity_and_falls_back_to_default(slack: Any) -> None:
    sink = sink_for(slack)
    warning = Alert(
        key="outage:orders-search",
        kind="outage",
        severity="warning",
        root_cause=("orders-search",),
        summary="orders-search down",
        started_at=T0,
    )
    receipt = await sink.send(notification("firing", T0, warning), None)
    await sink.aclose()

    assert slack.calls[0].params["channel"] == "#ops"
    assert receipt.data["channel"] == "C0OPS"
    assert slack.messages[0].blocks[2] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*No critical node down*"},
    }


@pytest.mark.anyio
async def test_it_posts_a_new_message_when_the_original_was_never_delivered(
    slack: Any,
) -> None:
    sink = sink_for(slack)
    receipt = await sink.send(notification("resolved", T0 + 630), None)
    await sink.aclose()

    (call,) = slack.calls
    assert call.method == "chat.postMessage"
    assert call.params["blocks"] == RESOLVED_BLOCKS
    assert receipt.data["ts"] == slack.messages[0].ts


@pytest.mark.anyio
async def test_it_keeps_within_slacks_block_limit_for_a_huge_outage(slack: Any) -> None:
    named = ", ".join(
        f"critical-service-with-a-long-name-{n:05d} down (9m left)" for n in range(10)
    )
    # As the rules write it: ten named, the rest counted.
    summary = f"farm-big down takes critical {named} and 4990 more critical nodes"
    many = Alert(
        key="outage:farm-big",
        kind="outage",
        severity="critical",
        root_cause=("farm-big",),
        summary=summary,
        started_at=T0,
        critical=tuple(
            Impacted(f"critical-service-with-a-long-name-{n:05d}", State.DOWN, 600.0, T0)
            for n in range(5000)
        ),
        collateral=tuple(f"n{n}" for n in range(1000)),
    )
    sink = sink_for(slack)
    await sink.send(notification("firing", T0 + 60, many), None)
    await sink.aclose()

    (message,) = slack.messages  # accepted by the server's Block Kit checks
    assert len(message.blocks) == 50
    assert message.blocks[-3]["text"]["text"].endswith(" more")
    assert message.text == f"critical: {summary} (root cause farm-big)"


@pytest.mark.anyio
async def test_it_waits_out_a_rate_limit_and_delivers_once(slack: Any) -> None:
    slack.fail_next(Fault.ratelimited(retry_after_s=0))
    sink = sink_for(slack)
    receipt = await fire(sink)
    await sink.aclose()

    assert [c.status for c in slack.calls] == [429, 200]
    (message,) = slack.messages
    assert receipt.data["ts"] == message.ts


@pytest.mark.anyio
async def test_it_hands_a_long_rate_limit_to_the_outbox(slack: Any) -> None:
    slack.fail_next(Fault.ratelimited(retry_after_s=120))
    sink = sink_for(slack, max_retry_after_s=10.0)
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    err = caught.value
    assert str(err) == (
        "slack chat.postMessage channel '#incidents': ratelimited (http 429), retry after 2m"
    )
    assert (err.permanent, err.retry_after_s) == (False, 120.0)
    assert len(slack.calls) == 1


@pytest.mark.anyio
async def test_it_stops_retrying_rate_limits_after_the_bound(slack: Any) -> None:
    slack.fail_next(*[Fault.ratelimited(retry_after_s=0)] * 3)
    sink = sink_for(slack, rate_limit_retries=2)
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    assert (caught.value.permanent, caught.value.retry_after_s) == (False, 0.0)
    assert [c.status for c in slack.calls] == [429, 429, 429]
    assert slack.messages == []


@pytest.mark.anyio
async def test_it_reports_a_server_error_as_transient(slack: Any) -> None:
    slack.fail_next(Fault.server_error(500))
    sink = sink_for(slack)
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    assert str(caught.value) == "slack chat.postMessage channel '#incidents': error (http 500)"
    assert caught.value.permanent is False
    assert len(slack.calls) == 1  # retrying is the outbox's job


@pytest.mark.anyio
async def test_it_reports_an_unknown_channel_as_permanent(slack: Any) -> None:
    sink = SlackSink(
        TOKEN, base_url=slack.base_url, channels={"default": "#nowhere"}, link_base=API
    )
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    assert str(caught.value) == (
        "slack chat.postMessage channel '#nowhere': channel_not_found (http 200)"
    )
    assert caught.value.permanent is True


@pytest.mark.anyio
async def test_it_reports_a_queued_channel_not_found_as_permanent(slack: Any) -> None:
    slack.fail_next(Fault.error("channel_not_found"))
    sink = sink_for(slack)
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    assert caught.value.permanent is True
    assert "channel_not_found" in str(caught.value)


@pytest.mark.anyio
async def test_it_times_out_a_hanging_server_as_transient(slack: Any) -> None:
    slack.fail_next(Fault.hanging())
    sink = sink_for(slack, timeout_s=0.5)
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    assert str(caught.value) == ("slack chat.postMessage channel '#incidents': timeout after 0.5s")
    assert caught.value.permanent is False


@pytest.mark.anyio
async def test_it_reports_a_refused_connection_as_transient(closed_port: int) -> None:
    sink = SlackSink(
        TOKEN,
        base_url=f"http://127.0.0.1:{closed_port}/api/",
        channels=ROUTES,
        link_base=API,
        timeout_s=5.0,
    )
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    assert caught.value.permanent is False
    assert str(caught.value).startswith(
        "slack chat.postMessage channel '#incidents': connection error ("
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "code"),
    [("xoxb-wrong-" + TOKEN, "invalid_auth"), ("", "not_authed")],
)
async def test_it_refuses_a_bad_token_permanently(slack: Any, token: str, code: str) -> None:
    sink = sink_for(slack, token=token)
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    assert str(caught.value) == f"slack chat.postMessage channel '#incidents': {code} (http 200)"
    assert caught.value.permanent is True


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault",
    [
        Fault.error("invalid_auth"),
        Fault.error("token_revoked"),
        Fault.error("missing_scope"),
        Fault.ratelimited(retry_after_s=600),
        Fault.server_error(503),
        Fault.hanging(),
    ],
    ids=["invalid_auth", "token_revoked", "missing_scope", "ratelimited", "503", "hang"],
)
async def test_its_errors_never_contain_the_token(
    slack: Any, caplog: pytest.LogCaptureFixture, fault: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.fail_next(fault)
    sink = sink_for(slack, timeout_s=0.5)
    with pytest.raises(SinkError) as caught:
        await fire(sink)
    await sink.aclose()

    err = caught.value
    assert err.__cause__ is None
    assert err.__suppress_context__ is True
    for shown in (str(err), repr(err), repr(sink), caplog.text):
        assert TOKEN not in shown
        assert "d1st1nct1ve" not in shown


MANEUVER = Alert(
    key="maneuver:3",
    kind="maneuver",
    severity="warning",
    root_cause=("farm-oms-1",),
    summary="alice started shutdown farm-oms-1 (rack <move>): degrades critical checkout",
    started_at=T0,
    critical=(Impacted("checkout", State.DEGRADED, 600.0, T0),),
)


@pytest.mark.anyio
async def test_a_notice_is_a_plain_message_never_threaded_nor_updated(slack: Any) -> None:
    sink = sink_for(slack)
    started = await sink.send(notification("notice", T0, MANEUVER), None)
    ended_alert = Alert(
        "maneuver:3", "maneuver", "info", ("farm-oms-1",), "maneuver 3 ended: recovered", T0
    )
    ended = await sink.send(notification("notice", T0 + 600, ended_alert), started)
    await sink.aclose()

    assert [(c.method, c.params) for c in slack.calls] == [
        (
            "chat.postMessage",
            {
                "channel": "#ops",
                "text": ":loudspeaker: warning: alice started shutdown farm-oms-1"
                " (rack &lt;move&gt;): degrades critical checkout",
                "unfurl_links": False,
                "metadata": metadata("notice", T0, MANEUVER),
            },
        ),
        (
            "chat.postMessage",
            {
                "channel": "#ops",
                "text": ":loudspeaker: maneuver 3 ended: recovered",
                "unfurl_links": False,
                "metadata": metadata("notice", T0 + 600, ended_alert),
            },
        ),
    ]
    first, second = slack.messages
    assert (first.blocks, first.thread_ts, first.updates) == (None, None, 0)
    assert (second.blocks, second.thread_ts) == (None, None)
    assert started == Receipt("slack", {"channel": "C0OPS", "ts": first.ts})
    assert ended == Receipt("slack", {"channel": "C0OPS", "ts": second.ts})


# -- incoming webhooks ------------------------------------------------------


@pytest.mark.anyio
async def test_the_webhook_posts_firing_reminders_and_resolved_messages(slack: Any) -> None:
    sink = webhook_for(slack)
    first = await sink.send(notification("firing", T0 + 150), None)
    repeat = await sink.send(notification("repeat", T0 + 300), first)
    resolved = await sink.send(notification("resolved", T0 + 630), repeat)
    await sink.aclose()

    assert [c.method for c in slack.calls] == ["webhook"] * 3
    assert [c.token for c in slack.calls] == [None] * 3
    assert [c.params for c in slack.calls] == [
        {"text": FIRING_TEXT, "blocks": FIRING_BLOCKS, "unfurl_links": False},
        {
            "text": "Still firing after 5m, root cause `farm-oms-1`: "
            "`orders-workflow` (5m left of 10m), `orders-store` (5m30s left of 10m)"
        },
        {"text": RESOLVED_TEXT, "blocks": RESOLVED_BLOCKS, "unfurl_links": False},
    ]
    assert first == repeat == resolved == Receipt("slack-webhook")
    assert len(slack.messages) == 3  # a webhook cannot update: resolved is a new message


@pytest.mark.anyio
async def test_the_webhook_posts_a_notice_as_a_plain_message(slack: Any) -> None:
    sink = webhook_for(slack)
    receipt = await sink.send(notification("notice", T0, MANEUVER), None)
    await sink.aclose()

    assert [c.params for c in slack.calls] == [
        {
            "text": ":loudspeaker: warning: alice started shutdown farm-oms-1"
            " (rack &lt;move&gt;): degrades critical checkout",
            "unfurl_links": False,
        }
    ]
    assert receipt == Receipt("slack-webhook")


@pytest.mark.anyio
async def test_the_webhook_waits_out_a_rate_limit(slack: Any) -> None:
    slack.fail_next(Fault.ratelimited(retry_after_s=0))
    sink = webhook_for(slack)
    await sink.send(notification("firing", T0 + 150), None)
    await sink.aclose()

    assert [c.status for c in slack.calls] == [429, 200]
    assert len(slack.messages) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "message", "permanent"),
    [
        (
            Fault(status=404, body="no_service", content_type="text/html"),
            "no_service (http 404)",
            True,
        ),
        (
            Fault(status=410, body="channel_is_archived", content_type="text/html"),
            "channel_is_archived (http 410)",
            True,
        ),
        (Fault.server_error(500), "error (http 500)", False),
        (Fault.hanging(), "timeout after 0.5s", False),
    ],
    ids=["no_service", "archived", "500", "hang"],
)
async def test_the_webhook_maps_errors_without_showing_its_url(
    slack: Any,
    caplog: pytest.LogCaptureFixture,
    fault: Any,
    message: str,
    permanent: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.fail_next(fault)
    sink = webhook_for(slack, timeout_s=0.5)
    with pytest.raises(SinkError) as caught:
        await sink.send(notification("firing", T0 + 150), None)
    await sink.aclose()

    err = caught.value
    assert str(err) == f"slack webhook: {message}"
    assert err.permanent is permanent
    for shown in (str(err), repr(err), repr(sink), caplog.text):
        assert "s3cr3t" not in shown


@pytest.mark.anyio
async def test_the_webhook_reports_a_wrong_url_as_permanent(slack: Any) -> None:
    sink = SlackWebhookSink(slack.webhook_url + "-typo", link_base=API)
    with pytest.raises(SinkError) as caught:
        await sink.send(notification("firing", T0 + 150), None)
    await sink.aclose()

    assert str(caught.value) == "slack webhook: no_service (http 404)"
    assert caught.value.permanent is True
