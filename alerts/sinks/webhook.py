"""The generic webhook sink: each notification POSTed as JSON to one URL,
and the HTTP delivery (error mapping, secret-free messages) that the
Alertmanager sink shares.

The body, schema version 1 (a field is only ever added within a version;
a removal or a change of meaning bumps `version`)::

    {
      "version": 1,
      "id": "<notification id, also sent as the Idempotency-Key header>",
      "event": "firing" | "repeat" | "escalated" | "resolved" | "notice",
      "at": "2024-05-01T10:00:00.000Z",          # when the event happened
      "alert": {
        "key": "outage:farm-oms-1",                # stable for the alert's life
        "kind": "outage" | "drift" | "anomaly" | "maneuver" | "heartbeat" | "impaired",
        "severity": "critical" | "warning" | "info",
        "root_cause": ["farm-oms-1"],
        "summary": "farm-oms-1 down",
        "started_at": "2024-05-01T09:58:00.000Z",
        "critical": [                              # every critical node taken down
          {"node": "orders-workflow", "state": "down" | "degraded",
           "recovery_target_s": 600.0, "since": "2024-05-01T09:58:00.000Z"}
        ],
        "collateral": ["farm-oms-2", "orders-batch"],  # other nodes folded in
        "labels": {"team": "orders"}
      }
    }

A `notice` is an announcement, not an alert: a maneuver started, refused or
ended (key `maneuver:ID`), a silence added or ended (key `silence:ID`). It
is sent once, nothing follows it, and no `resolved` ever closes it; its
`alert` says what was done (`summary`) and, for a maneuver, which critical
nodes it impacts. (Added within version 1: a receiver that does not know
an `event` should show its summary and keep nothing open.)

Times are RFC 3339 in UTC with milliseconds. Headers: `Content-Type:
application/json` and `Idempotency-Key: <id>`, so a receiver can drop the
copy a crash mid-delivery may resend.

Errors: a 2xx is delivered; 408, 429 and 5xx, connection failures and
timeouts are transient (429 and 503 pass on a `Retry-After` given in
seconds); any other status (a 3xx: redirects are not followed; a 4xx) and
an unusable URL are permanent. Messages name the sink and the URL's origin
(`http://host:port`), never its credentials, path or query, and a response
body quoted in them has every credential the request carried cut out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from alerts.model import Alert, Notification, Receipt, SinkError

__all__ = ["SCHEMA_VERSION", "WebhookSink", "format_time", "post_json", "render_body"]

SCHEMA_VERSION = 1

# How much of an error response is read and quoted in the message.
_ERROR_BODY_READ_BYTES = 4096
_ERROR_BODY_QUOTED_CHARS = 200
_TRANSIENT_STATUS = frozenset({408, 429})
# Request headers whose values are credentials, by name or by a part of it.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_SECRET_HEADER_PARTS = ("token", "secret", "key", "auth", "password", "signature")
_NOT_SECRET_HEADERS = frozenset({"idempotency-key"})
# Shorter values are not cut out of messages: they would mangle them.
_MIN_SECRET_CHARS = 4
_REDACTED = "[redacted]"


class WebhookSink:
    """POSTs each notification as JSON (schema in the module docstring).

    The client belongs to the caller, who closes it: several sinks may share
    one connection pool.
    """

    def __init__(self, url: str, client: httpx.AsyncClient, *, name: str = "webhook") -> None:
        self._url = url
        self._client = client
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        await post_json(
            self._client,
            self._url,
            render_body(notification),
            sink=self._name,
            headers={"Idempotency-Key": notification.id},
        )
        return Receipt(self._name)

    async def aclose(self) -> None:
        """Nothing to release: the client is the caller's."""


def render_body(notification: Notification) -> dict[str, Any]:
    """The webhook body for `notification`, as documented above."""
    return {
        "version": SCHEMA_VERSION,
        "id": notification.id,
        "event": notification.event,
        "at": format_time(notification.at),
        "alert": _render_alert(notification.alert),
    }


def _render_alert(alert: Alert) -> dict[str, Any]:
    return {
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "root_cause": list(alert.root_cause),
        "summary": alert.summary,
        "started_at": format_time(alert.started_at),
        "critical": [
            {
                "node": impacted.node,
                "state": str(impacted.state),
                "recovery_target_s": impacted.recovery_target_s,
                "since": format_time(impacted.since),
            }
            for impacted in alert.critical
        ],
        "collateral": list(alert.collateral),
        "labels": dict(alert.labels),
    }


def format_time(seconds: float) -> str:
    """Seconds since the epoch as RFC 3339 in UTC: `2024-05-01T10:00:00.000Z`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: Any,
    *,
    sink: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """POST `body` as JSON to `url`; `SinkError` unless the answer is a 2xx.

    The error mapping and the messages are those of the module docstring;
    `sink` names the sink in them.
    """
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        target = httpx.URL()
    if target.scheme not in ("http", "https") or not target.host:
        raise SinkError(f"{sink}: invalid url: expected http(s)://host[:port]/path", permanent=True)
    where = f"{sink} {_origin(target)}"
    content = json.dumps(body, separators=(",", ":")).encode()
    request_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with client.stream(
            "POST", target, content=content, headers=request_headers
        ) as response:
            if response.is_success:
                return
            quoted = await _quote_body(response)
    except httpx.TimeoutException as exc:
        raise SinkError(f"{where}: {_describe_timeout(exc)}", permanent=False) from None
    except httpx.TransportError as exc:
        text = _scrub(str(exc) or type(exc).__name__, _secrets(target, exc.request))
        raise SinkError(f"{where}: {_describe_transport(exc)}: {text}", permanent=False) from None
    status = response.status_code
    message = f"{where}: http {status}"
    if quoted:
        message += f": {_shorten(_scrub(quoted, _secrets(target, response.request)))}"
    transient = status in _TRANSIENT_STATUS or status >= 500
    retry_after = _retry_after_s(response) if status in (429, 503) else None
    raise SinkError(message, permanent=not transient, retry_after_s=retry_after)


def _origin(url: httpx.URL) -> str:
    """`scheme://host[:port]`: the part of a URL that carries no secret."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}"


async def _quote_body(response: httpx.Response) -> str:
    """The start of an error response's body, on one line, whitespace collapsed."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _ERROR_BODY_READ_BYTES:
                break
    except httpx.TransportError:
        pass  # the status says enough
    text = b"".join(chunks)[:_ERROR_BODY_READ_BYTES].decode("utf-8", "replace")
    return " ".join(text.split())


def _shorten(text: str) -> str:
    """At most a line's worth: cut after the secrets were, not to cut one in two."""
    if len(text) > _ERROR_BODY_QUOTED_CHARS:
        return text[:_ERROR_BODY_QUOTED_CHARS] + "..."
    return text


def _secrets(url: httpx.URL, request: httpx.Request | None) -> list[str]:
    """Every credential a request to `url` carried, longest first."""
    found = {url.password or "", url.userinfo.decode("utf-8", "replace"), str(url)}
    found.add(url.query.decode("utf-8", "replace"))
    if url.path != "/":
        found.add(url.path)
    if request is not None:
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered in _NOT_SECRET_HEADERS:
                continue
            if lowered in _SECRET_HEADERS or any(part in lowered for part in _SECRET_HEADER_PARTS):
                found.add(value)
                # `Bearer <token>`, `Basic <base64>`: the credential alone too.
                found.update(value.split())
    return sorted((s for s in found if len(s) >= _MIN_SECRET_CHARS), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _describe_timeout(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.WriteTimeout):
        return "timed out sending"
    if isinstance(exc, httpx.PoolTimeout):
        return "timed out waiting for a connection from the pool"
    return "timed out waiting for the response"


def _describe_transport(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "bad response"
    return "connection failed"


_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def _retry_after_s(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds; an HTTP date is ignored (backoff applies)."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if _SECONDS.fullmatch(value) else None
