"""The status page's routes, served by the API process beside the API:

- `GET /` the page (`?view=public` the public one), `GET /static/NAME` its
  stylesheet and script;
- `GET /api/v1/status-page` the page as data (what `watchdog status` reads);
- `GET /api/v1/status-page/live` what the page's script polls: the changing
  parts as HTML, and the states the picture is coloured with;
- `GET /api/v1/status-page/node?node=N` the details of one node;
- `GET /api/v1/summary.json` Atlassian Statuspage's summary.

Each answer is built from the API process's mirror of the daemon's state
(`Backend.view`); the incident history and the maneuvers, which only the
daemon's store has, are asked of the daemon by `HistoryCache`: at most once
every HISTORY_TTL_S however many pages poll, in the background, so that a
page never waits for the daemon and the daemon's loop never works per
request. What is built is kept per version of the view: a hundred pages
polling cost one build per change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Protocol

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from topology import State, Topology, format_duration
from watchdog.snapshot import View
from watchdog.web import layout as drawing
from watchdog.web.model import (
    DAY_S,
    HISTORY_DAYS,
    History,
    Snapshot,
    blast,
    cause_sentence,
    display_name,
    is_public,
    left,
    page_model,
    public_id,
    public_names,
    public_sentence,
    rfc3339,
    summary_json,
    when,
)

__all__ = ["HISTORY_TTL_S", "REFRESH_S", "HistoryCache", "Pages", "web_routes"]

log = logging.getLogger(__name__)

# How often the page polls, and how old the history may get before it is
# asked for again (only while someone looks at a page).
REFRESH_S = 2.0
HISTORY_TTL_S = 10.0
# The first request after a start waits this long for the history, then
# goes on without it (the page says it is loading).
FIRST_HISTORY_WAIT_S = 1.0
# Views kept rendered (internal and public, a version or two).
_KEPT = 8

_STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
# The page loads nothing but its own files: no CDN, no font, no inline script.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)


class Source(Protocol):
    """What the page needs of `watchdog.api.Backend`."""

    def now(self) -> float: ...

    def healthy(self) -> bool: ...

    async def view(self) -> View: ...

    async def call(self, op: str, **args: Any) -> Any: ...


class HistoryCache:
    """The incidents of the last HISTORY_DAYS and the maneuvers, asked of the
    daemon at most once every `ttl_s` whoever asks (one call at a time; a
    failed one keeps what was known, with the error). `get()` never waits
    for the daemon, but for `first_wait_s` before anything is known.
    `calls` counts the fetches started, for tests and benchmarks."""

    def __init__(
        self,
        source: Source,
        ttl_s: float = HISTORY_TTL_S,
        first_wait_s: float = FIRST_HISTORY_WAIT_S,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._first_wait_s = first_wait_s
        self._history = History()
        self._asked_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.calls = 0

    async def get(self) -> History:
        """The latest history; a fresh one is asked for in the background
        when this one is older than the TTL."""
        now = self._source.now()
        idle = self._task is None or self._task.done()
        if idle and (self._asked_at is None or now - self._asked_at >= self._ttl_s):
            self._asked_at = now
            self.calls += 1
            self._task = asyncio.create_task(self._fetch(now))
        task = self._task
        if self._history.fetched_at is None and task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self._first_wait_s)
        return self._history

    async def _fetch(self, now: float) -> None:
        try:
            since = now - HISTORY_DAYS * DAY_S
            incidents = await self._source.call("incidents", since=since, node=None)
            maneuvers = await self._source.call("maneuvers")
        except Exception as err:  # Busy, a refusal, a bug: the page goes on without
            log.warning("status page: cannot read the history error=%s", err)
            self._history = replace(self._history, error=str(err) or type(err).__name__)
            return
        self._history = History(tuple(incidents), tuple(maneuvers), fetched_at=now)


@dataclass(frozen=True, slots=True)
class _Built:
    """One view of the page, rendered."""

    model: dict[str, Any]
    parts: dict[str, str]
    graph: str
    live: dict[str, Any]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("watchdog.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        when=when,
        left=left,
        rfc3339=rfc3339,
        duration=format_duration,
        day_s=DAY_S,
        history_days=HISTORY_DAYS,
        glyphs=drawing.GLYPHS,
    )
    return env


def _static() -> dict[str, tuple[bytes, str]]:
    """The page's own files, read once: content and a digest for its URL."""
    files = {}
    folder = resources.files("watchdog.web") / "static"
    for name in ("status.css", "status.js"):
        content = (folder / name).read_bytes()
        files[name] = (content, hashlib.sha256(content).hexdigest()[:10])
    return files


class Pages:
    """The page's renderings over a source: kept per view version, the
    picture's layout per topology."""

    def __init__(self, source: Source, history: HistoryCache | None = None) -> None:
        self.source = source
        self.history = history if history is not None else HistoryCache(source)
        self.env = _environment()
        self.static = _static()
        self._built: dict[tuple[int, bool, float | None, str | None], _Built] = {}
        self._layouts: list[tuple[Topology, bool, drawing.Layout]] = []
        self._lock = asyncio.Lock()
        self.builds = 0

    def static_url(self, name: str) -> str:
        """The URL of a static file, with its digest (cached for a year)."""
        return f"/static/{name}?v={self.static[name][1]}"

    def layout(self, topology: Topology, public: bool) -> drawing.Layout:
        """The picture's layout, worked out once per topology and view."""
        for known, view, found in self._layouts:
            if known is topology and view == public:
                return found
        if public:
            shown = public_names(topology)
            needs = drawing.public_needs(topology, shown)
            depth_of = drawing.depths(shown, needs)
            found = drawing.layered(shown, needs, depth_of.__getitem__)
        else:
            needs = {
                name: tuple(dict.fromkeys(m for g in node.groups for m in g.members))
                for name, node in topology.nodes.items()
            }
            found = drawing.layered(list(topology.nodes), needs, topology.depth)
        self._layouts = [*self._layouts[-3:], (topology, public, found)]
        return found

    async def snapshot(self) -> tuple[View, Snapshot]:
        """The view and what the page is made of, now."""
        view = await self.source.view()
        history = await self.history.get()
        return view, Snapshot(
            live=view.live,
            taken_at=view.taken_at,
            now=self.source.now(),
            healthy=self.source.healthy(),
            history=history,
        )

    async def built(self, public: bool) -> tuple[Snapshot, _Built]:
        """The page of the current view, built once per version (in a worker
        thread: a large estate takes a while)."""
        view, snap = await self.snapshot()
        history = snap.history
        key = (view.version, public, history.fetched_at, history.error)
        async with self._lock:
            found = self._built.get(key)
            if found is None:
                found = await asyncio.to_thread(self._build, snap, public)
                self.builds += 1
                if len(self._built) >= _KEPT:
                    self._built.pop(next(iter(self._built)))
                self._built[key] = found
        return snap, found

    def _build(self, snap: Snapshot, public: bool) -> _Built:
        live = snap.live
        topology, states = live.topology, live.states
        model = page_model(snap, public=public)
        parts_module: Any = self.env.get_template("_parts.html.j2").module
        parts = {
            name: str(getattr(parts_module, name)(model))
            for name in ("headline", "services", "incidents", "maneuvers")
        }
        shown = self.layout(topology, public)
        takes = {} if public else blast(live)
        not_up = states.not_up()

        def state(name: str) -> str:
            return str(not_up.get(name, State.UP))

        def classes(name: str) -> str:
            found = []
            if topology.node(name).critical:
                found.append("crit")
            if takes.get(name):
                found.append("root")
            return " ".join(found)

        def label(name: str) -> str:
            node = topology.node(name)
            said = f"{display_name(node, public)}{', critical' if node.critical else ''}: "
            said += state(name)
            taken = takes.get(name)
            if taken:
                said += f"; takes {len(taken)} node{'s' if len(taken) != 1 else ''} down"
            return said

        hot = [
            (name, member)
            for name, members in shown.needs.items()
            if not_up.get(name, State.UP) >= State.DEGRADED
            for member in members
            if not_up.get(member, State.UP) >= State.DEGRADED
        ]

        def key(name: str) -> str:
            return public_id(name) if public else name

        graph = drawing.svg(
            shown,
            key=key,
            state=state,
            classes=classes,
            label=label,
            name=lambda n: display_name(topology.node(n), public),
            hot=hot,
        )
        nodes = {key(name): str(s) for name, s in not_up.items() if name in shown.boxes}
        live_json = {
            "view": model["view"],
            "taken_at": snap.taken_at,
            "ready": live.ready,
            "topology": _digest(topology, public),
            "parts": parts,
            "nodes": nodes,
            "hot": drawing.hot_edges(shown, hot),
            "takes": {root: taken for root, taken in takes.items() if taken},
        }
        return _Built(model=model, parts=parts, graph=graph, live=live_json)


def _digest(topology: Topology, public: bool) -> str:
    """What changes when the picture must be drawn again (a reload)."""
    return f"{id(topology):x}{'p' if public else 'i'}"


def _public(request: Request) -> bool | Response:
    """`?view=public` or `?view=internal` (the default); 400 otherwise."""
    view = request.query_params.get("view", "internal")
    if view not in ("public", "internal"):
        message = f"expected view=public or view=internal, got {view!r}"
        return JSONResponse(
            {"problems": [{"file": None, "line": None, "path": "view", "message": message}]},
            status_code=400,
        )
    return view == "public"


def _json(value: Any) -> Response:
    return Response(
        json.dumps(value),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# The page before the daemon's first state reached the API process (a
# start, a restart of the API process): it reloads itself every 2 s.
_STARTING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="2"><title>Service status: starting</title></head>
<body><main><h1>Service status</h1>
<p role="status">The watchdog is starting and has no state to show yet.
This page reloads by itself.</p></main></body></html>
"""


def web_routes(source: Source, pages: Pages | None = None) -> list[Route]:
    """The status page's routes over `source` (the API's backend)."""
    site = pages if pages is not None else Pages(source)

    async def page(request: Request) -> Response:
        public = _public(request)
        if isinstance(public, Response):
            return public
        from watchdog.api import Busy  # the API imports these routes

        try:
            snap, built = await site.built(public)
        except Busy:
            # A person's browser, not a script: a page that says so and comes back.
            return HTMLResponse(
                _STARTING,
                status_code=503,
                headers={"Retry-After": "2", "Cache-Control": "no-store"},
            )
        topology = snap.live.topology
        html = site.env.get_template("page.html.j2").render(
            model=built.model,
            parts=built.parts,
            graph=built.graph,
            live=json.dumps({**built.live, "now": snap.now, "healthy": snap.healthy}),
            public=public,
            refresh_s=REFRESH_S,
            css=site.static_url("status.css"),
            js=site.static_url("status.js"),
            names=[] if public else list(topology.nodes),
            title="Service status" if public else f"watchdog: {_short(topology.source)}",
        )
        return HTMLResponse(
            html, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"}
        )

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        found = site.static.get(name)
        if found is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        content, digest = found
        headers = {"ETag": f'"{digest}"'}
        # With its digest in the URL, a file never changes: cache it for good.
        if request.query_params.get("v") == digest:
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            headers["Cache-Control"] = "no-cache"
        return Response(content, media_type=_STATIC_TYPES[name.rsplit(".", 1)[1]], headers=headers)

    async def data(request: Request) -> Response:
        public = _public(request)
        if isinstance(public, Response):
            return public
        _, built = await site.built(public)
        return _json(built.model)

    async def live(request: Request) -> Response:
        public = _public(request)
        if isinstance(public, Response):
            return public
        snap, built = await site.built(public)
        # Said with every answer: the page works out how old its data is
        # from these two, whatever its own clock says.
        return _json({**built.live, "now": snap.now, "healthy": snap.healthy})

    async def node(request: Request) -> Response:
        public = _public(request)
        if isinstance(public, Response):
            return public
        name = request.query_params.get("node", "")
        view = await site.source.view()
        topology = view.live.topology
        if public:
            # The public page names nodes by their public id.
            ids = {public_id(n): n for n in public_names(topology)}
            name = ids.get(name, "")
        if name not in topology or (public and not is_public(topology.node(name))):
            return Response("no such node on this page\n", status_code=404, media_type="text/plain")
        snap = Snapshot(view.live, view.taken_at, site.source.now(), site.source.healthy())
        html = await asyncio.to_thread(_details, site, snap, name, public)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def summary(request: Request) -> Response:
        public = _public(request)
        if isinstance(public, Response):
            return public
        _, snap = await site.snapshot()
        base = str(request.base_url).rstrip("/")
        url = f"{base}/?view=public" if public else f"{base}/"
        answer = await asyncio.to_thread(summary_json, snap, public=public, url=url)
        return _json(answer)

    return [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/v1/status-page", data),
        Route("/api/v1/status-page/live", live),
        Route("/api/v1/status-page/node", node),
        Route("/api/v1/summary.json", summary),
    ]


def _short(source: str) -> str:
    """A file's name without its folders: the page's title."""
    return source.replace("\\", "/").rsplit("/", 1)[-1]


def _details(site: Pages, snap: Snapshot, name: str, public: bool) -> str:
    """The details of one node: what it needs, what needs it, what it takes
    down and (internal) its probes' last results."""
    live = snap.live
    topology, states = live.topology, live.states
    node = topology.node(name)

    def entry(other: str) -> dict[str, Any]:
        return {
            "node": public_id(other) if public else other,
            "name": display_name(topology.node(other), public),
            "state": str(states[other]),
            "critical": topology.node(other).critical,
        }

    if public:
        shown = set(public_names(topology))
        needs = drawing.public_needs(topology, shown)
        groups = [
            {"via": "needs", "min": 1, "soft": False, "members": [entry(m)]} for m in needs[name]
        ]
        needed_by = [entry(n) for n in sorted(shown) if name in needs.get(n, ())]
        sentence = public_sentence(live, name, frozenset(shown))
        probes: list[dict[str, Any]] = []
        takes: list[dict[str, Any]] = []
    else:
        groups = [
            {
                "via": group.via,
                "min": group.min,
                "soft": group.soft,
                "members": [entry(m) for m in group.members],
            }
            for group in node.groups
        ]
        needed_by = [entry(n) for n in sorted(topology.dependents(name))]
        sentence = cause_sentence(live, name)
        probes = [
            {
                "probe": p.key,
                "kind": p.kind,
                "verdict": str(p.verdict),
                "last_state": str(p.last_state) if p.last_state is not None else "none yet",
                "last_reason": p.last_reason,
                "last_latency_s": p.last_latency_s,
                "last_at": p.last_at,
            }
            for p in live.status([name])[0].probes
        ]
        takes = [entry(n) for n in blast(live).get(name, []) if n != name]
    status = live.status([name])[0]
    return site.env.get_template("details.html.j2").render(
        node=entry(name),
        kind=node.kind,
        description="" if public else node.description,
        labels={} if public else dict(node.labels),
        sentence=sentence,
        since=status.since,
        now=snap.now,
        target=None if public else topology.recovery_target_s(name),
        groups=groups,
        needed_by=needed_by,
        probes=probes,
        takes=takes,
        public=public,
    )
