"""The Slack sink: Block Kit messages through slack-sdk's Web API client (a
bot token), or posts to an incoming webhook. The only module that imports
slack_sdk; the token and the webhook URL never reach a log or an error."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from alerts.templates import Templates, builtin, escape_mrkdwn, whole
from topology import State
from topology.document import redact_url

__all__ = [
    "TRANSIENT_ERRORS",
    "SlackSink",
    "SlackWebhookSink",
    "blocks",
    "reply_text",
    "text",
]

log = logging.getLogger(__name__)

Block = dict[str, Any]

# Slack's limits: https://docs.slack.dev/reference/block-kit/blocks
MAX_BLOCKS: Final = 50
_HEADER_MAX = 150
_SECTION_MAX = 3000
_CONTEXT_MAX = 2000
# Room kept at the end of every node section for the "and N more" line.
_MORE_ROOM = 40
# Every message we post names its notification in its metadata.
_METADATA_EVENT = "watchdog_notification"
# How far before a notification was made its message is looked for (clocks
# differ, Slack's ts is Slack's time).
_CLOCK_SKEW_S = 300.0
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
# What an `error` code of Slack's looks like (`invalid_auth`, `no_text`):
# anything else a server answers is not quoted, it may echo the request.
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_LIST_PAGES = 10
# Root causes linked to their incident history.
_LINKED_CAUSES = 5

# `ok: false` codes are permanent (given up on) unless listed here: Slack's
# refusals (invalid_auth, channel_not_found, is_archived, invalid_blocks,
# msg_too_long...) fail the same way on every retry, so the outbox gives up
# instead of retrying forever.
# Codes worth retrying with backoff.
TRANSIENT_ERRORS: Final = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
        "rollup_error",
    }
)


# -- Block Kit (pure) ---------------------------------------------------------


def blocks(
    notification: Notification, now: float, link_base: str, templates: Templates | None = None
) -> list[Block]:
    """The Block Kit message of `notification` at `now`: the firing version
    (root cause, critical nodes with their recovery target and time left,
    the collateral count, links to the daemon's API) or, for `resolved`,
    the resolved version that replaces it. Never more than 50 blocks."""
    title = _parts(notification, now, templates)["title"]
    return _blocks(notification, now, link_base, title)


def _blocks(notification: Notification, now: float, link_base: str, title: str) -> list[Block]:
    alert = notification.alert
    resolved = notification.event == "resolved"
    impact = _impact(alert.critical)
    if resolved:
        second = ("Lasted", _seconds(now - alert.started_at))
        heading = f"*Critical nodes that were {impact} ({len(alert.critical)})*"
        lines = [_resolved_line(impacted, now) for impacted in alert.critical]
    else:
        second = ("Severity", alert.severity)
        heading = f"*Critical nodes {impact} ({len(alert.critical)})*"
        lines = [_firing_line(impacted, now) for impacted in alert.critical]
    out: list[Block] = [
        {"type": "header", "text": _plain(_cut(title, _HEADER_MAX))},
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*Root cause*\n{_codes(alert.root_cause)}"),
                _mrkdwn(f"*{second[0]}*\n{escape_mrkdwn(second[1])}"),
            ],
        },
    ]
    if lines:
        budget = MAX_BLOCKS - len(out) - 2  # the collateral and links blocks follow
        out.extend({"type": "section", "text": _mrkdwn(t)} for t in _chunks(heading, lines, budget))
    else:
        out.append({"type": "section", "text": _mrkdwn("*No critical node down*")})
    out.append({"type": "context", "elements": [_mrkdwn(_collateral(alert, resolved))]})
    out.append({"type": "context", "elements": [_mrkdwn(_links(alert, link_base))]})
    return out


def _impact(critical: Sequence[Impacted]) -> str:
    """What happened to `critical`, in a word: `down`, `degraded`, or
    `down or degraded` (a node only degraded is never said to be down)."""
    states = {impacted.state for impacted in critical}
    if states <= {State.DOWN}:
        return "down"
    return "degraded" if states <= {State.DEGRADED} else "down or degraded"


def text(notification: Notification, now: float, templates: Templates | None = None) -> str:
    """The notification text of the top-level message (what a phone or a
    screen reader shows instead of the blocks): the template's `text`."""
    return _parts(notification, now, templates)["text"]


def reply_text(notification: Notification, now: float, templates: Templates | None = None) -> str:
    """The short reply posted in the thread of the original message: the
    template's `reply`."""
    return _parts(notification, now, templates)["reply"]


def _parts(
    notification: Notification, now: float, templates: Templates | None
) -> Mapping[str, str]:
    """What the Slack template says of `notification`: `title`, `text`, `reply`."""
    return (templates or builtin()).render("slack", notification, now)


def _seconds(seconds: float) -> str:
    """A duration for a Slack message, to the second (never negative)."""
    return whole(max(0.0, seconds))


def _firing_line(impacted: Impacted, now: float) -> str:
    left = impacted.time_left_s(now)
    clock = f"{_seconds(left)} left" if left > 0 else f"*breached {_seconds(-left)} ago*"
    return (
        f"• `{escape_mrkdwn(impacted.node)}` {impacted.state}, recovery target "
        f"{_seconds(impacted.recovery_target_s)}, {clock}"
    )


def _resolved_line(impacted: Impacted, now: float) -> str:
    lasted = now - impacted.since
    over = lasted - impacted.recovery_target_s
    target = _seconds(impacted.recovery_target_s)
    verdict = (
        f"target {target} *breached by {_seconds(over)}*"
        if over > 0
        else f"within its target of {target}"
    )
    node = escape_mrkdwn(impacted.node)
    return f"• `{node}` {impacted.state} for {_seconds(lasted)}, {verdict}"


def _collateral(alert: Alert, resolved: bool) -> str:
    count = len(alert.collateral)
    if not count:
        return "*Collateral:* none"
    nodes = "node" if count == 1 else "nodes"
    verb = "failed" if resolved else "fail"
    return f"*Collateral:* {count} other {nodes} {verb} because of it"


def _links(alert: Alert, link_base: str) -> str:
    base = link_base.rstrip("/")
    parts = [f"<{base}/api/v1/status|Status>"]
    parts.extend(
        f"<{base}/api/v1/incidents?node={quote(node, safe='')}|Incidents of {escape_mrkdwn(node)}>"
        for node in alert.root_cause[:_LINKED_CAUSES]
    )
    parts.append(f"alert `{escape_mrkdwn(alert.key)}`")
    return _cut(" · ".join(parts), _CONTEXT_MAX)


def _chunks(heading: str, lines: Sequence[str], budget: int) -> list[str]:
    """`heading` and `lines` in at most `budget` section texts, each within
    Slack's limit; what does not fit ends as "…and N more"."""
    room = _SECTION_MAX - _MORE_ROOM
    chunks: list[str] = []
    current = heading
    for index, full in enumerate(lines):
        line = _cut(full, room)
        if len(current) + 1 + len(line) <= room:
            current += "\n" + line
        elif len(chunks) + 1 < budget:
            chunks.append(current)
            current = line
        else:
            current += f"\n…and {len(lines) - index} more"
            break
    chunks.append(current)
    return chunks


def _codes(names: Sequence[str]) -> str:
    return ", ".join(f"`{escape_mrkdwn(n)}`" for n in names) or "unknown"


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _plain(value: str) -> Block:
    return {"type": "plain_text", "text": value, "emoji": True}


def _mrkdwn(value: str) -> Block:
    return {"type": "mrkdwn", "text": value}


# -- errors ---------------------------------------------------------------------


class _RateLimitHandler(AsyncRateLimitErrorRetryHandler):
    """slack-sdk's 429 handler (it sleeps for Retry-After), except that a
    wait longer than `max_wait_s` is left to the outbox's backoff rather
    than held in the sink."""

    def __init__(self, max_retry_count: int, max_wait_s: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or not await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        ):
            return False
        wait = _retry_after_s(response.headers)
        # The SDK parses Retry-After with int(): anything else is not retried here.
        return wait is not None and wait.is_integer() and wait <= self.max_wait_s


def _retry_after_s(headers: Mapping[str, Any] | None) -> float | None:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            first = value[0] if isinstance(value, list) and value else value
            try:
                seconds = float(str(first))
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def _api_error(
    where: str,
    status: int,
    data: object,
    headers: Mapping[str, Any] | None,
    secrets: Sequence[str] = (),
) -> SinkError:
    """The SinkError for an answer that was not `ok`; `where` names the
    method (and channel), never a secret. Only the status and Slack's
    `error` code are quoted, and the code only when it looks like one and
    holds none of `secrets`: a server can answer anything, the request
    quoted back included."""
    code = _error_code(data.get("error") if isinstance(data, Mapping) else None, secrets)
    if status == 200 and not isinstance(data, Mapping):
        # A success status with a body that is not JSON (a proxy's page):
        # worth another try, not a refusal.
        return SinkError(f"{where}: answer is not json (http {status})", permanent=False)
    if status == 429 or code in {"ratelimited", "rate_limited"}:
        retry_after = _retry_after_s(headers)
        after = f", retry after {_seconds(retry_after)}" if retry_after is not None else ""
        return SinkError(
            f"{where}: {code or 'ratelimited'} (http {status}){after}",
            permanent=False,
            retry_after_s=retry_after,
        )
    transient = status >= 500 or status == 408 or code in TRANSIENT_ERRORS
    return SinkError(f"{where}: {code or 'error'} (http {status})", permanent=not transient)


def _error_code(code: object, secrets: Sequence[str]) -> str | None:
    """`code` when it reads as one of Slack's error codes and holds none of
    `secrets`; else None."""
    if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        return None
    return None if any(secret and secret in code for secret in secrets) else code


def _failure(where: str, err: Exception, timeout_s: float, secrets: Sequence[str]) -> SinkError:
    """The SinkError for any failure of one call to Slack. Its text is
    built from what is known to be safe (the status, Slack's error code,
    a class name), never from the exception's own message: slack-sdk's
    quotes the server's body, aiohttp's the URL."""
    if isinstance(err, SlackApiError):
        # An answer that was not `ok`; its `response` is slack-sdk's
        # (`status_code`, `data`) or, for a body that is not JSON, aiohttp's
        # (`status`, no data).
        response = err.response
        status = getattr(response, "status_code", None)
        if not isinstance(status, int):
            status = getattr(response, "status", None)
        if isinstance(status, int):
            data = getattr(response, "data", None)
            headers = getattr(response, "headers", None)
            return _api_error(where, status, data, headers, secrets)
        return SinkError(f"{where}: unreadable answer", permanent=False)
    if isinstance(err, SlackClientError):
        return SinkError(f"{where}: {type(err).__name__}", permanent=True)
    if isinstance(err, TimeoutError):
        return SinkError(f"{where}: timeout after {timeout_s:g}s", permanent=False)
    # aiohttp comes with slack-sdk; its errors are matched by module rather
    # than imported, so that slack_sdk stays the one dependency here.
    if isinstance(err, OSError) or type(err).__module__.partition(".")[0] == "aiohttp":
        # Only the class name: aiohttp's messages can carry the URL.
        return SinkError(f"{where}: connection error ({type(err).__name__})", permanent=False)
    # Anything else is slack-sdk tripping over an answer it did not expect
    # (a body that is not JSON under a 200 makes it raise AttributeError):
    # retried, and named by its class only.
    return SinkError(f"{where}: unreadable answer ({type(err).__name__})", permanent=False)


# -- the sinks --------------------------------------------------------------------


class SlackSink:
    """Notifications as Slack messages through the Web API and a bot token.

    A firing alert is posted to the channel its route names (`channel_for`)
    or else to the channel of its severity (`channels` maps a severity, or
    `default`, to a channel); reminders and escalations
    reply in its thread; a resolution rewrites the original message and
    replies in its thread. The receipt keeps the channel id and the `ts` of
    the original message, so each later notification finds it. A notice (a
    maneuver or silence announced) is a plain text message of its own,
    never threaded, never updated."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str,
        channels: Mapping[str, str],
        link_base: str,
        name: str = "slack",
        timeout_s: float = 30.0,
        rate_limit_retries: int = 2,
        max_retry_after_s: float = 10.0,
        channel_for: Callable[[Alert], str | None] | None = None,
        templates: Templates | None = None,
    ) -> None:
        if "default" not in channels:
            raise ValueError("alerts.slack.channels: a 'default' channel is required")
        self._name = name
        self._channels = dict(channels)
        self._channel_for = channel_for
        self._templates = templates
        self._channel_ids: dict[str, str] = {}
        self._link_base = link_base
        self._timeout_s = timeout_s
        self._secrets = (token,)
        # The client logs every answer's body at debug level whenever its
        # own logger's level allows it, and a server's body can quote the
        # request's Authorization header: a logger of its own, set to info,
        # keeps it out.
        quiet = logging.getLogger(f"{__name__}.web")
        quiet.setLevel(logging.INFO)
        self._client = AsyncWebClient(
            token=token,
            base_url=base_url,
            timeout=max(1, math.ceil(timeout_s)),
            logger=quiet,
            retry_handlers=[_RateLimitHandler(rate_limit_retries, max_retry_after_s)],
        )

    def __repr__(self) -> str:
        base_url = redact_url(self._client.base_url)
        return f"SlackSink(name={self._name!r}, base_url={base_url!r})"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        alert, event, now = notification.alert, notification.event, notification.at
        root = _root(previous)
        parts = _parts(notification, now, self._templates)
        if event == "notice":
            # An announcement: a plain message of its own, never updated
            # and never threaded under an alert.
            channel = self._channel(alert)
            answer = await self._call(
                "chat.postMessage",
                channel,
                self._client.chat_postMessage(
                    channel=channel,
                    text=parts["text"],
                    unfurl_links=False,
                    metadata=_metadata(notification),
                ),
            )
            log.debug("slack posted event=%s alert=%s channel=%s", event, alert.key, channel)
            return self._receipt(str(answer.get("channel", channel)), str(answer["ts"]))
        if event == "firing" or root is None:
            # Also a reminder or a resolution whose first message was never
            # delivered: it gets a message of its own.
            channel = self._channel(alert)
            answer = await self._call(
                "chat.postMessage",
                channel,
                self._client.chat_postMessage(
                    channel=channel,
                    text=parts["text"],
                    blocks=_blocks(notification, now, self._link_base, parts["title"]),
                    unfurl_links=False,
                    metadata=_metadata(notification),
                ),
            )
            receipt = self._receipt(str(answer.get("channel", channel)), str(answer["ts"]))
            log.debug("slack posted event=%s alert=%s channel=%s", event, alert.key, channel)
            return receipt
        channel, ts = root
        if event == "resolved":
            await self._call(
                "chat.update",
                channel,
                self._client.chat_update(
                    channel=channel,
                    ts=ts,
                    text=parts["text"],
                    blocks=_blocks(notification, now, self._link_base, parts["title"]),
                ),
            )
        answer = await self._call(
            "chat.postMessage",
            channel,
            self._client.chat_postMessage(
                channel=channel,
                thread_ts=ts,
                text=parts["reply"],
                reply_broadcast=True if event == "escalated" else None,
                metadata=_metadata(notification),
            ),
        )
        log.debug("slack replied event=%s alert=%s channel=%s", event, alert.key, channel)
        return self._receipt(channel, ts, reply_ts=str(answer["ts"]))

    async def find(self, notification: Notification, previous: Receipt | None) -> Receipt | None:
        """The receipt of `notification` if Slack already holds its message
        (an attempt whose answer was lost: a crash, a timeout), found by the
        notification id in the message metadata; None when it does not."""
        root = _root(previous)
        oldest = f"{notification.at - _CLOCK_SKEW_S:.6f}"
        if notification.event in ("firing", "notice") or root is None:
            channel = await self._channel_id(self._channel(notification.alert))
            if channel is None:
                return None
            answer = await self._call(
                "conversations.history",
                channel,
                self._client.conversations_history(
                    channel=channel, oldest=oldest, include_all_metadata=True, limit=200
                ),
                need_ts=False,
            )
            ts = _posted(answer, notification.id)
            return None if ts is None else self._receipt(channel, ts)
        channel, ts = root
        answer = await self._call(
            "conversations.replies",
            channel,
            self._client.conversations_replies(
                channel=channel, ts=ts, oldest=oldest, include_all_metadata=True, limit=200
            ),
            need_ts=False,
        )
        reply = _posted(answer, notification.id)
        return None if reply is None else self._receipt(channel, ts, reply_ts=reply)

    async def _channel_id(self, channel: str) -> str | None:
        """The id of `channel` (Slack's reads take only ids): as it is when
        it looks like one, else looked up once by name (this needs the
        channels:read scope; without it, None)."""
        if _CHANNEL_ID.fullmatch(channel):
            return channel
        if channel in self._channel_ids:
            return self._channel_ids[channel]
        cursor = None
        for _ in range(_LIST_PAGES):
            answer = await self._call(
                "conversations.list",
                channel,
                self._client.conversations_list(
                    types="public_channel,private_channel",
                    exclude_archived=True,
                    limit=1000,
                    cursor=cursor,
                ),
                need_ts=False,
            )
            for item in answer.get("channels") or ():
                if (
                    isinstance(item, Mapping)
                    and item.get("name") == channel.lstrip("#")
                    and isinstance(item.get("id"), str)
                ):
                    self._channel_ids[channel] = item["id"]
                    return self._channel_ids[channel]
            metadata = answer.get("response_metadata")
            cursor = metadata.get("next_cursor") if isinstance(metadata, Mapping) else None
            if not cursor:
                break
        return None

    async def aclose(self) -> None:
        # slack-sdk opens and closes a session per call when given none.
        return None

    def _channel(self, alert: Alert) -> str:
        """The channel a route names for `alert`, else that of its severity,
        else the default one. Later messages follow the first one's channel."""
        routed = self._channel_for(alert) if self._channel_for is not None else None
        return routed or self._channels.get(alert.severity, self._channels["default"])

    def _receipt(self, channel: str, ts: str, **extra: str) -> Receipt:
        return Receipt(self._name, MappingProxyType({"channel": channel, "ts": ts, **extra}))

    async def _call(
        self, method: str, channel: str, call: Awaitable[Any], *, need_ts: bool = True
    ) -> Mapping[str, Any]:
        where = f"slack {method} channel {channel!r}"
        failure: SinkError | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await call
        except Exception as err:
            failure = _failure(where, err, self._timeout_s, self._secrets)
        if failure is not None:
            # Raised outside the handler, so that the SinkError carries no
            # context: the original's text (a body quoting the token) would
            # be printed with any traceback of it.
            raise failure from None
        data = getattr(answer, "data", None)
        if not isinstance(data, Mapping):
            raise SinkError(f"{where}: answer is not an object", permanent=False)
        if need_ts and not isinstance(data.get("ts"), str):
            raise SinkError(f"{where}: answer without a ts", permanent=False)
        return data


def _metadata(notification: Notification) -> dict[str, Any]:
    """Message metadata naming the notification, so that `find` can tell
    whether a message was already posted."""
    return {"event_type": _METADATA_EVENT, "event_payload": {"id": notification.id}}


def _posted(answer: Mapping[str, Any], ident: str) -> str | None:
    """The ts of the message in `answer` whose metadata names `ident`."""
    for message in answer.get("messages") or ():
        metadata = message.get("metadata") if isinstance(message, Mapping) else None
        if not isinstance(metadata, Mapping) or metadata.get("event_type") != _METADATA_EVENT:
            continue
        payload = metadata.get("event_payload")
        if isinstance(payload, Mapping) and payload.get("id") == ident:
            return str(message.get("ts"))
    return None


def _root(previous: Receipt | None) -> tuple[str, str] | None:
    if previous is None:
        return None
    channel, ts = previous.data.get("channel"), previous.data.get("ts")
    return (channel, ts) if channel and ts else None


class SlackWebhookSink:
    """Notifications posted to a Slack incoming webhook. A webhook can only
    post, to its own channel: reminders, escalations and notices are short
    messages, a resolution is a new message with the resolved blocks. The
    URL is a secret: it appears in no log and no error."""

    def __init__(
        self,
        url: str,
        *,
        link_base: str,
        name: str = "slack-webhook",
        timeout_s: float = 30.0,
        rate_limit_retries: int = 2,
        max_retry_after_s: float = 10.0,
        templates: Templates | None = None,
    ) -> None:
        self._name = name
        self._templates = templates
        self._link_base = link_base
        self._timeout_s = timeout_s
        # The URL's path is the secret (`/services/T…/B…/secret`): every
        # part of it is kept from error texts.
        self._secrets = (url, *(part for part in url.split("/") if len(part) >= 4))
        # The client logs its URL at debug level whenever its own logger's
        # level allows it: a logger of its own, set to info, keeps it out.
        quiet = logging.getLogger(f"{__name__}.webhook")
        quiet.setLevel(logging.INFO)
        self._client = AsyncWebhookClient(
            url=url,
            timeout=max(1, math.ceil(timeout_s)),
            logger=quiet,
            retry_handlers=[_RateLimitHandler(rate_limit_retries, max_retry_after_s)],
        )

    def __repr__(self) -> str:
        return f"SlackWebhookSink(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        now = notification.at
        parts = _parts(notification, now, self._templates)
        if notification.event == "notice":
            body: dict[str, Any] = {"text": parts["text"], "unfurl_links": False}
        elif notification.event in ("firing", "resolved") or previous is None:
            body = {
                "text": parts["text"],
                "blocks": _blocks(notification, now, self._link_base, parts["title"]),
                "unfurl_links": False,
            }
        else:
            body = {"text": parts["reply"]}
        where = "slack webhook"
        failure: SinkError | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.send_dict(body)
        except Exception as err:
            failure = _failure(where, err, self._timeout_s, self._secrets)
        if failure is not None:
            raise failure from None  # outside the handler: see SlackSink._call
        if response.status_code != 200:
            # Webhooks answer errors as a bare code in a text body; whatever
            # else the body says is not quoted (`_api_error` checks the code).
            code = response.body.strip() if isinstance(response.body, str) else ""
            data = {"error": code}
            raise _api_error(where, response.status_code, data, response.headers, self._secrets)
        log.debug(
            "slack webhook posted event=%s alert=%s", notification.event, notification.alert.key
        )
        return Receipt(self._name)

    async def aclose(self) -> None:
        return None
