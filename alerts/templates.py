"""The words of every message: jinja2 templates, one per sink and alert kind,
which users can replace from a folder of their own.

A sink asks for the parts of a notification (`Templates.parts`). The template
`SINK/KIND.j2` is used when it exists, else `SINK/default.j2`; a file of the
same name in the user's folder wins over the built-in one. A template sets
its parts with `{% set name %}...{% endset %}` (the built-ins document which
parts their sink reads); whatever else it renders is ignored. Undefined
names are errors (StrictUndefined), and templates whose name ends in
`.html.j2` are autoescaped.

Templates run in jinja2's immutable sandbox: a template reads what it is
given and changes nothing. One that names an attribute the sandbox refuses
(`__class__`, `__globals__`, anything starting with `_`, `mro`...) is refused
when it is loaded, with its file and line, so `check` stops the start and it
never runs; one that reaches for such an attribute some other way fails
when rendered, like any other error.

What a template sees: `alert` (key, kind, severity, root_cause, summary,
labels, collateral, started_at), `event` (firing, repeat, escalated,
resolved, or notice: an announcement of a maneuver or a silence), `now`,
`lasted` (seconds since the alert started), `critical` (the critical
nodes, each with node, state, recovery_target_s, since, left_s and
over_s), and the filters `whole` (seconds as `9m30s`, to the second),
`duration` (as the file writes them), `mrkdwn` (Slack escaping) and `code`
(Slack inline code).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args

import jinja2
from jinja2 import nodes
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    ImmutableSandboxedEnvironment,
)

from alerts.model import Alert, AlertKind, Event, Impacted, Notification
from topology import State, format_duration

__all__ = ["TemplateError", "Templates", "builtin", "escape_mrkdwn", "whole"]

log = logging.getLogger(__name__)

_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)
_EVENTS: tuple[Event, ...] = get_args(Event)


class TemplateError(Exception):
    """A template cannot be read or rendered; the message names the file and
    line when jinja2 knows them."""


def whole(seconds: float) -> str:
    """A duration to the second, as people read it: `9m30s`, `0s`."""
    rounded = round(seconds)
    return format_duration(float(rounded)) if rounded else "0s"


def escape_mrkdwn(value: object) -> str:
    """`value` as text Slack shows as it is: &, < and > escaped.
    https://docs.slack.dev/messaging/formatting-message-text#escaping"""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Attributes of Python's internals that no template needs: the way out of a
# sandbox starts with one of them. Anything starting with `_` is refused too.
_REFUSED_ATTRIBUTES = frozenset(
    {
        "mro",
        *UNSAFE_FUNCTION_ATTRIBUTES,
        *UNSAFE_METHOD_ATTRIBUTES,
        *UNSAFE_GENERATOR_ATTRIBUTES,
        *UNSAFE_COROUTINE_ATTRIBUTES,
        *UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    }
)


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, which also refuses, as it parses them, the
    templates that name an internal attribute (`x.__class__`,
    `x['__globals__']`, `x | attr('__subclasses__')`): they are reported as
    syntax errors, with their line, and never compiled. Every template the
    environment loads (includes and imports too) is parsed here."""

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node, attribute in _attributes(tree):
            if attribute.startswith("_") or attribute in _REFUSED_ATTRIBUTES:
                raise jinja2.TemplateSyntaxError(
                    f"access to attribute {attribute!r} is not allowed in a template",
                    node.lineno,
                    name,
                    filename,
                )
        return tree


def _attributes(node: nodes.Node) -> Iterator[tuple[nodes.Node, str]]:
    """Every attribute `node` and its children name outright, with the node
    naming it, in reading order (children first: `a.__class__.__mro__`
    names `__class__` first)."""
    for child in node.iter_child_nodes():
        yield from _attributes(child)
    if isinstance(node, nodes.Getattr):
        yield node, node.attr
    elif isinstance(node, nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield node, node.arg.value
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        first = node.args[0]
        if isinstance(first, nodes.Const) and isinstance(first.value, str):
            yield node, first.value


class Templates:
    """The built-in templates, overridden by those in `folder` (if given).
    Every template runs sandboxed (see the module's docstring)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if folder is not None:
            loaders.append(jinja2.FileSystemLoader(str(folder)))
        loaders.append(jinja2.PackageLoader("alerts", "templates"))
        self.folder = None if folder is None else Path(folder)
        self._env: jinja2.Environment = _Sandbox(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
            keep_trailing_newline=False,
        )
        self._env.filters.update(
            whole=whole, duration=format_duration, mrkdwn=escape_mrkdwn, code=lambda v: f"`{v}`"
        )
        self._cache: dict[tuple[str, str], jinja2.Template] = {}

    def adopt(self, other: Templates) -> None:
        """Use `other`'s templates from now on (a reload read them again):
        every sink holding this object follows."""
        self.folder, self._env, self._cache = other.folder, other._env, other._cache

    def parts(self, sink: str, notification: Notification, now: float) -> Mapping[str, str]:
        """The parts the template of `sink` sets for `notification` at `now`,
        each stripped of surrounding whitespace. Raises `TemplateError`."""
        alert = notification.alert
        template = self._template(sink, alert.kind)
        try:
            module = template.make_module(_context(notification, now))
        except jinja2.TemplateError as err:
            raise TemplateError(_where(err, template)) from None
        names = getattr(module, "__all__", None) or [
            name for name in vars(module) if not name.startswith("_")
        ]
        out = {}
        for name in names:
            value = getattr(module, name)
            if isinstance(value, str):
                out[name] = value.strip()
        return MappingProxyType(out)

    def render(self, sink: str, notification: Notification, now: float) -> Mapping[str, str]:
        """`parts`, falling back to the built-in template when a user's
        template fails (logged): a typo must not cost an alert."""
        try:
            return self.parts(sink, notification, now)
        except TemplateError as err:
            if self.folder is None:
                raise
            log.error("template failed, using the built-in one: %s", err)
            return builtin().parts(sink, notification, now)

    def check(self, sinks: tuple[str, ...]) -> list[str]:
        """Every problem of the templates `sinks` would use: each kind and
        event rendered once with a sample alert, so that a typo in a user's
        template stops the start instead of an alert."""
        problems = []
        for sink in sinks:
            for kind in _KINDS:
                for event in _EVENTS:
                    try:
                        self.parts(sink, _sample(kind, event), 1000.0)
                    except TemplateError as err:
                        if str(err) not in problems:
                            problems.append(str(err))
        return problems

    def _template(self, sink: str, kind: str) -> jinja2.Template:
        cached = self._cache.get((sink, kind))
        if cached is not None:
            return cached
        try:
            template = self._env.get_or_select_template([f"{sink}/{kind}.j2", f"{sink}/default.j2"])
        except jinja2.TemplateSyntaxError as err:
            raise TemplateError(f"{err.filename or err.name}:{err.lineno}: {err.message}") from None
        except jinja2.TemplatesNotFound:
            raise TemplateError(f"no template {sink}/{kind}.j2 nor {sink}/default.j2") from None
        self._cache[(sink, kind)] = template
        return template


@functools.cache
def builtin() -> Templates:
    """The built-in templates (one shared instance)."""
    return Templates()


def _where(err: jinja2.TemplateError, template: jinja2.Template) -> str:
    """`file:line: message` for an error raised while rendering `template`."""
    if isinstance(err, jinja2.TemplateSyntaxError) and err.lineno:
        # A template it includes or imports, refused as it was loaded.
        return f"{err.filename or err.name or template.filename}:{err.lineno}: {err.message}"
    line = None
    traceback = err.__traceback__
    while traceback is not None:
        # Frames of the compiled template carry its file name; its debug
        # info maps their line back to the template's.
        if traceback.tb_frame.f_code.co_filename == template.filename:
            line = template.get_corresponding_lineno(traceback.tb_lineno)
        traceback = traceback.tb_next
    where = template.filename or template.name or "<template>"
    return f"{where}:{line}: {err.message}" if line else f"{where}: {err.message}"


def _context(notification: Notification, now: float) -> dict[str, Any]:
    alert = notification.alert
    return {
        "alert": alert,
        "event": notification.event,
        "now": now,
        "lasted": now - alert.started_at,
        "critical": [_impacted(i, now) for i in alert.critical],
    }


def _impacted(impacted: Impacted, now: float) -> dict[str, Any]:
    left = impacted.time_left_s(now)
    return {
        "node": impacted.node,
        "state": str(impacted.state),
        "recovery_target_s": impacted.recovery_target_s,
        "since": impacted.since,
        "left_s": left,
        "over_s": -left,
    }


def _sample(kind: AlertKind, event: Event) -> Notification:
    alert = Alert(
        key=f"{kind}:sample",
        kind=kind,
        severity="critical",
        root_cause=("farm-1",),
        summary="farm-1 down takes critical orders down (9m left)",
        started_at=400.0,
        critical=(Impacted("orders", State.DOWN, 600.0, 400.0),),
        collateral=("search",),
        labels=MappingProxyType({"team": "sample"}),
    )
    return Notification(f"{kind}:sample#1:{event}", alert, event, 1000.0)
