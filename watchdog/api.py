"""The HTTP API: metrics, health, live status, blast radius on live state,
incidents, and reload. Read-only endpoints need no credentials; the only
mutating one here is the reload (bound to 127.0.0.1 by default)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alerts.rules import Alerting
from topology import ACTION_KINDS, Action, parse_duration
from topology.document import suggest
from watchdog.live import LiveState

__all__ = ["Backend", "Reload", "create_app"]


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
                            "last_state": str(p.last_state) if p.last_state else None,
                            "last_reason": p.last_reason,
                            "last_latency_s": p.last_latency_s,
                            "last_at": p.last_at,
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
            return JSONResponse(
                {"problems": [f"since: bad duration {text!r}: expected e.g. 30d or 12h"]},
                status_code=400,
            )
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

    async def reload(request: Request) -> Response:
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
    ]
    return Starlette(routes=routes)
