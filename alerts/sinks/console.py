"""The console sink, the default when no sink is configured: one readable
line per notification on a text stream (stderr unless told otherwise).

    FIRING critical outage:farm-oms-1 — farm-oms-1 down; takes down critical
        orders-workflow (10m left), billing degraded (overdue by 2m); 3 other nodes
    RESOLVED critical outage:farm-oms-1 — farm-oms-1 down; resolved after 12m

(the first line wrapped here). A critical node's state is shown unless it is down.
"""

from __future__ import annotations

import sys
from typing import TextIO

from alerts.model import Impacted, Notification, Receipt, SinkError
from topology import State, format_duration

__all__ = ["ConsoleSink", "render_line"]


class ConsoleSink:
    """Writes one line per notification to `stream` (default: stderr).

    It only fails on a stream that is closed (or whose reader went away):
    nothing in an alert can make it fail.
    """

    def __init__(self, stream: TextIO | None = None, *, name: str = "console") -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        line = render_line(notification) + "\n"
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


def render_line(notification: Notification) -> str:
    """The line for `notification`, without its newline."""
    alert = notification.alert
    head = f"{notification.event.upper()} {alert.severity} {alert.key} — {alert.summary}"
    if notification.event == "resolved":
        return f"{head}; resolved after {_whole(notification.at - alert.started_at)}"
    parts = [head]
    if alert.critical:
        nodes = ", ".join(_describe(impacted, notification.at) for impacted in alert.critical)
        parts.append(f"takes down critical {nodes}")
    if alert.collateral:
        count = len(alert.collateral)
        parts.append(f"{count} other node{'s' if count != 1 else ''}")
    return "; ".join(parts)


def _describe(impacted: Impacted, now: float) -> str:
    left = impacted.time_left_s(now)
    state = "" if impacted.state is State.DOWN else f" {impacted.state}"
    if left >= 0:
        return f"{impacted.node}{state} ({_whole(left)} left)"
    return f"{impacted.node}{state} (overdue by {_whole(-left)})"


def _whole(seconds: float) -> str:
    """A duration to the second: people read `9m left`, not `8m59.997s left`."""
    return format_duration(float(round(seconds)))
