"""The HTTP API: metrics, health, live status, blast radius on live state,
incidents, alerts, maneuvers, silences and reload. Read-only endpoints need
no credentials; mutating ones (reload, maneuvers, silences) need the bearer
token from the daemon's environment, and so do log samples as read.

It runs in the API process (`watchdog.api_process`), never in the daemon's:
answers are built from a `View` of the daemon's state (in a worker thread
when large), and what only the daemon can do (the store, maneuvers,
silences, reload) is asked of it with `Backend.call`. `/-/healthy` and
`/-/ready` read two flags and wait for nothing.

Every refusal answers `{"problems": [...]}` (blast-radius adds `valid` and
`exit_code`, as the CLI's `--format json` does), each problem an object of
the shape the CLI's JSON gives: `file` and `line` (null unless it is about
a file: a refused reload's), `path` (what in the request or the file is
wrong: a query parameter, a body field such as `actions[0].node`, a key of
the file; "" for the request as a whole) and `message`, for people. Shown
as `path: message`, it reads as the CLI's text does."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from topology import ACTION_KINDS, Action, State, parse_duration, what_if
from topology.document import suggest
from topology.durations import bad_duration
from watchdog.config import TOKEN_ENV
from watchdog.http_server import ApiCounts
from watchdog.snapshot import View, metrics_text, status_json
from watchdog.web.routes import web_routes

__all__ = [
    "TOKEN_ENV",
    "Backend",
    "Busy",
    "CallRefused",
    "Problem",
    "Reload",
    "create_app",
    "problem",
]

# The Prometheus text format, version 0.0.4.
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


class Busy(Exception):
    """The daemon did not answer in time (or has not said anything yet): 503."""


class CallRefused(Exception):
    """The daemon refused a call, with the status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reload:
    """The outcome of a reload: in force or refused, and why: each problem
    an object with its file and line (as `problem` makes them, `file` and
    `line` filled in), or a text when it is about no place in the file."""

    ok: bool
    problems: tuple[dict[str, Any] | str, ...] = ()


class Backend(Protocol):
    """The daemon as the API sees it."""

    api_token: str | None

    def healthy(self) -> bool: ...

    def ready(self) -> bool: ...

    def now(self) -> float: ...

    def api_counts(self) -> ApiCounts | None: ...

    async def view(self) -> View:
        """The daemon's state as of its latest update; `Busy` before one."""
        ...

    async def call(self, op: str, **args: Any) -> Any:
        """Have the daemon do `op` (see `Daemon.api_call`): its answer,
        `CallRefused` if it refuses, `Busy` if it does not answer."""
        ...


# Lists longer than this are encoded item by item (see `_encoded`).
_CHUNKED = 100
# Filters of /api/v1/status.
_STATES = {str(state): state for state in State}


Problem = dict[str, Any]


def problem(message: str, path: str = "") -> Problem:
    """One problem of a request, in the shape of the module docstring."""
    return {"file": None, "line": None, "path": path, "message": message}


def _as_problem(found: object) -> Problem:
    """A problem the daemon gave (a refused reload's): an object with the
    file and line it names, or a text, which becomes the message."""
    if isinstance(found, Mapping):
        line = found.get("line")
        return {
            "file": None if found.get("file") is None else str(found["file"]),
            "line": line if isinstance(line, int) else None,
            "path": str(found.get("path") or ""),
            "message": str(found.get("message", "")),
        }
    return problem(str(found))


def _problems(status: int, *problems: Problem) -> Response:
    """An error answer: every problem, and the status."""
    return JSONResponse({"problems": list(problems)}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the error answer saying it is not one."""
    try:
        body = await request.json()
    except ValueError:
        return _problems(400, problem("expected a JSON body"))
    if not isinstance(body, dict):
        return _problems(400, problem("expected a JSON object"))
    return body


def _encoded(answer: dict[str, Any]) -> bytes:
    """`answer` as JSON, its lists of thousands of items encoded one item at
    a time: one call to the C encoder holds the interpreter for the whole
    text, and /-/healthy waits behind it."""
    parts = []
    for key, value in answer.items():
        if isinstance(value, list) and len(value) > _CHUNKED:
            items = ",".join(json.dumps(item) for item in value)
            parts.append(f"{json.dumps(key)}: [{items}]")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return ("{" + ", ".join(parts) + "}").encode()


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status_code=status, media_type="application/json")


def _outbox_family(counts: Sequence[Sequence[Any]]) -> str:
    lines = [
        "# HELP watchdog_outbox_notifications Notifications in the outbox by sink and state "
        "(pending, delivered, failed).",
        "# TYPE watchdog_outbox_notifications gauge",
    ]
    lines += [
        f'watchdog_outbox_notifications{{sink="{sink}",state="{state}"}} {float(count)}'
        for sink, state, count in counts
    ]
    return "\n".join(lines) + "\n"


def _api_family(counts: ApiCounts | None) -> str:
    if counts is None:
        return ""
    lines = [
        "# HELP watchdog_api_connections Connections open to the API now.",
        "# TYPE watchdog_api_connections gauge",
        f"watchdog_api_connections {float(counts.open_connections)}",
        "# HELP watchdog_api_connections_closed_total Connections the API closed to defend "
        "itself, by reason (refused at the cap, slow head or body, idle, not reading, too large).",
        "# TYPE watchdog_api_connections_closed_total counter",
    ]
    for reason, value in (
        ("refused", counts.refused),
        ("head_timeout", counts.head_timeouts),
        ("body_timeout", counts.body_timeouts),
        ("idle", counts.idle_timeouts),
        ("stalled", counts.stalled),
        ("too_large", counts.too_large),
    ):
        lines.append(f'watchdog_api_connections_closed_total{{reason="{reason}"}} {float(value)}')
    return "\n".join(lines) + "\n"


def create_app(backend: Backend) -> Starlette:
    """The ASGI application over `backend`."""

    def refused(request: Request) -> Response | None:
        """Mutating endpoints need `Authorization: Bearer <token>`; with no
        token in the daemon's environment they are disabled. A missing
        token and a wrong one are told apart (which says nothing of the
        token itself)."""
        token = backend.api_token
        if token is None:
            message = (
                f"mutating endpoints are disabled: set {TOKEN_ENV} in the daemon's environment"
            )
            return _problems(403, problem(message))
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            message = f"a bearer token is required: Authorization: Bearer ${TOKEN_ENV}"
            return _problems(401, problem(message))
        # Compared in constant time: how much of it matches is not told.
        if not hmac.compare_digest(given.encode(), token.encode()):
            message = f"wrong token: it is not the daemon's ${TOKEN_ENV}"
            return _problems(401, problem(message))
        return None

    async def metrics(request: Request) -> Response:
        view = await backend.view()
        # Sent with the updates, so a busy daemon does not hold a scrape up;
        # asked for only when it is not (a registry too large to send
        # every second: server.metrics_detail).
        registry = view.registry
        if registry is None:
            registry = await backend.call("registry")
        outbox = view.outbox
        if outbox is None:
            outbox = await backend.call("outbox_counts")
        counts = backend.api_counts()

        def build() -> bytes:
            extra = _outbox_family(outbox) + _api_family(counts)
            return registry + metrics_text(view) + extra.encode()

        return Response(await asyncio.to_thread(build), media_type=CONTENT_TYPE_METRICS)

    async def healthy(request: Request) -> Response:
        ok = backend.healthy()
        return PlainTextResponse("ok\n" if ok else "unhealthy\n", status_code=200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = backend.ready()
        return PlainTextResponse("ready\n" if ok else "not ready\n", status_code=200 if ok else 503)

    async def status(request: Request) -> Response:
        query = request.query_params
        problems = [
            problem(f"unknown parameter {p!r}: use node, state, critical")
            for p in sorted(set(query) - {"node", "state", "critical"})
        ]
        wanted = []
        for text in query.getlist("state"):
            if text in _STATES:
                wanted.append(_STATES[text])
            else:
                expected = f"expected one of {', '.join(_STATES)}, got {text!r}"
                problems.append(problem(expected, "state"))
        critical = None
        if "critical" in query:
            text = query["critical"]
            if text not in ("true", "false"):
                problems.append(problem(f"expected true or false, got {text!r}", "critical"))
            critical = text == "true"
        view = await backend.view()
        topology = view.live.topology
        nodes = query.getlist("node")
        for name in nodes:
            if name not in topology:
                hint = suggest(name, topology.nodes)
                problems.append(problem(f"unknown node {name!r}{hint}", "node"))
        if problems:
            return _problems(400, *problems)
        private = refused(request) is None

        def build() -> bytes:
            answer = status_json(
                view, nodes=nodes, states=wanted, critical=critical, private=private
            )
            return _encoded(answer)

        return Response(await asyncio.to_thread(build), media_type="application/json")

    async def blast_radius(request: Request) -> Response:
        live = (await backend.view()).live
        actions = []
        problems: list[Problem] = []
        for kind in ACTION_KINDS:
            for name in request.query_params.getlist(kind):
                if name in live.topology:
                    actions.append(Action(kind, name))
                else:
                    hint = suggest(name, live.topology.nodes)
                    problems.append(problem(f"unknown node {name!r}{hint}", kind))
        unknown = set(request.query_params) - set(ACTION_KINDS)
        problems += [
            problem(f"unknown parameter {p!r}: use {', '.join(ACTION_KINDS)}")
            for p in sorted(unknown)
        ]
        if not actions and not problems:
            problems.append(
                problem("name a maneuver: ?shutdown=NODE, ?drain=NODE or ?restart=NODE")
            )
        if problems:
            return _json({"valid": False, "exit_code": 3, "problems": problems}, 400)
        impact = await asyncio.to_thread(
            lambda: what_if(live.topology, live.observed, actions).to_json()
        )
        return _json(impact)

    async def incidents(request: Request) -> Response:
        text = request.query_params.get("since", "30d")
        try:
            window = parse_duration(text)
        except ValueError:
            return _problems(400, problem(bad_duration(text), "since"))
        node = request.query_params.get("node")
        found = await backend.call("incidents", since=backend.now() - window, node=node)
        return _json({"since_s": window, "incidents": found})

    async def alerts(request: Request) -> Response:
        firing = list((await backend.view()).alerts)
        counts = await backend.call("outbox_counts")
        outbox = [{"sink": sink, "state": state, "count": count} for sink, state, count in counts]
        return _json({"alerts": firing, "outbox": outbox})

    async def maneuvers(request: Request) -> Response:
        if request.method == "GET":
            return _json({"maneuvers": await backend.call("maneuvers")})
        if (denied := refused(request)) is not None:
            return denied
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        topology = (await backend.view()).live.topology
        problems: list[Problem] = []
        actions: list[tuple[str, str]] = []
        raw = body.get("actions")
        for index, item in enumerate(raw if isinstance(raw, list) else []):
            kind = item.get("action") if isinstance(item, dict) else None
            node = item.get("node") if isinstance(item, dict) else None
            where = f"actions[{index}]"
            if kind not in ACTION_KINDS:
                expected = f"expected one of {', '.join(ACTION_KINDS)}, got {kind!r}"
                problems.append(problem(expected, f"{where}.action"))
            elif not isinstance(node, str) or node not in topology:
                hint = suggest(str(node), topology.nodes)
                problems.append(problem(f"unknown node {node!r}{hint}", f"{where}.node"))
            else:
                actions.append((kind, node))
        if not isinstance(raw, list) or not raw:
            example = '{"actions": [{"action": "shutdown", "node": N}]}'
            problems.append(problem(f"name the maneuver: {example}", "actions"))
        if problems:
            return _problems(400, *problems)
        maneuver, code = await backend.call(
            "maneuver_start",
            actions=actions,
            by=str(body.get("by", "")),
            reason=str(body.get("reason", "")),
            force=bool(body.get("force", False)),
        )
        return _json(maneuver, code)

    async def end_maneuver(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        ident = int(request.path_params["ident"])
        return _json(await backend.call("maneuver_end", ident=ident))

    async def silences(request: Request) -> Response:
        if request.method == "GET":
            return _json({"silences": await backend.call("silences")})
        if (denied := refused(request)) is not None:
            return denied
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        label = None
        if isinstance(body.get("label"), str):
            key, sep, value = body["label"].partition("=")
            if not sep or not key:
                expected = f"expected key=value, got {body['label']!r}"
                return _problems(400, problem(expected, "label"))
            label = (key, value)
        try:
            duration = parse_duration(str(body.get("for", "")))
        except ValueError:
            message = bad_duration(str(body.get("for", "")))
            return _problems(400, problem(message, "for"))
        node = body.get("node")
        silence = await backend.call(
            "silence_add",
            node=node if isinstance(node, str) else None,
            label=label,
            duration_s=duration,
            by=str(body.get("by", "")),
            reason=str(body.get("reason", "")),
            force=bool(body.get("force", False)),
        )
        return _json(silence, 201)

    async def expire_silence(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        ident = int(request.path_params["ident"])
        silence = await backend.call("silence_expire", ident=ident)
        return _json({**silence, "expired": True})

    async def reload(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        ok, problems = await backend.call("reload")
        if ok:
            return _json({"reloaded": True})
        return _json({"reloaded": False, "problems": [_as_problem(p) for p in problems]}, 400)

    async def busy(request: Request, exc: Exception) -> Response:
        return _problems(503, problem(str(exc)))

    async def call_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CallRefused)
        return _problems(exc.status, problem(str(exc)))

    routes = [
        # The status page and its data, from the same backend.
        *web_routes(backend),
        Route("/metrics", metrics),
        Route("/-/healthy", healthy),
        Route("/-/ready", ready),
        Route("/-/reload", reload, methods=["POST"]),
        Route("/api/v1/status", status),
        Route("/api/v1/blast-radius", blast_radius),
        Route("/api/v1/incidents", incidents),
        Route("/api/v1/alerts", alerts),
        Route("/api/v1/maneuvers", maneuvers, methods=["GET", "POST"]),
        Route("/api/v1/maneuvers/{ident:int}/end", end_maneuver, methods=["POST"]),
        Route("/api/v1/silences", silences, methods=["GET", "POST"]),
        Route("/api/v1/silences/{ident:int}", expire_silence, methods=["DELETE"]),
    ]
    return Starlette(routes=routes, exception_handlers={Busy: busy, CallRefused: call_refused})
