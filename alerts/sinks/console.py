"""The console sink, the default when no sink is configured: one line per
notification on a text stream (stderr unless told otherwise), readable by
default, or one JSON object per line beside the daemon's own JSON log
(`--log-format json`).

    2024-05-01T10:00:00Z FIRING critical outage:farm-oms-1 — farm-oms-1 down takes
        critical orders-workflow down (10m left); 3 other nodes
    2024-05-01T10:12:00Z RESOLVED critical outage:farm-oms-1 — farm-oms-1 down takes
        critical orders-workflow down (10m left); 3 other nodes; resolved after 12m
    2024-05-01T10:13:00Z NOTICE info maneuver:3 — alice started drain kv-a: verdict ok

(wrapped here). The time is the notification's, RFC 3339 in UTC to the
second; the rest is the template's `line` (`console/KIND.j2`), which says
the summary once: the summary names the critical nodes and counts the rest.

A JSON line has the keys of the daemon's JSON log (`time`, with
milliseconds, `level`, `logger` = `watchdog.alerts`, `message` = the
template's line) and the notification's: `event`, `id`, `key`, `kind`,
`severity`, `summary`, `root_cause`, `critical` (each critical node with
its `state` and `left_s`, seconds left before its recovery target, negative
once breached) and `collateral` (how many other nodes). `level` is the
alert's severity, `info` for a resolution.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from alerts.model import Notification, Receipt, SinkError
from alerts.templates import Templates, builtin

__all__ = ["LOGGER", "ConsoleFormat", "ConsoleSink", "render_json", "render_line", "render_text"]

ConsoleFormat = Literal["text", "json"]

# The `logger` of a JSON line: alerts read as one more logger of the daemon.
LOGGER = "watchdog.alerts"


class ConsoleSink:
    """Writes one line per notification to `stream` (default: stderr), as
    text or, with `fmt="json"`, as one JSON object (see the module).

    It only fails on a stream that is closed (or whose reader went away):
    nothing in an alert can make it fail.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        name: str = "console",
        templates: Templates | None = None,
        fmt: ConsoleFormat = "text",
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._name = name
        self._templates = templates
        self._render = render_json if fmt == "json" else render_text

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        line = self._render(notification, self._templates) + "\n"
        if self._stream.closed:
            raise SinkError(f"{self._name}: stream is closed", permanent=True)
        try:
            try:
                self._stream.write(line)
            except UnicodeEncodeError:
                # A stream that cannot show the dash or a node's name still
                # gets the line, escaped.
                self._stream.write(line.encode("ascii", "backslashreplace").decode("ascii"))
            self._stream.flush()
        except BrokenPipeError:
            raise SinkError(f"{self._name}: stream is closed", permanent=True) from None
        except OSError as exc:
            raise SinkError(
                f"{self._name}: cannot write: {exc.strerror or type(exc).__name__}", permanent=False
            ) from None
        return Receipt(self._name)

    async def aclose(self) -> None:
        """The stream is the caller's: it stays open."""


def render_line(notification: Notification, templates: Templates | None = None) -> str:
    """The words for `notification`, on one line without its newline (the
    `line` part of the template `console/KIND.j2`)."""
    parts = (templates or builtin()).render("console", notification, notification.at)
    return " ".join(parts["line"].split())


def render_text(notification: Notification, templates: Templates | None = None) -> str:
    """The text line for `notification`: its time, RFC 3339 in UTC to the
    second (`2024-05-01T10:00:00Z`), then `render_line`."""
    return f"{_time(notification.at, 'seconds')} {render_line(notification, templates)}"


def render_json(notification: Notification, templates: Templates | None = None) -> str:
    """The JSON line for `notification` (keys in the module docstring), one
    object without a newline."""
    alert, at = notification.alert, notification.at
    body: dict[str, Any] = {
        "time": _time(at, "milliseconds"),
        "level": "info" if notification.event == "resolved" else alert.severity,
        "logger": LOGGER,
        "message": render_line(notification, templates),
        "event": notification.event,
        "id": notification.id,
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "summary": alert.summary,
        "root_cause": list(alert.root_cause),
        "critical": [
            {"node": i.node, "state": str(i.state), "left_s": round(i.time_left_s(at))}
            for i in alert.critical
        ],
        "collateral": len(alert.collateral),
    }
    return json.dumps(body)


def _time(seconds: float, timespec: str) -> str:
    """`seconds` since the epoch as RFC 3339 in UTC: `2024-05-01T10:00:00Z`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
