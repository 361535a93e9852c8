"""The `alerts.routes` list of the file: which alerts go to which sinks and
Slack channels (see `alerts.routing`).

    alerts:
      routes:
        - match: {labels: {team: payments}, critical: true}
          sinks: [slack, alertmanager]
          slack_channel: "#payments-incidents"
        - match: {kind: anomaly}
          sinks: [console]
          continue: true
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from types import MappingProxyType
from typing import get_args

from alerts.model import AlertKind, Severity
from alerts.routing import Route
from topology.document import Reader, quote, suggest
from topology.yamltree import SequenceNode, YamlNode

__all__ = ["read_routes"]

# The heartbeat goes to every sink that listens for it: it is not routed.
_KINDS = tuple(k for k in get_args(AlertKind) if k != "heartbeat")
_SEVERITIES: tuple[str, ...] = get_args(Severity)


def read_routes(reader: Reader, node: YamlNode, configured: Collection[str]) -> tuple[Route, ...]:
    """The routes under `node` (the value of `alerts.routes`); problems go
    to `reader`. A route may only name sinks in `configured` (and the
    console, which needs no settings)."""
    items = reader.sequence(node, "alerts.routes", "a list of routes")
    routes = []
    for index, item in enumerate(items or ()):
        route = _route(reader, item, f"alerts.routes[{index}]", configured)
        if route is not None:
            routes.append(route)
    return tuple(routes)


def _route(reader: Reader, node: YamlNode, path: str, configured: Collection[str]) -> Route | None:
    fields = reader.mapping(node, path, ("match", "sinks", "slack_channel", "continue"))
    if fields is None:
        return None
    values = {key: value for key, (_, value) in fields.items()}
    before = len(reader.problems)
    route = Route()
    if "match" in values:
        route = _match(reader, values["match"], f"{path}.match", route)
    sinks: list[str] = []
    if "sinks" in values:
        allowed = sorted({"console", *configured})
        for i, item in enumerate(reader.sequence(values["sinks"], f"{path}.sinks", "a list") or ()):
            name = reader.string(item, f"{path}.sinks[{i}]", "a sink name")
            if name is not None and name not in allowed:
                hint = suggest(name, allowed) or f" (configured: {', '.join(allowed)})"
                reader.problem(item, f"{path}.sinks[{i}]", f"no sink {quote(name)}{hint}")
            elif name is not None:
                sinks.append(name)
        if not sinks and len(reader.problems) == before:
            reader.problem(
                values["sinks"],
                f"{path}.sinks",
                "an empty list would drop alerts: name a sink, or use a silence to mute",
            )
    channel = None
    if "slack_channel" in values:
        channel = reader.string(values["slack_channel"], f"{path}.slack_channel", "a channel")
    continue_ = False
    if "continue" in values:
        continue_ = bool(reader.boolean(values["continue"], f"{path}.continue"))
    if len(reader.problems) != before:
        return None
    return replace(route, sinks=tuple(sinks), slack_channel=channel, continue_=continue_)


def _match(reader: Reader, node: YamlNode, path: str, route: Route) -> Route:
    fields = reader.mapping(node, path, ("labels", "kind", "severity", "critical"))
    if not fields:
        return route
    values = {key: value for key, (_, value) in fields.items()}
    labels: dict[str, tuple[str, ...]] = {}
    if "labels" in values:
        entries = reader.mapping(values["labels"], f"{path}.labels") or {}
        for key, value in reader.items(entries):
            labels[key] = _words(reader, value, f"{path}.labels.{key}", None)
    kinds = _words(reader, values["kind"], f"{path}.kind", _KINDS) if "kind" in values else ()
    severities = (
        _words(reader, values["severity"], f"{path}.severity", _SEVERITIES)
        if "severity" in values
        else ()
    )
    critical = (
        reader.boolean(values["critical"], f"{path}.critical") if "critical" in values else None
    )
    return Route(
        labels=MappingProxyType(labels), kinds=kinds, severities=severities, critical=critical
    )


def _words(
    reader: Reader, node: YamlNode, path: str, allowed: Collection[str] | None
) -> tuple[str, ...]:
    """One value or a list of values (any of which matches)."""
    items = node.value if isinstance(node, SequenceNode) else [node]
    out = []
    for item in items:
        word = reader.string(item, path, "a value or a list of values")
        if word is not None and allowed is not None and word not in allowed:
            reader.problem(
                item,
                path,
                f"unknown value {quote(word)}{suggest(word, allowed)}; one of "
                + ", ".join(allowed),
            )
        elif word is not None:
            out.append(word)
    return tuple(out)
