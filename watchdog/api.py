"""The HTTP API: metrics, health, live status, blast radius on live state,
incidents, alerts, maneuvers, and reload. Read-only endpoints need no
credentials; mutating ones (reload, maneuvers, silences) need the bearer
token from the daemon's environment, and so do log samples as read.

The API runs on a thread of its own (`watchdog.http_server`), never on the
loop that runs the probes: answers are built from an immutable snapshot in
a worker thread, and what changes the daemon's state runs on its loop
(`Backend.on_daemon`). `/-/healthy` and `/-/ready` read two flags and touch
neither."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alerts.model import Notification
from topology import ACTION_KINDS, Action, State, parse_duration, what_if
from topology.document import suggest
from watchdog.config import TOKEN_ENV
from watchdog.live import LiveState
from watchdog.maneuvers import Maneuver, ManeuverError, Maneuvers
from watchdog.silences import Silence, SilenceError, Silences
from watchdog.snapshot import Snapshot, metrics_text, status_json

__all__ = ["TOKEN_ENV", "Backend", "Busy", "Reload", "create_app"]


class Busy(Exception):
    """The daemon's loop did not take the request in time: 503."""


@dataclass(frozen=True, slots=True)
class Reload:
    """The outcome of a reload: in force or refused, and why."""

    ok: bool
    problems: tuple[str, ...] = ()


class Backend(Protocol):
    """What the API needs of the daemon. `healthy`, `ready`, `now`,
    `incidents`, `outbox_counts` and the stores' reads are safe from any
    thread; everything else runs on the daemon's loop through
    `on_daemon`."""

    maneuvers: Maneuvers
    silences: Silences
    api_token: str | None
    registry: CollectorRegistry
    live: LiveState  # on the daemon's loop only

    def healthy(self) -> bool: ...

    def ready(self) -> bool: ...

    def now(self) -> float: ...

    def incidents(self, since: float, node: str | None = None) -> Sequence[dict[str, Any]]: ...

    def outbox_counts(self) -> Mapping[tuple[str, str], int]: ...

    async def snapshot(self) -> Snapshot:
        """The daemon's state now, taken on its loop (cached briefly)."""
        ...

    async def on_daemon(self, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()` on the daemon's loop, its result or exception
        handed back here."""
        ...

    def reload(self) -> Awaitable[Reload]: ...

    def announce(self, notification: Notification) -> None: ...

    def watch(self) -> None: ...


T = TypeVar("T")
# Filters of /api/v1/status.
_STATES = {str(state): state for state in State}


def _problems(status: int, *messages: str) -> Response:
    """An error answer: every problem, for people, and the status."""
    return JSONResponse({"problems": list(messages)}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the error answer saying it is not one."""
    try:
        body = await request.json()
    except ValueError:
        return _problems(400, "expected a JSON body")
    if not isinstance(body, dict):
        return _problems(400, "expected a JSON object")
    return body


def create_app(backend: Backend) -> Starlette:
    """The ASGI application over `backend`."""

    async def metrics(request: Request) -> Response:
        snapshot = await backend.snapshot()

        def build() -> bytes:
            return generate_latest(backend.registry) + metrics_text(snapshot).encode()

        return Response(await asyncio.to_thread(build), media_type=CONTENT_TYPE_LATEST)

    async def healthy(request: Request) -> Response:
        ok = backend.healthy()
        return PlainTextResponse("ok\n" if ok else "unhealthy\n", status_code=200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = backend.ready()
        return PlainTextResponse("ready\n" if ok else "not ready\n", status_code=200 if ok else 503)

    async def status(request: Request) -> Response:
        query = request.query_params
        problems = [
            f"unknown parameter {p!r}: use node, state, critical"
            for p in sorted(set(query) - {"node", "state", "critical"})
        ]
        wanted = []
        for text in query.getlist("state"):
            if text in _STATES:
                wanted.append(_STATES[text])
            else:
                problems.append(f"state={text}: expected one of {', '.join(_STATES)}")
        critical = None
        if "critical" in query:
            text = query["critical"]
            if text not in ("true", "false"):
                problems.append(f"critical={text}: expected true or false")
            critical = text == "true"
        snapshot = await backend.snapshot()
        topology = snapshot.live.topology
        nodes = query.getlist("node")
        for name in nodes:
            if name not in topology:
                problems.append(
                    f"node={name}: unknown node {name!r}{suggest(name, topology.nodes)}"
                )
        if problems:
            return _problems(400, *problems)
        private = refused(request) is None

        def build() -> bytes:
            answer = status_json(
                snapshot, nodes=nodes, states=wanted, critical=critical, private=private
            )
            return json.dumps(answer).encode()

        return Response(await asyncio.to_thread(build), media_type="application/json")

    async def blast_radius(request: Request) -> Response:
        live = (await backend.snapshot()).live
        actions = []
        problems = []
        for kind in ACTION_KINDS:
            for name in request.query_params.getlist(kind):
                if name in live.topology:
                    actions.append(Action(kind, name))
                else:
                    hint = suggest(name, live.topology.nodes)
                    problems.append(f"{kind}={name}: unknown node {name!r}{hint}")
        unknown = set(request.query_params) - set(ACTION_KINDS)
        problems += [
            f"unknown parameter {p!r}: use {', '.join(ACTION_KINDS)}" for p in sorted(unknown)
        ]
        if not actions and not problems:
            problems.append("name a maneuver: ?shutdown=NODE, ?drain=NODE or ?restart=NODE")
        if problems:
            return JSONResponse(
                {"valid": False, "exit_code": 3, "problems": problems}, status_code=400
            )
        impact = await asyncio.to_thread(
            lambda: what_if(live.topology, live.observed, actions).to_json()
        )
        return JSONResponse(impact)

    async def incidents(request: Request) -> Response:
        text = request.query_params.get("since", "30d")
        try:
            window = parse_duration(text)
        except ValueError:
            return _problems(400, f"since: bad duration {text!r}: expected e.g. 30d or 12h")
        node = request.query_params.get("node")
        found = await asyncio.to_thread(backend.incidents, backend.now() - window, node)
        return JSONResponse({"since_s": window, "incidents": list(found)})

    async def alerts(request: Request) -> Response:
        firing = [
            {
                "key": a.key,
                "kind": a.kind,
                "severity": a.severity,
                "root_cause": list(a.root_cause),
                "summary": a.summary,
                "started_at": a.started_at,
                "critical": [i.node for i in a.critical],
                "collateral": len(a.collateral),
            }
            for a in (await backend.snapshot()).alerts
        ]
        counts = await asyncio.to_thread(backend.outbox_counts)
        outbox = [
            {"sink": sink, "state": state, "count": count}
            for (sink, state), count in sorted(counts.items())
        ]
        return JSONResponse({"alerts": firing, "outbox": outbox})

    def refused(request: Request) -> Response | None:
        """Mutating endpoints need `Authorization: Bearer <token>`; with no
        token in the daemon's environment they are disabled."""
        token = backend.api_token
        if token is None:
            message = (
                f"mutating endpoints are disabled: set {TOKEN_ENV} in the daemon's environment"
            )
            return _problems(403, message)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            message = f"a bearer token is required: Authorization: Bearer ${TOKEN_ENV}"
            return _problems(401, message)
        return None

    async def maneuvers(request: Request) -> Response:
        if request.method == "GET":
            recent = await asyncio.to_thread(backend.maneuvers.recent)
            return JSONResponse({"maneuvers": [m.to_json() for m in recent]})
        if (denied := refused(request)) is not None:
            return denied
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        topology = (await backend.snapshot()).live.topology
        problems: list[str] = []
        actions: list[Action] = []
        raw = body.get("actions")
        for item in raw if isinstance(raw, list) else []:
            kind = item.get("action") if isinstance(item, dict) else None
            node = item.get("node") if isinstance(item, dict) else None
            if kind not in ACTION_KINDS:
                problems.append(f"action {kind!r}: use {', '.join(ACTION_KINDS)}")
            elif not isinstance(node, str) or node not in topology:
                hint = suggest(str(node), topology.nodes)
                problems.append(f"{kind} {node}: unknown node {node!r}{hint}")
            else:
                actions.append(Action(kind, node))
        if not isinstance(raw, list) or not raw:
            problems.append('name the maneuver: {"actions": [{"action": "shutdown", "node": N}]}')
        if problems:
            return _problems(400, *problems)

        async def start() -> Maneuver:
            maneuver, note = backend.maneuvers.start(
                backend.live,
                actions,
                by=str(body.get("by", "")),
                reason=str(body.get("reason", "")),
                force=bool(body.get("force", False)),
                at=backend.now(),
            )
            backend.announce(note)
            backend.watch()
            return maneuver

        try:
            maneuver = await backend.on_daemon(start)
        except ManeuverError as err:
            return _problems(err.status, str(err))
        return JSONResponse(
            maneuver.to_json(), status_code=409 if maneuver.state == "refused" else 201
        )

    async def silences(request: Request) -> Response:
        now = backend.now()
        if request.method == "GET":
            active = await asyncio.to_thread(backend.silences.active, now)
            return JSONResponse({"silences": [x.to_json() for x in active]})
        if (denied := refused(request)) is not None:
            return denied
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        label = None
        if isinstance(body.get("label"), str):
            key, sep, value = body["label"].partition("=")
            if not sep or not key:
                return _problems(400, "label: expected key=value")
            label = (key, value)
        try:
            duration = parse_duration(str(body.get("for", "")))
        except ValueError:
            message = f"for: bad duration {body.get('for')!r}: e.g. 2h"
            return _problems(400, message)
        node = body.get("node")

        async def add() -> Silence:
            silence, note = backend.silences.add(
                backend.live,
                node=node if isinstance(node, str) else None,
                label=label,
                duration_s=duration,
                by=str(body.get("by", "")),
                reason=str(body.get("reason", "")),
                force=bool(body.get("force", False)),
                at=now,
            )
            backend.announce(note)
            return silence

        try:
            silence = await backend.on_daemon(add)
        except SilenceError as err:
            return _problems(err.status, str(err))
        return JSONResponse(silence.to_json(), status_code=201)

    async def expire_silence(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        ident = int(request.path_params["ident"])

        async def expire() -> Silence:
            return backend.silences.expire(ident, backend.now())

        try:
            silence = await backend.on_daemon(expire)
        except SilenceError as err:
            return _problems(err.status, str(err))
        return JSONResponse({**silence.to_json(), "expired": True})

    async def end_maneuver(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        ident = int(request.path_params["ident"])

        async def end() -> Maneuver:
            maneuver, note = backend.maneuvers.end(backend.live, ident, backend.now())
            backend.announce(note)
            backend.watch()
            return maneuver

        try:
            maneuver = await backend.on_daemon(end)
        except ManeuverError as err:
            return _problems(err.status, str(err))
        return JSONResponse(maneuver.to_json())

    async def reload(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        outcome = await backend.on_daemon(backend.reload)
        if outcome.ok:
            return JSONResponse({"reloaded": True})
        return JSONResponse(
            {"reloaded": False, "problems": list(outcome.problems)}, status_code=400
        )

    routes = [
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

    async def busy(request: Request, exc: Exception) -> Response:
        return _problems(503, str(exc))

    return Starlette(routes=routes, exception_handlers={Busy: busy})
