"""Routing: which sinks hear about an alert, and in which Slack channel.

Routes are tried in order, as in Alertmanager; the first that matches
decides, unless it says `continue`, in which case later matching routes add
their sinks too (the first channel named wins). An alert no route matches
goes to every sink, and to Slack's channel for its severity. Matching looks
at what an alert carries: its kind, its severity, whether it takes down a
critical node, and the labels of its nodes (equality with one of the given
values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from alerts.model import Alert

__all__ = ["Decision", "Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    """One route: what it matches (every given condition must hold) and
    where a match goes. `sinks` empty means every sink."""

    labels: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    kinds: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    critical: bool | None = None
    sinks: tuple[str, ...] = ()
    slack_channel: str | None = None
    continue_: bool = False

    def matches(self, alert: Alert) -> bool:
        """True when `alert` meets every condition of this route."""
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.severities and alert.severity not in self.severities:
            return False
        if self.critical is not None and bool(alert.critical) != self.critical:
            return False
        return all(alert.labels.get(key) in values for key, values in self.labels.items())


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one alert goes: the names of its sinks and, when a route
    named one, its Slack channel (else the channel of its severity)."""

    sinks: tuple[str, ...]
    slack_channel: str | None = None


class Router:
    """Routes alerts to the sinks named `sinks` (the configured ones)."""

    def __init__(self, routes: Sequence[Route], sinks: Sequence[str]) -> None:
        unknown = sorted({s for r in routes for s in r.sinks} - set(sinks))
        if unknown:
            raise ValueError(f"routes name sinks that are not configured: {', '.join(unknown)}")
        self.routes = tuple(routes)
        self.sinks = tuple(sinks)

    def decide(self, alert: Alert) -> Decision:
        """The sinks and Slack channel for `alert`; never no sink at all
        (muting is what silences are for, and they are recorded)."""
        chosen: list[str] = []
        channel: str | None = None
        matched = False
        for route in self.routes:
            if not route.matches(alert):
                continue
            matched = True
            for sink in route.sinks or self.sinks:
                if sink not in chosen:
                    chosen.append(sink)
            if channel is None:
                channel = route.slack_channel
            if not route.continue_:
                break
        if not matched:
            return Decision(self.sinks)
        return Decision(tuple(s for s in self.sinks if s in chosen), channel)
