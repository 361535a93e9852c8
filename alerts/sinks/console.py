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

from alerts.model import Notification, Receipt, SinkError
from alerts.templates import Templates, builtin

__all__ = ["ConsoleSink", "render_line"]


class ConsoleSink:
    """Writes one line per notification to `stream` (default: stderr).

    It only fails on a stream that is closed (or whose reader went away):
    nothing in an alert can make it fail.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        name: str = "console",
        templates: Templates | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._name = name
        self._templates = templates

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        line = render_line(notification, self._templates) + "\n"
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
    """The line for `notification`, without its newline (the `line` part of
    the template `console/KIND.j2`)."""
    parts = (templates or builtin()).render("console", notification, notification.at)
    return " ".join(parts["line"].split())
