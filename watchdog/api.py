"""The HTTP API: metrics, health, live status, blast radius on live state,
incidents, alerts, maneuvers, and reload. Read-only endpoints need no
credentials; mutating ones (reload, maneuvers) need the bearer token from
the daemon's environment."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alerts.model import Notification
from alerts.rules import Alerting
from topology import ACTION_KINDS, Action, parse_duration
from topology.document import suggest
from watchdog.config import TOKEN_ENV
from watchdog.live import LiveState
from watchdog.maneuvers import ManeuverError, Maneuvers
from watchdog.silences import SilenceError, Silences

__all__ = ["TOKEN_ENV", "Backend", "Reload", "create_app"]

# The environment variable holding the bearer token of mutating endpoints.


@dataclass(frozen=True, slots=True)
class Reload:
    """The outcome of a reload: in force or refused, and why."""

    ok: bool
    problems: tuple[str, ...] = ()


class OutboxCounts(Protocol):
    """What the API reads of the outbox."""

    def counts(self) -> dict[tuple[str, str], int]: ...


class Backend(Protocol):
    """What the API needs of the daemon."""

    maneuvers: Maneuvers
    silences: Silences
    api_token: str | None

    live: LiveState
    registry: CollectorRegistry
    alerting: Alerting

    @property
    def outbox(self) -> OutboxCounts: ...

    def healthy(self) -> bool: ...

    def ready(self) -> bool: ...

    def now(self) -> float: ...

    def incidents(self, since: float, node: str | None = None) -> Sequence[dict[str, Any]]: ...

    def reload(self) -> Awaitable[Reload]: ...

    def announce(self, notification: Notification) -> None: ...

    def watch(self) -> None: ...

    def probe_details(self, key: str) -> Mapping[str, Any] | None: ...


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
        return Response(generate_latest(backend.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthy(request: Request) -> Response:
        ok = backend.healthy()
        return PlainTextResponse("ok\n" if ok else "unhealthy\n", status_code=200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = backend.ready()
        return PlainTextResponse("ready\n" if ok else "not ready\n", status_code=200 if ok else 503)

    async def status(request: Request) -> Response:
        live = backend.live
        nodes = []
        for node in live.status():
            nodes.append(
                {
                    "node": node.node,
                    "kind": node.kind,
                    "critical": node.critical,
                    "observed": str(node.observed) if node.observed is not None else None,
                    "effective": str(node.effective),
                    "since": node.since,
                    "causes": list(node.causes),
                    "no_spare": node.no_spare,
                    "probes": [
                        {
                            "probe": p.key,
                            "kind": p.kind,
                            "verdict": str(p.verdict),
                            "last_state": str(p.last_state) if p.last_state is not None else None,
                            "last_reason": p.last_reason,
                            "last_latency_s": p.last_latency_s,
                            "last_at": p.last_at,
                            **(backend.probe_details(p.key) or {}),
                        }
                        for p in node.probes
                    ],
                }
            )
        drift = [
            {
                "node": d.node,
                "effective": str(d.effective),
                "causes": list(d.causes),
                "message": d.message,
            }
            for d in live.drift()
        ]
        return JSONResponse(
            {
                "source": live.topology.source,
                "ready": backend.ready(),
                "nodes": nodes,
                "drift": drift,
            }
        )

    async def blast_radius(request: Request) -> Response:
        live = backend.live
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
        return JSONResponse(live.what_if(actions).to_json())

    async def incidents(request: Request) -> Response:
        text = request.query_params.get("since", "30d")
        try:
            window = parse_duration(text)
        except ValueError:
            return _problems(400, f"since: bad duration {text!r}: expected e.g. 30d or 12h")
        node = request.query_params.get("node")
        return JSONResponse(
            {"since_s": window, "incidents": list(backend.incidents(backend.now() - window, node))}
        )

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
            for a in backend.alerting.alerts
        ]
        outbox = [
            {"sink": sink, "state": state, "count": count}
            for (sink, state), count in sorted(backend.outbox.counts().items())
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
            return JSONResponse({"maneuvers": [m.to_json() for m in backend.maneuvers.recent()]})
        if (denied := refused(request)) is not None:
            return denied
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        live = backend.live
        problems: list[str] = []
        actions: list[Action] = []
        raw = body.get("actions")
        for item in raw if isinstance(raw, list) else []:
            kind = item.get("action") if isinstance(item, dict) else None
            node = item.get("node") if isinstance(item, dict) else None
            if kind not in ACTION_KINDS:
                problems.append(f"action {kind!r}: use {', '.join(ACTION_KINDS)}")
            elif not isinstance(node, str) or node not in live.topology:
                hint = suggest(str(node), live.topology.nodes)
                problems.append(f"{kind} {node}: unknown node {node!r}{hint}")
            else:
                actions.append(Action(kind, node))
        if not isinstance(raw, list) or not raw:
            problems.append('name the maneuver: {"actions": [{"action": "shutdown", "node": N}]}')
        if problems:
            return _problems(400, *problems)
        try:
            maneuver, note = backend.maneuvers.start(
                live,
                actions,
                by=str(body.get("by", "")),
                reason=str(body.get("reason", "")),
                force=bool(body.get("force", False)),
                at=backend.now(),
            )
        except ManeuverError as err:
            return _problems(err.status, str(err))
        backend.announce(note)
        backend.watch()
        return JSONResponse(
            maneuver.to_json(), status_code=409 if maneuver.state == "refused" else 201
        )

    async def silences(request: Request) -> Response:
        now = backend.now()
        if request.method == "GET":
            return JSONResponse({"silences": [x.to_json() for x in backend.silences.active(now)]})
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
        try:
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
        except SilenceError as err:
            return _problems(err.status, str(err))
        backend.announce(note)
        return JSONResponse(silence.to_json(), status_code=201)

    async def expire_silence(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            silence = backend.silences.expire(int(request.path_params["ident"]), backend.now())
        except SilenceError as err:
            return _problems(err.status, str(err))
        return JSONResponse({**silence.to_json(), "expired": True})

    async def end_maneuver(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            ident = int(request.path_params["ident"])
            maneuver, note = backend.maneuvers.end(backend.live, ident, backend.now())
        except ManeuverError as err:
            return _problems(err.status, str(err))
        backend.announce(note)
        backend.watch()
        return JSONResponse(maneuver.to_json())

    async def reload(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        outcome = await backend.reload()
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
    return Starlette(routes=routes)
