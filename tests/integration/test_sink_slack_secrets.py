"""The Slack sinks, with the real slack-sdk clients, against a server whose
error pages quote the request back (its Authorization header, its path):
every call path fails with a clean `SinkError`, and neither the error, its
traceback, the log nor the process's output ever holds the bot token, the
webhook URL or the server's body."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_server import Fault, SlackServer
from stored_async import threaded

from alerts.delivery import Delivery
from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from alerts.sinks.slack import SlackSink, SlackWebhookSink
from topology import State
from watchdog.outbox import Outbox
from watchdog.store import Store

TOKEN = "xoxb-s3cr3t-T0KEN-quoted-back-9191"
WEBHOOK_SECRET = "T0SEC/B0SEC/w3bh00k-s3cr3t-p4th-5151"
BODY_MARK = "Bad gateway"  # in every quoting page: the body itself is never shown
NAMES = {"#incidents": "C0INCIDENTS", "#ops": "C0OPS"}
BY_NAME = {"critical": "#incidents", "default": "#ops"}
BY_ID = {"critical": "C0INCIDENTS", "default": "C0OPS"}
API = "http://127.0.0.1:9120"
T0 = 1_700_000_000.0

ALERT = Alert(
    key="outage:farm-oms-1",
    kind="outage",
    severity="critical",
    root_cause=("farm-oms-1",),
    summary="farm-oms-1 down: 1 critical node down",
    started_at=T0,
    critical=(Impacted("orders-workflow", State.DOWN, 600.0, T0),),
)

# Answers that are not what slack-sdk expects, each quoting the request:
# an HTML page (ContentTypeError inside the SDK), JSON announced but HTML
# sent (JSONDecodeError: the SDK's error quotes the body), plain text (the
# SDK keeps the body as a string and logs it), and an `error` code that is
# the Authorization header itself.
FAULTS = {
    "html-502": Fault.quoting(502),
    "html-200": Fault.quoting(200),
    "json-502": Fault.quoting(502, "application/json; charset=utf-8"),
    "json-200": Fault.quoting(200, "application/json; charset=utf-8"),
    "text-502": Fault.quoting(502, "text/plain"),
    "text-200": Fault.quoting(200, "text/plain"),
    "error-code": Fault(body='{"ok": false, "error": "{authorization}"}', quote_request=True),
}
# A webhook takes any 200 as delivered: its faults are the error statuses.
WEBHOOK_FAULTS = ("html-502", "json-502", "text-502", "text-400")
FAULTS["text-400"] = Fault.quoting(400, "text/plain")


def note(event: Any, at: float) -> Notification:
    return Notification(id=f"{ALERT.key}:{event}:{at:g}", alert=ALERT, event=event, at=at)


@pytest.fixture(autouse=True)
def _no_proxy(no_proxy: None) -> None:
    """Every test here talks to the local Slack server."""


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    with SlackServer(token=TOKEN, channels=NAMES, webhook_secret=WEBHOOK_SECRET) as server:
        yield server


def web(server: SlackServer, channels: dict[str, str] = BY_NAME) -> SlackSink:
    return SlackSink(TOKEN, base_url=server.base_url, channels=channels, link_base=API)


async def posted(sink: SlackSink) -> Receipt:
    """The receipt of a firing message the server accepted."""
    return await sink.send(note("firing", T0), None)


# Each call path of the sinks: (what it calls, how to make it call there).
Path_ = Callable[[SlackServer, Fault], Awaitable[None]]


async def _post(server: SlackServer, fault: Fault) -> None:
    server.fail_next(fault)
    await web(server).send(note("firing", T0), None)


async def _update(server: SlackServer, fault: Fault) -> None:
    sink = web(server)
    first = await posted(sink)
    server.fail_next(fault)
    await sink.send(note("resolved", T0 + 60), first)


async def _reply(server: SlackServer, fault: Fault) -> None:
    sink = web(server)
    first = await posted(sink)
    server.fail_next(fault)
    await sink.send(note("repeat", T0 + 60), first)


async def _find_by_name(server: SlackServer, fault: Fault) -> None:
    server.fail_next(fault)  # the channel's id is looked up first
    await web(server).find(note("firing", T0), None)


async def _find_in_history(server: SlackServer, fault: Fault) -> None:
    server.fail_next(fault)
    await web(server, BY_ID).find(note("firing", T0), None)


async def _find_in_thread(server: SlackServer, fault: Fault) -> None:
    sink = web(server, BY_ID)
    first = await posted(sink)
    server.fail_next(fault)
    await sink.find(note("repeat", T0 + 60), first)


async def _webhook(server: SlackServer, fault: Fault) -> None:
    server.fail_next(fault)
    await SlackWebhookSink(server.webhook_url, link_base=API).send(note("firing", T0), None)


async def _webhook_reply(server: SlackServer, fault: Fault) -> None:
    sink = SlackWebhookSink(server.webhook_url, link_base=API)
    first = await sink.send(note("firing", T0), None)
    server.fail_next(fault)
    await sink.send(note("repeat", T0 + 60), first)


PATHS: dict[str, tuple[str, Path_]] = {
    "post": ("slack chat.postMessage channel '#incidents'", _post),
    "update": ("slack chat.update channel 'C0INCIDENTS'", _update),
    "reply": ("slack chat.postMessage channel 'C0INCIDENTS'", _reply),
    "find-by-name": ("slack conversations.list channel '#incidents'", _find_by_name),
    "find-in-history": ("slack conversations.history channel 'C0INCIDENTS'", _find_in_history),
    "find-in-thread": ("slack conversations.replies channel 'C0INCIDENTS'", _find_in_thread),
    "webhook": ("slack webhook", _webhook),
    "webhook-reply": ("slack webhook", _webhook_reply),
}
CASES = [
    (path, fault)
    for path in sorted(PATHS)
    for fault in sorted(FAULTS)
    if fault in WEBHOOK_FAULTS or not path.startswith("webhook")
]


def secrets(server: SlackServer) -> list[str]:
    """What must never be shown: the token, the webhook URL and the parts of
    its path, and the server's body."""
    return [TOKEN, server.webhook_url, WEBHOOK_SECRET, "w3bh00k-s3cr3t-p4th-5151", BODY_MARK]


def assert_clean(text: str, server: SlackServer) -> None:
    for secret in secrets(server):
        assert secret not in text


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "fault"), CASES)
async def test_it_never_shows_a_secret_the_server_quotes_back(
    slack: SlackServer,
    path: str,
    fault: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    where, call = PATHS[path]
    calls_before = len(slack.calls)
    with pytest.raises(SinkError) as caught:
        await call(slack, FAULTS[fault])

    assert len(slack.calls) > calls_before  # the fault was answered to this path
    error = caught.value
    message = str(error)
    assert message.startswith(f"{where}: ")
    assert_clean(message, slack)
    # What `log.exception` would print of it: no chained original either.
    assert_clean("".join(traceback.format_exception(error)), slack)
    assert error.__cause__ is None
    assert error.__context__ is None
    assert_clean(caplog.text, slack)
    out, err = capfd.readouterr()
    assert_clean(out + err, slack)


@pytest.mark.anyio
async def test_it_names_the_status_of_an_answer_that_is_not_json(slack: SlackServer) -> None:
    slack.fail_next(Fault.quoting(502, "application/json; charset=utf-8"))
    with pytest.raises(SinkError) as caught:
        await web(slack).send(note("firing", T0), None)

    assert str(caught.value) == "slack chat.postMessage channel '#incidents': error (http 502)"
    assert caught.value.permanent is False


@pytest.mark.anyio
async def test_it_retries_a_success_status_whose_body_is_not_json(slack: SlackServer) -> None:
    # slack-sdk keeps a text/plain body as a string, then trips over it.
    slack.fail_next(Fault.quoting(200, "text/plain"))
    with pytest.raises(SinkError) as caught:
        await web(slack).send(note("firing", T0), None)

    assert str(caught.value) == (
        "slack chat.postMessage channel '#incidents': unreadable answer (AttributeError)"
    )
    assert caught.value.permanent is False


@pytest.mark.anyio
async def test_it_quotes_slacks_error_code_but_not_a_code_that_holds_the_token(
    slack: SlackServer,
) -> None:
    slack.fail_next(
        Fault.error("invalid_auth"),
        Fault(body=json.dumps({"ok": False, "error": "x{authorization}"}), quote_request=True),
    )
    sink = web(slack)
    with pytest.raises(SinkError) as first:
        await posted(sink)
    with pytest.raises(SinkError) as second:
        await posted(sink)

    assert (
        str(first.value) == "slack chat.postMessage channel '#incidents': invalid_auth (http 200)"
    )
    assert str(second.value) == "slack chat.postMessage channel '#incidents': error (http 200)"


@pytest.mark.anyio
async def test_the_webhook_quotes_no_code_that_holds_part_of_its_url() -> None:
    # A bare word made of the URL's secret part reads like a code: not quoted.
    secret = "w3bh00k_s3cr3t_0042"
    with SlackServer(token=TOKEN, channels=NAMES, webhook_secret=f"T0/B0/{secret}") as server:
        server.fail_next(
            Fault(status=404, body="no_service", content_type="text/html"),
            Fault(status=404, body=secret, content_type="text/html"),
        )
        sink = SlackWebhookSink(server.webhook_url, link_base=API)
        with pytest.raises(SinkError) as coded:
            await sink.send(note("firing", T0), None)
        with pytest.raises(SinkError) as quoted:
            await sink.send(note("firing", T0), None)

    assert str(coded.value) == "slack webhook: no_service (http 404)"
    assert str(quoted.value) == "slack webhook: error (http 404)"
    assert quoted.value.permanent is True


@pytest.mark.anyio
async def test_a_delivery_that_fails_so_logs_no_secret(
    slack: SlackServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Through the outbox and the delivery loop, as the daemon sends: the
    failure is logged, and the log holds the method and status only."""
    caplog.set_level(logging.DEBUG)
    slack.fail_next(Fault.quoting(502, "application/json; charset=utf-8"))
    with Store.open(tmp_path / "state.db", clock=lambda: T0) as store:
        outbox = Outbox(store)
        outbox.put([note("firing", T0)], ["slack"], T0)
        delivered = await Delivery(threaded(outbox), {"slack": web(slack)}, lambda: T0).run_once()

    assert delivered == 0
    assert "slack chat.postMessage channel '#incidents': error (http 502)" in caplog.text
    assert_clean(caplog.text, slack)
    out, err = capfd.readouterr()
    assert_clean(out + err, slack)


@pytest.mark.anyio
async def test_it_says_when_json_was_announced_but_not_sent(slack: SlackServer) -> None:
    slack.fail_next(Fault.quoting(200, "application/json; charset=utf-8"))
    with pytest.raises(SinkError) as caught:
        await web(slack).send(note("firing", T0), None)

    assert str(caught.value) == (
        "slack chat.postMessage channel '#incidents': answer is not json (http 200)"
    )
    assert caught.value.permanent is False
