"""A Slack-compatible Web API server on loopback for the real slack-sdk
client: it checks the bearer token, the method, the channel and the shape of
the blocks, keeps the messages it accepted, records every call, and answers
with the faults a test queues (429 with Retry-After, 500, an `ok: false`
code, a hang, a body that quotes the request's secrets back). It also serves
an incoming webhook."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

# How long a hanging answer waits at most; closing the server ends it sooner.
_HANG_BOUND_S = 10.0
_MAX_BLOCKS = 50
_BLOCK_TYPES = frozenset(
    {"header", "section", "context", "divider", "actions", "image", "rich_text", "input"}
)
_TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
_READS = ("conversations.list", "conversations.history", "conversations.replies")
_BOOLEAN_PARAMS = frozenset({"reply_broadcast", "unfurl_links", "unfurl_media", "mrkdwn"})


@dataclass(frozen=True)
class Fault:
    """An answer the server gives instead of the normal one."""

    status: int = 200
    body: str = ""
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False
    # Carry the request out, then hang instead of answering: the client
    # never learns that it succeeded (a crash or a timeout mid-delivery).
    accept: bool = False
    # `{authorization}` and `{path}` in `body` are replaced by the request's
    # Authorization header and path (a webhook's secret): a server that
    # quotes the request back in its error page.
    quote_request: bool = False

    @classmethod
    def error(cls, code: str, status: int = 200) -> Fault:
        """`{"ok": false, "error": code}`, as Slack answers a refusal."""
        return cls(status=status, body=json.dumps({"ok": False, "error": code}))

    @classmethod
    def ratelimited(cls, retry_after_s: int) -> Fault:
        return cls(
            status=429,
            body=json.dumps({"ok": False, "error": "ratelimited"}),
            headers={"Retry-After": str(retry_after_s)},
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status=status, body="internal server error", content_type="text/plain")

    @classmethod
    def quoting(cls, status: int, content_type: str = "text/html") -> Fault:
        """An answer that is not JSON (whatever `content_type` says) and
        quotes the request's Authorization header and path, as a proxy's or
        a broken server's error page does."""
        body = (
            "<html><body><h1>Bad gateway</h1><p>Authorization: {authorization}</p>"
            "<p>path: {path}</p></body></html>"
        )
        return cls(status=status, body=body, content_type=content_type, quote_request=True)

    @classmethod
    def hanging(cls) -> Fault:
        """No answer until the client gives up (or the server closes)."""
        return cls(hang=True)

    @classmethod
    def lost_answer(cls) -> Fault:
        """The request is carried out, but its answer never arrives."""
        return cls(hang=True, accept=True)


@dataclass(frozen=True)
class Call:
    """One request as received: the API method (or `webhook`), the bearer
    token it carried, its parameters, and the HTTP status answered."""

    method: str
    token: str | None
    params: Mapping[str, Any]
    status: int


@dataclass
class Message:
    """A message the server accepted: posted, maybe updated, maybe a reply."""

    channel: str
    ts: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    updates: int = 0
    metadata: Mapping[str, Any] | None = None


class SlackServer:
    """`with SlackServer(token=..., channels={"#ops": "C0OPS"}) as slack:`
    a server on 127.0.0.1 port 0; `slack.base_url` is for the Web API
    client, `slack.webhook_url` for the webhook client."""

    def __init__(
        self,
        *,
        token: str,
        channels: Mapping[str, str],
        webhook_channel: str = "C0HOOK",
        webhook_secret: str = "T000/B000/hook-secret",
    ) -> None:
        self.token = token
        self.channels = dict(channels)  # name -> id
        self.webhook_channel = webhook_channel
        self.webhook_secret = webhook_secret
        self.calls: list[Call] = []
        self.messages: list[Message] = []
        self.faults: deque[Fault] = deque()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._serial = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.slack = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        port: int = self._httpd.server_address[1]
        return port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/{self.webhook_secret}"

    def fail_next(self, *faults: Fault) -> None:
        """Answer the next requests with `faults`, one each, in order."""
        with self._lock:
            self.faults.extend(faults)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def __enter__(self) -> SlackServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the handler threads
        self._thread.join(_HANG_BOUND_S)

    # -- called from the handler threads ------------------------------------

    def handle(
        self, path: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, str, str, dict[str, str]]:
        """(status, content type, body, headers) for one request."""
        webhook = path.startswith("/services/")
        method = "webhook" if webhook else path.removeprefix("/api/")
        token = _bearer(headers.get("authorization"))
        params = _parse(headers.get("content-type", ""), raw)
        with self._lock:
            fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.accept and not webhook:
            self._api(method, token, params)
        if fault is not None:
            if fault.hang:
                self.release.wait(_HANG_BOUND_S)
            self._record(method, token, params, fault.status)
            body = fault.body
            if fault.quote_request:
                body = body.replace("{authorization}", headers.get("authorization", ""))
                body = body.replace("{path}", path)
            return fault.status, fault.content_type, body, dict(fault.headers)
        if webhook:
            status, body = self._webhook(path, params)
            self._record(method, token, params, status)
            return status, "text/html", body, {}
        answer = self._api(method, token, params)
        status = 404 if answer.get("error") == "unknown_method" else 200
        self._record(method, token, params, status)
        return status, "application/json; charset=utf-8", json.dumps(answer), {}

    def _record(
        self, method: str, token: str | None, params: Mapping[str, Any], status: int
    ) -> None:
        with self._lock:
            self.calls.append(Call(method, token, params, status))

    def _api(self, method: str, token: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
        if method not in ("chat.postMessage", "chat.update", *_READS):
            return _refuse("unknown_method")
        if token is None:
            return _refuse("not_authed")
        if token != self.token:
            return _refuse("invalid_auth")
        if method in _READS:
            return self._read(method, params)
        channel = self._channel_id(str(params.get("channel", "")), by_name=method != "chat.update")
        if channel is None:
            return _refuse("channel_not_found")
        text = params.get("text")
        blocks = params.get("blocks")
        if blocks is not None:
            problem = check_blocks(blocks)
            if problem:
                return {**_refuse("invalid_blocks"), "errors": [problem]}
        if not (isinstance(text, str) and text.strip()) and not blocks:
            return _refuse("no_text")
        with self._lock:
            if method == "chat.update":
                found = next(
                    (m for m in self.messages if m.channel == channel and m.ts == params.get("ts")),
                    None,
                )
                if found is None:
                    return _refuse("message_not_found")
                found.text, found.blocks = str(text or ""), blocks
                found.updates += 1
                return {"ok": True, "channel": channel, "ts": found.ts, "text": found.text}
            thread_ts = params.get("thread_ts")
            if thread_ts is not None and not any(
                m.channel == channel and m.ts == thread_ts for m in self.messages
            ):
                return _refuse("thread_not_found")
            self._serial += 1
            ts = self._ts()
            metadata = params.get("metadata")
            if isinstance(metadata, str):  # form-encoded
                metadata = json.loads(metadata)
            self.messages.append(
                Message(
                    channel,
                    ts,
                    str(text or ""),
                    blocks,
                    thread_ts=thread_ts,
                    reply_broadcast=params.get("reply_broadcast") is True,
                    metadata=metadata,
                )
            )
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}

    def _read(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """conversations.list, .history and .replies, as Slack answers them
        (one page; history newest first; metadata only when asked for)."""
        if method == "conversations.list":
            listed = [{"id": i, "name": n.lstrip("#")} for n, i in self.channels.items()]
            return {"ok": True, "channels": listed, "response_metadata": {"next_cursor": ""}}
        # Like Slack, the reads take only a channel id.
        channel = self._channel_id(str(params.get("channel", "")), by_name=False)
        if channel is None:
            return _refuse("channel_not_found")
        oldest = float(params.get("oldest") or 0)
        with_metadata = str(params.get("include_all_metadata")).lower() in ("1", "true")
        with self._lock:
            if method == "conversations.history":
                found = [m for m in self.messages if m.thread_ts is None or m.reply_broadcast]
            else:
                parent = params.get("ts")
                found = [m for m in self.messages if parent in (m.ts, m.thread_ts)]
            found = [m for m in found if m.channel == channel and float(m.ts) >= oldest]
            if method == "conversations.history":
                found.reverse()
            messages = [
                {
                    "type": "message",
                    "ts": m.ts,
                    "text": m.text,
                    **({"thread_ts": m.thread_ts} if m.thread_ts else {}),
                    **({"metadata": m.metadata} if with_metadata and m.metadata else {}),
                }
                for m in found
            ]
        return {"ok": True, "messages": messages, "has_more": False}

    def _ts(self) -> str:
        """A message's ts as Slack makes it: its time (seconds, here made
        unique by the serial in the microseconds). Call under the lock."""
        return f"{int(time.time())}.{self._serial:06d}"

    def _channel_id(self, channel: str, *, by_name: bool) -> str | None:
        """The id of `channel`; chat.update, like Slack, takes only an id."""
        if channel in self.channels.values():
            return channel
        return self.channels.get(channel) if by_name else None

    def _webhook(self, path: str, params: Mapping[str, Any]) -> tuple[int, str]:
        if path.removeprefix("/services/") != self.webhook_secret:
            return 404, "no_service"
        text, blocks = params.get("text"), params.get("blocks")
        if blocks is not None and check_blocks(blocks):
            return 400, "invalid_blocks"
        if not (isinstance(text, str) and text.strip()) and not blocks:
            return 400, "no_text"
        with self._lock:
            self._serial += 1
            ts = self._ts()
            self.messages.append(Message(self.webhook_channel, ts, str(text or ""), blocks))
        return 200, "ok"


def check_blocks(blocks: object) -> str | None:
    """What is wrong with `blocks` as Block Kit, or None: a list of at most
    50 blocks of known types whose text objects are well formed."""
    if not isinstance(blocks, list) or not blocks:
        return "blocks must be a non-empty list"
    if len(blocks) > _MAX_BLOCKS:
        return f"{len(blocks)} blocks, more than {_MAX_BLOCKS}"
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            return f"{where}: unknown block type"
        kind = block["type"]
        if kind == "header":
            problem = _check_text(block.get("text"), 150, plain=True)
        elif kind == "section":
            problem = None
            if "text" not in block and "fields" not in block:
                problem = "a section needs text or fields"
            if "text" in block:
                problem = problem or _check_text(block["text"], 3000)
            fields = block.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                problem = problem or "at most 10 fields"
            for item in fields if isinstance(fields, list) else []:
                problem = problem or _check_text(item, 2000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problem = "a context needs 1 to 10 elements"
            else:
                problem = next((p for p in (_check_text(e, 3000) for e in elements) if p), None)
        else:
            problem = None
        if problem:
            return f"{where}: {problem}"
    return None


def _check_text(value: object, limit: int, *, plain: bool = False) -> str | None:
    if not isinstance(value, dict) or value.get("type") not in _TEXT_TYPES:
        return "not a text object"
    if plain and value["type"] != "plain_text":
        return "must be plain_text"
    text = value.get("text")
    if not isinstance(text, str) or not text:
        return "empty text"
    if len(text) > limit:
        return f"text longer than {limit}"
    return None


def _refuse(code: str) -> dict[str, Any]:
    return {"ok": False, "error": code}


def _bearer(header: str | None) -> str | None:
    if header and header.startswith("Bearer "):
        return header.removeprefix("Bearer ")
    return None


def _parse(content_type: str, raw: bytes) -> dict[str, Any]:
    """The parameters of a request, sent as JSON or as a form (where
    `blocks` is a JSON string and booleans are "1"/"0" or "true")."""
    if content_type.startswith("application/json"):
        parsed = json.loads(raw or b"{}")
        return parsed if isinstance(parsed, dict) else {}
    params: dict[str, Any] = dict(parse_qsl(raw.decode()))
    if isinstance(params.get("blocks"), str):
        params["blocks"] = json.loads(params["blocks"])
    for key in _BOOLEAN_PARAMS & params.keys():
        params[key] = params[key] in ("1", "true")
    return params


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # The reads (conversations.*) come as GET with a query string.
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers["content-type"] = "application/x-www-form-urlencoded"
        self._answer(path, headers, query.encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        self._answer(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)

    def _answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> None:
        slack: SlackServer = self.server.slack  # type: ignore[attr-defined]
        status, content_type, body, extra = slack.handle(path, headers, raw)
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a hang): part of what is tested

    def log_message(self, format: str, *args: Any) -> None:
        return None  # calls are recorded, not printed
