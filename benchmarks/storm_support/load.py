"""The load and the ears of benchmarks/storm.py, each in a thread of the
harness: pollers that GET one URL of the daemon on a period (Prometheus-like
scrapes, a health check) recording every latency, and the webhook receiver
that records every alert message POSTed to it.

Threads, not one event loop: a scrape of tens of megabytes being read must
not delay the health poll that measures the daemon's responsiveness.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

__all__ = ["Message", "Poller", "Receiver", "Sample", "percentile", "within"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it started (time.monotonic), how long it took (a
    timeout counts as the whole timeout), whether it answered 200, and the
    size of the body."""

    at: float
    seconds: float
    ok: bool
    size: int
    error: str = ""


class Poller(threading.Thread):
    """GETs `url` every `period_s` (never two at once: a slow answer delays
    the next request, as Prometheus does) until `stop` is set."""

    def __init__(
        self,
        name: str,
        url: str,
        period_s: float,
        timeout_s: float,
        stop: threading.Event,
        *,
        keep: bool = False,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
        self.period_s = period_s
        self.timeout_s = timeout_s
        self.stop = stop
        self.keep = keep
        self.samples: list[Sample] = []
        # With `keep`: when the last 200 answer started, and its body.
        self.last: tuple[float, bytes] | None = None

    def run(self) -> None:
        with httpx.Client(trust_env=False, timeout=self.timeout_s) as client:
            due = time.monotonic()
            while not self.stop.is_set():
                self.samples.append(self._once(client))
                due += self.period_s
                now = time.monotonic()
                due = max(due, now)  # late: go on from now rather than burst
                self.stop.wait(due - now)

    def _once(self, client: httpx.Client) -> Sample:
        start = time.monotonic()
        try:
            response = client.get(self.url)
        except httpx.TimeoutException:
            return Sample(start, self.timeout_s, False, 0, "timeout")
        except httpx.HTTPError as exc:
            return Sample(start, time.monotonic() - start, False, 0, type(exc).__name__)
        seconds = time.monotonic() - start
        ok = response.status_code == 200
        error = "" if ok else f"status {response.status_code}"
        if ok and self.keep:
            self.last = (start, response.content)
        return Sample(start, seconds, ok, len(response.content), error)


def within(samples: Sequence[Sample], start: float, end: float) -> list[Sample]:
    """The samples that started in [start, end)."""
    return [s for s in samples if start <= s.at < end]


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` 0.99 for p99); nan if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


@dataclass(frozen=True, slots=True)
class Message:
    """One webhook POST: when it arrived (time.monotonic) and its JSON."""

    at: float
    body: dict[str, Any]

    @property
    def alert(self) -> dict[str, Any]:
        alert: dict[str, Any] = self.body.get("alert") or {}
        return alert

    def line(self, width: int = 140) -> str:
        """The message on one line: event, key, summary, counts."""
        alert = self.alert
        text = (
            f"{self.body.get('event', '?')} {alert.get('key', '?')}: "
            f"{alert.get('summary', '')} ({len(alert.get('critical') or [])} critical, "
            f"{len(alert.get('collateral') or [])} collateral)"
        )
        return text if len(text) <= width else text[: width - 3] + "..."


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                raw += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        arrived = time.monotonic()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsed": raw[:200].decode("utf-8", "replace")}
        with self.server.lock:
            self.server.messages.append(Message(arrived, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the harness prints what it received."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 could refuse a burst of deliveries

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.messages: list[Message] = []


class Receiver:
    """The webhook sink's far end on 127.0.0.1: answers 200 to every POST
    and keeps it. A context manager: serving inside, stopped on exit."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="receiver", daemon=True
        )

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/hook"

    def messages(self) -> list[Message]:
        """Every message received so far, in order of arrival."""
        with self._server.lock:
            return list(self._server.messages)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
