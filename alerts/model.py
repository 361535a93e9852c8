"""The alert model: an alert per root cause, and the notifications that tell
people about it. Sinks receive notifications; they never decide when."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

from topology import State

__all__ = [
    "Alert",
    "AlertKind",
    "Event",
    "Impacted",
    "Notification",
    "Receipt",
    "Recoverable",
    "Severity",
    "Sink",
    "SinkError",
]

# `impaired`: the watchdog itself cannot judge part of the estate (its own
# lag, descriptors, cut-off runs): never the estate's trouble.
AlertKind = Literal["outage", "drift", "anomaly", "maneuver", "heartbeat", "impaired"]
Severity = Literal["critical", "warning", "info"]
# What a notification says about its alert: it started firing, it still
# fires (a reminder), it outlived a recovery target, or it is over. A
# `notice` is an announcement (a maneuver started, refused or ended, a
# silence added or ended): said once, never updated, never resolved.
Event = Literal["firing", "repeat", "escalated", "resolved", "notice"]


@dataclass(frozen=True, slots=True)
class Impacted:
    """A critical node an alert takes down or degrades, with its clock."""

    node: str
    state: State
    recovery_target_s: float
    since: float

    def time_left_s(self, now: float) -> float:
        """Seconds left before the recovery target is breached (negative after)."""
        return self.since + self.recovery_target_s - now


@dataclass(frozen=True, slots=True)
class Alert:
    """One root cause and everything it takes down.

    `key` is stable for the life of the problem (`outage:farm-oms-1`), so a
    sink can update what it sent. Critical nodes taken down are always named
    in `critical`; other nodes that fail for the same cause are folded into
    `collateral`, never sent separately.
    """

    key: str
    kind: AlertKind
    severity: Severity
    root_cause: tuple[str, ...]
    summary: str
    started_at: float
    critical: tuple[Impacted, ...] = ()
    collateral: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def occurrence(self) -> str:
        """This occurrence of the problem, `outage:farm-oms-1@1700000000.000`:
        the same key failing again later is another occurrence."""
        return f"{self.key}@{self.started_at:.3f}"


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about an alert, as written to the outbox before it is
    sent. `id` is unique per alert occurrence and event: a sink that sees it
    twice (after a crash mid-delivery) must not post twice."""

    id: str
    alert: Alert
    event: Event
    at: float


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a sink returns for a delivered notification, kept in the outbox
    and handed back with the next notification of the same alert (Slack
    needs the channel and timestamp of its first message to update it)."""

    sink: str
    data: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class SinkError(Exception):
    """A delivery failed. `permanent` ones are given up on (a bad token, an
    unknown channel); others are retried with backoff. The message never
    contains a secret."""

    def __init__(self, message: str, *, permanent: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class Sink(Protocol):
    """Where notifications go. A sink only formats and sends: dedup, retry,
    grouping and reminders live once in `alerts/`, around every sink."""

    @property
    def name(self) -> str:
        """A stable name, used as the receipt's `sink` and in metrics."""
        ...

    async def send(self, notification: Notification, previous: Receipt | None) -> Receipt:
        """Deliver `notification`; `previous` is the receipt of the last
        delivered notification of the same alert to this sink, if any.
        Raises `SinkError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class Recoverable(Protocol):
    """A sink that can tell whether a notification was already delivered by
    an attempt whose outcome was lost (a crash mid-delivery, a timeout), so
    that it is not delivered twice. Delivery records each attempt before it
    starts, and asks `find` before trying again."""

    async def find(self, notification: Notification, previous: Receipt | None) -> Receipt | None:
        """The receipt of `notification` if the far side holds it already,
        else None. Raises `SinkError`."""
        ...
