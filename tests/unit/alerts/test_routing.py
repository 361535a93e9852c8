"""Routing: first matching route decides, `continue` adds, nothing matched
goes everywhere."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from alerts.model import Alert, AlertKind, Impacted, Severity
from alerts.routing import Decision, Route, Router
from topology import State

SINKS = ("console", "slack", "alertmanager", "webhook")


def alert(
    kind: AlertKind = "outage",
    severity: Severity = "critical",
    *,
    critical: bool = True,
    **labels: str,
) -> Alert:
    impacted = (Impacted("orders-workflow", State.DOWN, 600.0, 0.0),) if critical else ()
    return Alert(
        key=f"{kind}:x",
        kind=kind,
        severity=severity,
        root_cause=("farm-oms-1",),
        summary="x",
        started_at=0.0,
        critical=impacted,
        labels=MappingProxyType(labels),
    )


def test_it_sends_an_unmatched_alert_to_every_sink() -> None:
    router = Router([Route(kinds=("anomaly",), sinks=("console",))], SINKS)
    assert router.decide(alert()) == Decision(SINKS)


def test_the_first_matching_route_decides() -> None:
    router = Router(
        [
            Route(
                labels=MappingProxyType({"team": ("payments", "billing")}),
                sinks=("slack",),
                slack_channel="#payments",
            ),
            Route(critical=True, sinks=("alertmanager",), slack_channel="#incidents"),
        ],
        SINKS,
    )
    assert router.decide(alert(team="billing")) == Decision(("slack",), "#payments")
    assert router.decide(alert(team="search")) == Decision(("alertmanager",), "#incidents")
    assert router.decide(alert(critical=False, team="search")) == Decision(SINKS)


def test_continue_adds_the_sinks_of_later_routes_and_keeps_the_first_channel() -> None:
    router = Router(
        [
            Route(severities=("critical",), sinks=("webhook",), slack_channel="#a", continue_=True),
            Route(kinds=("outage",), sinks=("slack", "webhook"), slack_channel="#b"),
            Route(sinks=("console",)),
        ],
        SINKS,
    )
    # Sinks keep the configured order, each once.
    assert router.decide(alert()) == Decision(("slack", "webhook"), "#a")
    assert router.decide(alert(severity="warning")) == Decision(("slack", "webhook"), "#b")
    assert router.decide(alert("drift", "warning")) == Decision(("console",))


def test_a_route_without_sinks_keeps_every_sink_and_only_picks_the_channel() -> None:
    router = Router(
        [Route(labels=MappingProxyType({"team": ("search",)}), slack_channel="#s")], SINKS
    )
    assert router.decide(alert(team="search")) == Decision(SINKS, "#s")


def test_a_label_the_alert_lacks_does_not_match() -> None:
    router = Router([Route(labels=MappingProxyType({"team": ("a",)}), sinks=("console",))], SINKS)
    assert router.decide(alert()) == Decision(SINKS)


def test_it_refuses_routes_to_sinks_that_are_not_configured() -> None:
    with pytest.raises(ValueError, match="not configured: pagerduty"):
        Router([Route(sinks=("pagerduty",))], SINKS)
