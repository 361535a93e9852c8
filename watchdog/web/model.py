"""What the status page says, as plain data: worked out from the API
process's snapshot (a `LiveView`) and the incident history, never from the
daemon's loop. The page's templates, `/api/v1/status-page`, the Statuspage
`summary.json` and `watchdog status` all read the same model, so a state,
a sentence or an uptime figure is worded once.

Two views: `internal` (every node, root causes, probes, recovery targets,
who started a maneuver and why) and `public` (only the nodes labelled
`status_page: public`, under their `status_page_name` if they have one,
with public sentences that name no other node, no probe, no host, no
person). Pure: no clock (`now` is given), no network.
"""

from __future__ import annotations

import datetime
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from topology import State, Topology, format_duration
from topology.model import Node
from watchdog.live import LiveView, NodeStatus

__all__ = [
    "DAY_DEGRADED",
    "DAY_DOWN",
    "DAY_S",
    "DAY_UP",
    "HISTORY_DAYS",
    "OTHERS_SHOWN",
    "PUBLIC_LABEL",
    "PUBLIC_NAME_LABEL",
    "PUBLIC_VALUE",
    "History",
    "Snapshot",
    "Uptime",
    "blast",
    "cause_sentence",
    "component_status",
    "display_name",
    "is_public",
    "left",
    "page_model",
    "public_id",
    "public_names",
    "public_sentence",
    "rfc3339",
    "summary_json",
    "uptime",
    "when",
]

# The label that puts a node on the public page, and the one that names it
# there (a node's own name may say more than customers should read).
PUBLIC_LABEL = "status_page"
PUBLIC_VALUE = "public"
PUBLIC_NAME_LABEL = "status_page_name"

HISTORY_DAYS = 90
DAY_S = 86400.0
# Non-critical services in trouble listed on the internal page, worst first;
# past these they are counted (a farm takes hundreds down: the outages by
# root cause and the picture show them).
OTHERS_SHOWN = 50

# One character per day in `Uptime.days`.
DAY_UP, DAY_DEGRADED, DAY_DOWN = "u", "d", "x"

_WORDS = {State.UP: "up", State.UNKNOWN: "unknown", State.DEGRADED: "degraded", State.DOWN: "down"}


@dataclass(frozen=True, slots=True)
class History:
    """What only the daemon's store knows, as of `fetched_at` (None: not
    fetched yet): the incidents open at any time in the last HISTORY_DAYS
    (as `/api/v1/incidents` gives them) and the maneuvers (as
    `/api/v1/maneuvers`); `error` says why the latest fetch failed."""

    incidents: Sequence[Mapping[str, Any]] = ()
    maneuvers: Sequence[Mapping[str, Any]] = ()
    fetched_at: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the page is made from: the live view as of `taken_at`
    (the daemon's time of the update), `now`, whether the daemon was heard
    from lately (`healthy`), and the history."""

    live: LiveView
    taken_at: float
    now: float
    healthy: bool = True
    history: History = field(default_factory=History)


@dataclass(frozen=True, slots=True)
class Uptime:
    """A node's record over `window_s`: the share of it not down (percent,
    rounded down to two decimals, so that any downtime shows), the
    downtime, how many incidents touched the window, and one character per
    day, oldest first: `u` no incident, `d` degraded at worst, `x` down."""

    percent: float
    downtime_s: float
    incidents: int
    days: str

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of the status-page answer."""
        return {
            "percent": self.percent,
            "downtime_s": round(self.downtime_s, 3),
            "incidents": self.incidents,
            "days": self.days,
        }


def is_public(node: Node) -> bool:
    """The node is labelled for the public page (`status_page: public`)."""
    return node.labels.get(PUBLIC_LABEL) == PUBLIC_VALUE


def public_names(topology: Topology) -> list[str]:
    """The nodes labelled for the public page, in name order."""
    return [name for name, node in topology.nodes.items() if is_public(node)]


def display_name(node: Node, public: bool) -> str:
    """How the page names `node`: its `status_page_name` label on the
    public page when it has one, else its name."""
    if public:
        return node.labels.get(PUBLIC_NAME_LABEL) or node.name
    return node.name


def rfc3339(epoch: float) -> str:
    """`epoch` as RFC 3339 in UTC, to the second: `2026-12-05T10:00:00Z`."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _names(names: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _own_reason(live: LiveView, name: str) -> str:
    """Why a node failed on its own: the last reason of its worst probe."""
    worst = None
    for key in live.probes_of.get(name, ()):
        probe = live.last.get(key)
        if probe is not None and (worst is None or probe.verdict > worst.verdict):
            worst = probe
    return worst.last_reason if worst is not None and worst.last_reason else ""


def cause_sentence(live: LiveView, name: str) -> str:
    """The root-cause sentence of the internal page, from the engine's
    causes as `/api/v1/status` gives them: `down because farm-oms-1 is
    down`, `degraded because kv-a is down and kv-b is degraded`, `down:
    connect refused` (its own probes), `up`, `up, but one failure away:
    lost its last spare`, `unknown: no result yet`."""
    states = live.states
    state = states[name]
    if state == State.UP:
        if name in states.no_spare:
            return "up, but one failure away: lost its last spare"
        return "up"
    if state == State.UNKNOWN:
        reason = _own_reason(live, name)
        return f"unknown: {reason}" if reason else "unknown: no result yet"
    causes = [c for c in states.causes(name) if c != name]
    if not causes:
        reason = _own_reason(live, name)
        return f"{state}: {reason}" if reason else f"{state} on its own"
    by_state: dict[State, list[str]] = {}
    for cause in causes:
        by_state.setdefault(states[cause], []).append(cause)
    parts = []
    for cause_state in sorted(by_state, reverse=True):
        group = by_state[cause_state]
        verb = "is" if len(group) == 1 else "are"
        parts.append(f"{_names(group)} {verb} {cause_state}")
    return f"{state} because {' and '.join(parts)}"


def component_status(live: LiveView, name: str) -> str:
    """The node's Statuspage component status: `operational` (up or not
    known yet), `degraded_performance` (degraded), `partial_outage`
    (degraded because something it needs is down: a part of it does not
    work) or `major_outage` (down)."""
    states = live.states
    state = states[name]
    if state == State.DOWN:
        return "major_outage"
    if state == State.DEGRADED:
        if any(states[c] == State.DOWN for c in states.causes(name) if c != name):
            return "partial_outage"
        return "degraded_performance"
    return "operational"


_PUBLIC_WORDS = {
    "operational": "Operational",
    "degraded_performance": "Degraded performance: working, but slower or with errors",
    "partial_outage": "Partial outage: some features do not work",
    "major_outage": "Major outage: not working",
}


def public_sentence(live: LiveView, name: str, public: frozenset[str]) -> str:
    """The sentence of the public page: what the state means to a
    customer, naming a cause only when that cause is a public node itself
    (`Major outage: not working, because Search is down`); never a host,
    a farm, a probe or a reason."""
    states = live.states
    if states[name] == State.UNKNOWN:
        return "No data yet"
    words = _PUBLIC_WORDS[component_status(live, name)]
    if states[name] < State.DEGRADED:
        return words
    topology = live.topology
    shown = sorted(
        display_name(topology.node(c), True) for c in _public_causes(topology, live, name, public)
    )
    if not shown:
        return words
    verb = "is" if len(shown) == 1 else "are"
    return f"{words}, because {_names(shown)} {verb} not working normally"


def _public_causes(
    topology: Topology, live: LiveView, name: str, public: frozenset[str]
) -> list[str]:
    """The public nodes, other than `name`, that it needs (through any
    chain) and that are failed: what a customer may be told is the cause."""
    states = live.states
    return [
        other
        for other in topology.downstream_of(name)
        if other in public and other != name and states[other] >= State.DEGRADED
    ]


def uptime(
    incidents: Iterable[Mapping[str, Any]],
    now: float,
    days: int = HISTORY_DAYS,
) -> Uptime:
    """A node's uptime over the `days` days (of 24 h) up to `now`, from its
    incidents as the store gives them (`started_at`, `ended_at` or None
    while open, `worst`). An incident that reached `down` counts as down
    for its whole length (the store keeps the worst state, not when it was
    reached); overlapping ones count once; degraded ones cost no uptime but
    mark their days. Days without a record count as up."""
    start = now - days * DAY_S
    marks = [0] * days  # 0 up, 1 degraded, 2 down
    down: list[tuple[float, float]] = []
    count = 0
    for incident in incidents:
        begin = max(float(incident["started_at"]), start)
        ended = incident.get("ended_at")
        end = min(now if ended is None else float(ended), now)
        if end < begin:
            continue
        count += 1
        is_down = incident.get("worst") == "down"
        mark = 2 if is_down else 1
        first = min(days - 1, int((begin - start) // DAY_S))
        last = min(days - 1, int((end - start) // DAY_S))
        for day in range(first, last + 1):
            marks[day] = max(marks[day], mark)
        if is_down and end > begin:
            down.append((begin, end))
    downtime = 0.0
    reach = -math.inf
    for begin, end in sorted(down):
        if end <= reach:
            continue
        downtime += end - max(begin, reach)
        reach = end
    window = days * DAY_S
    percent = 100.0 if downtime <= 0 else math.floor(10_000 * (1 - downtime / window)) / 100
    text = "".join((DAY_UP, DAY_DEGRADED, DAY_DOWN)[m] for m in marks)
    return Uptime(percent=max(0.0, percent), downtime_s=downtime, incidents=count, days=text)


def blast(live: LiveView) -> dict[str, list[str]]:
    """Each failed root cause and the nodes it takes down or degrades
    (critical first, then by name): the blast radius the page draws
    around a failed node. A node with two root causes is under each."""
    states, topology = live.states, live.topology
    takes: dict[str, list[str]] = {}
    for name in states.not_up():
        if states[name] < State.DEGRADED:
            continue
        for cause in states.causes(name):
            entry = takes.setdefault(cause, [])
            if cause != name:
                entry.append(name)
    for nodes in takes.values():
        nodes.sort(key=lambda n: (not topology.node(n).critical, n))
    return takes


def _open_starts(history: History) -> dict[str, float]:
    """When each node's open incident started, by the store."""
    return {
        str(i["node"]): float(i["started_at"]) for i in history.incidents if i["ended_at"] is None
    }


def _by_node(history: History) -> dict[str, list[Mapping[str, Any]]]:
    found: dict[str, list[Mapping[str, Any]]] = {}
    for incident in history.incidents:
        found.setdefault(str(incident["node"]), []).append(incident)
    return found


def _failed_since(status: NodeStatus, open_starts: Mapping[str, float]) -> float:
    """When a failed node's outage started: its open incident's start by the
    store when that is earlier (degraded, then down, is one outage), else
    the last change of its effective state."""
    started = open_starts.get(status.node)
    return min(started, status.since) if started is not None else status.since


def _service(
    snapshot: Snapshot,
    status: NodeStatus,
    public: frozenset[str] | None,
    history: Mapping[str, list[Mapping[str, Any]]],
    open_starts: Mapping[str, float],
) -> dict[str, Any]:
    """One service of the page; `public` is the set of public nodes on the
    public view, None on the internal one."""
    live, now = snapshot.live, snapshot.now
    node = live.topology.node(status.node)
    failed = status.effective >= State.DEGRADED
    since = _failed_since(status, open_starts) if failed else status.since
    entry: dict[str, Any] = {
        # On the public page, an opaque id: the node's own name may say more
        # than its public one.
        "node": public_id(status.node) if public is not None else status.node,
        "name": display_name(node, public is not None),
        "critical": status.critical,
        "state": str(status.effective),
        "status": component_status(live, status.node),
        "since": since,
    }
    if public is None:
        target = live.topology.recovery_target_s(status.node)
        entry.update(
            kind=status.kind,
            sentence=cause_sentence(live, status.node),
            causes=[c for c in status.causes if c != status.node],
            recovery_target_s=target,
            # Negative: the outage has outlived its recovery target.
            left_s=(target - (now - since)) if failed else None,
        )
    else:
        entry["sentence"] = public_sentence(live, status.node, public)
    if snapshot.history.fetched_at is not None:
        known = list(history.get(status.node, ()))
        if failed and status.node not in open_starts:
            # Failing now, but not in the history yet (the store writes a
            # moment later, the history is fetched every few seconds): the
            # outage going on counts all the same.
            known.append({"started_at": since, "ended_at": None, "worst": str(status.effective)})
        entry["uptime"] = uptime(known, now).to_json()
    else:
        entry["uptime"] = None
    return entry


def _order(entry: Mapping[str, Any]) -> tuple[bool, int, str]:
    """Critical first, then the worst state, then by name."""
    return (not entry["critical"], -int(State.parse(entry["state"])), entry["name"].casefold())


def _incidents(
    snapshot: Snapshot, public: frozenset[str] | None, open_starts: Mapping[str, float]
) -> list[dict[str, Any]]:
    """The outages going on now, one per root cause on the internal view
    (with the critical nodes and the others it takes down, as alerts
    group them); on the public view one per set of public nodes failing
    for the same causes, named by those nodes only."""
    live = snapshot.live
    states, topology = live.states, live.topology
    out: list[dict[str, Any]] = []
    if public is None:
        for root, taken in blast(live).items():
            status = live.status([root])[0]
            since = _failed_since(status, open_starts)
            for name in taken:
                since = min(since, open_starts.get(name, since))
            out.append(
                {
                    "root": root,
                    "state": str(states[root]),
                    "since": since,
                    "sentence": f"{root} {cause_sentence(live, root)}",
                    "critical": [n for n in taken if topology.node(n).critical]
                    + ([root] if topology.node(root).critical else []),
                    "others": [n for n in taken if not topology.node(n).critical],
                }
            )
        out.sort(key=lambda i: (-len(i["critical"]), -State.parse(i["state"]), i["since"]))
        return out
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in sorted(public):
        if states[name] >= State.DEGRADED:
            groups.setdefault(states.causes(name), []).append(name)
    for causes, names in groups.items():
        worst = max(states[n] for n in names)
        shown = sorted(display_name(topology.node(n), True) for n in names)
        heading = "Major outage" if worst == State.DOWN else "Degraded performance"
        since = min(_failed_since(s, open_starts) for s in live.status(names))
        out.append(
            {
                # An opaque, stable id: the root causes are not for customers.
                "id": _opaque("incident:" + ",".join(causes)),
                "state": str(worst),
                "since": since,
                "name": f"{heading}: {_names(shown)}",
                "sentence": public_sentence(live, names[0], public)
                if len(names) == 1
                else _PUBLIC_WORDS[
                    "major_outage" if worst == State.DOWN else "degraded_performance"
                ],
                "nodes": [public_id(n) for n in names],
                "critical": any(topology.node(n).critical for n in names),
            }
        )
    out.sort(key=lambda i: (not i["critical"], -State.parse(i["state"]), i["since"]))
    return out


def _maneuvers(snapshot: Snapshot, public: frozenset[str] | None) -> list[dict[str, Any]]:
    """The maneuvers in progress: on the internal view with who started
    them and why; on the public view only those that touch a public node,
    as maintenance of those nodes, with no person or reason."""
    out = []
    topology = snapshot.live.topology
    for maneuver in snapshot.history.maneuvers:
        if maneuver.get("state") != "running":
            continue
        actions = maneuver.get("actions") or []
        impacted = [str(i["node"]) for i in (maneuver.get("impact") or {}).get("impacted", [])]
        touched = [str(a["node"]) for a in actions] + impacted
        if public is None:
            out.append(
                {
                    "id": maneuver["id"],
                    "what": ", ".join(f"{a['action']} {a['node']}" for a in actions),
                    "by": maneuver.get("by", ""),
                    "reason": maneuver.get("reason", ""),
                    "started_at": maneuver.get("started_at"),
                    "verdict": maneuver.get("verdict", ""),
                    "forced": bool(maneuver.get("forced")),
                    "impacted": impacted,
                }
            )
            continue
        nodes = sorted({n for n in touched if n in public and n in topology})
        if not nodes:
            continue
        shown = sorted(display_name(topology.node(n), True) for n in nodes)
        out.append(
            {
                "id": _opaque(f"maneuver:{maneuver['id']}"),
                "name": f"Maintenance: {_names(shown)} may be affected",
                "started_at": maneuver.get("started_at"),
                "nodes": [public_id(n) for n in nodes],
            }
        )
    return out


def public_id(name: str) -> str:
    """How the public page and summary name a node: an opaque, stable id
    (its own name may say more than its public one)."""
    return _opaque(f"component:{name}")


def _opaque(text: str) -> str:
    """A short, stable id that does not show what it was made from."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _headline(
    snapshot: Snapshot, services: Sequence[Mapping[str, Any]], public: bool
) -> dict[str, str]:
    """The one sentence at the top, and its level (none, minor, major,
    critical, as Statuspage's indicator)."""
    if not snapshot.live.ready:
        return {
            "indicator": "none",
            "text": "Still gathering the first results: states are not known yet",
        }
    if public:
        return _public_headline(services)
    critical_down = [s["name"] for s in services if s["critical"] and s["state"] == "down"]
    critical_degraded = [s["name"] for s in services if s["critical"] and s["state"] == "degraded"]
    others = [s for s in services if not s["critical"] and s["state"] in ("down", "degraded")]
    if critical_down:
        n = len(critical_down)
        text = f"{n} critical service{'s' if n != 1 else ''} down: {_names(critical_down)}"
        return {"indicator": "critical", "text": text}
    if critical_degraded:
        n = len(critical_degraded)
        text = f"{n} critical service{'s' if n != 1 else ''} degraded: {_names(critical_degraded)}"
        return {"indicator": "major", "text": text}
    if others:
        n = len(others)
        text = f"Every critical service is up; {n} other service{'s' if n != 1 else ''} in trouble"
        return {"indicator": "minor", "text": text}
    return {"indicator": "none", "text": "Every service is up"}


def _public_headline(services: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The public page's headline: what is not working, in customers' words."""
    down = [s["name"] for s in services if s["state"] == "down"]
    degraded = [s["name"] for s in services if s["state"] == "degraded"]
    if down:
        critical = any(s["critical"] for s in services if s["state"] == "down")
        indicator = "critical" if critical else "major"
        return {"indicator": indicator, "text": f"Major outage: {_names(down)}"}
    if degraded:
        return {"indicator": "minor", "text": f"Degraded performance: {_names(degraded)}"}
    return {"indicator": "none", "text": "All systems operational"}


def page_model(snapshot: Snapshot, *, public: bool = False) -> dict[str, Any]:
    """The status page as data (`/api/v1/status-page`, the page's
    templates, `watchdog status`): the headline, the services (internal:
    every critical node, then the other nodes in trouble; public: every
    public node), critical first and the worst first, each with its state,
    since when, its sentence, recovery target and time left (internal),
    and its uptime over HISTORY_DAYS days; the outages going on now; the
    maneuvers in progress."""
    live = snapshot.live
    topology = live.topology
    shown_public = frozenset(public_names(topology)) if public else None
    if shown_public is not None:
        names: list[str] = sorted(shown_public)
    else:
        failing = live.states.not_up()
        names = [
            name
            for name, node in topology.nodes.items()
            if node.critical or failing.get(name, State.UP) >= State.DEGRADED
        ]
    history = _by_node(snapshot.history)
    open_starts = _open_starts(snapshot.history)
    others_hidden = 0
    if shown_public is None:
        # The others in trouble past OTHERS_SHOWN (worst first) are counted only.
        others = [n for n in names if not topology.node(n).critical]
        if len(others) > OTHERS_SHOWN:
            others.sort(key=lambda n: (-live.states[n], n))
            kept = set(others[:OTHERS_SHOWN])
            others_hidden = len(others) - OTHERS_SHOWN
            names = [n for n in names if topology.node(n).critical or n in kept]
    services = [
        _service(snapshot, status, shown_public, history, open_starts)
        for status in live.status(names)
    ]
    services.sort(key=_order)
    model: dict[str, Any] = {
        "view": "public" if public else "internal",
        "taken_at": snapshot.taken_at,
        "now": snapshot.now,
        "ready": live.ready,
        "healthy": snapshot.healthy,
        "headline": _headline(snapshot, services, public),
        "services": services,
        "incidents": _incidents(snapshot, shown_public, open_starts),
        "maneuvers": _maneuvers(snapshot, shown_public),
        "history": {
            "days": HISTORY_DAYS,
            "fetched_at": snapshot.history.fetched_at,
            "error": snapshot.history.error,
        },
    }
    if not public:
        model["others_not_shown"] = others_hidden
        model["source"] = topology.source
        model["nodes"] = len(topology)
        model["critical"] = sum(1 for node in topology.nodes.values() if node.critical)
    return model


_INDICATOR_TEXT = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}


def summary_json(
    snapshot: Snapshot, *, public: bool, url: str, name: str = "Service status"
) -> dict[str, Any]:
    """Atlassian Statuspage's `summary.json` (API v2) for this estate, so
    that widgets made for Statuspage can read it: `page`, `components`
    (public: the public nodes; internal: every node, critical first) with
    `status` operational | degraded_performance | partial_outage |
    major_outage, unresolved `incidents` (the outages going on now, as
    the page groups them), `scheduled_maintenances` (the maneuvers in
    progress) and `status` with `indicator` none | minor | major | critical
    and its `description`. Ids of the public view are opaque."""
    live = snapshot.live
    topology = live.topology
    updated = rfc3339(snapshot.taken_at)
    page_id = _opaque("page:" + ("public" if public else topology.source))
    page = {"id": page_id, "name": name, "url": url, "time_zone": "Etc/UTC", "updated_at": updated}
    shown = public_names(topology) if public else list(topology.nodes)
    shown.sort(
        key=lambda n: (
            not topology.node(n).critical,
            display_name(topology.node(n), public).casefold(),
        )
    )

    def ident(node: str) -> str:
        return public_id(node) if public else node

    components = []
    # By id (the name on the internal view), and which ids are critical.
    by_node: dict[str, dict[str, Any]] = {}
    critical: set[str] = set()
    for position, status in enumerate(live.status(shown), 1):
        node = topology.node(status.node)
        component = {
            "id": ident(status.node),
            "name": display_name(node, public),
            "status": component_status(live, status.node),
            "created_at": updated,
            "updated_at": rfc3339(status.since),
            "position": position,
            "description": None if public else (node.description or None),
            "showcase": True,
            "start_date": None,
            "group_id": None,
            "page_id": page_id,
            "group": False,
            "only_show_if_degraded": False,
        }
        components.append(component)
        by_node[ident(status.node)] = component
        if node.critical:
            critical.add(ident(status.node))
    open_starts = _open_starts(snapshot.history)
    shown_public = frozenset(shown) if public else None
    incidents = []
    worst = "none"
    for outage in _incidents(snapshot, shown_public, open_starts):
        nodes = (
            outage["nodes"] if public else [outage["root"], *outage["critical"], *outage["others"]]
        )
        affected = [by_node[n] for n in dict.fromkeys(nodes) if n in by_node]
        critical_down = any(c["id"] in critical and c["status"] == "major_outage" for c in affected)
        impact = "critical" if critical_down else "major" if outage["state"] == "down" else "minor"
        ident_ = outage["id"] if public else f"outage-{outage['root']}"
        name_ = outage["name"] if public else f"{outage['root']} {outage['state']}"
        started = rfc3339(outage["since"])
        incidents.append(
            {
                "id": ident_,
                "name": name_,
                "status": "investigating",
                "created_at": started,
                "updated_at": updated,
                "monitoring_at": None,
                "resolved_at": None,
                "impact": impact,
                "shortlink": url,
                "started_at": started,
                "page_id": page_id,
                "incident_updates": [
                    {
                        "id": f"{ident_}-1",
                        "status": "investigating",
                        "body": outage["sentence"],
                        "incident_id": ident_,
                        "created_at": started,
                        "updated_at": updated,
                        "display_at": started,
                        "affected_components": [
                            {
                                "code": c["id"],
                                "name": c["name"],
                                "old_status": "operational",
                                "new_status": c["status"],
                            }
                            for c in affected
                        ],
                        "deliver_notifications": False,
                        "custom_tweet": None,
                        "tweet_id": None,
                    }
                ],
                "components": affected,
            }
        )
    maintenances = []
    for maneuver in _maneuvers(snapshot, shown_public):
        started = rfc3339(float(maneuver["started_at"] or snapshot.taken_at))
        ident_ = maneuver["id"] if public else f"maneuver-{maneuver['id']}"
        if public:
            name_, body, nodes = maneuver["name"], maneuver["name"], maneuver["nodes"]
        else:
            name_ = maneuver["what"]
            body = f"{maneuver['what']} by {maneuver['by']}" + (
                f": {maneuver['reason']}" if maneuver["reason"] else ""
            )
            nodes = maneuver["impacted"]
        maintenances.append(
            {
                "id": ident_,
                "name": name_,
                "status": "in_progress",
                "created_at": started,
                "updated_at": updated,
                "monitoring_at": None,
                "resolved_at": None,
                "impact": "maintenance",
                "shortlink": url,
                "started_at": started,
                "page_id": page_id,
                "incident_updates": [
                    {
                        "id": f"{ident_}-1",
                        "status": "in_progress",
                        "body": body,
                        "incident_id": ident_,
                        "created_at": started,
                        "updated_at": updated,
                        "display_at": started,
                        "affected_components": [],
                        "deliver_notifications": False,
                        "custom_tweet": None,
                        "tweet_id": None,
                    }
                ],
                "components": [by_node[n] for n in nodes if n in by_node],
                "scheduled_for": started,
                "scheduled_until": None,
            }
        )
    for ident_, component in by_node.items():
        level = _level(str(component["status"]), ident_ in critical)
        if _LEVELS.index(level) > _LEVELS.index(worst):
            worst = level
    description = _INDICATOR_TEXT[worst]
    if not live.ready:
        description = "Checking: not every service has reported yet"
    elif not snapshot.healthy:
        description = f"{description} (may be out of date: the watchdog is not answering)"
    return {
        "page": page,
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": maintenances,
        "status": {"indicator": worst, "description": description},
    }


_LEVELS = ("none", "minor", "major", "critical")


def _level(status: str, critical: bool) -> str:
    """A component's share of the page's indicator: a critical node down is
    critical; any other node down, any node partly down and a critical
    node degraded are major; another node degraded is minor."""
    if status == "major_outage":
        return "critical" if critical else "major"
    if status == "partial_outage":
        return "major"
    if status == "degraded_performance":
        return "major" if critical else "minor"
    return "none"


def when(epoch: float | None, now: float) -> str:
    """`12:04:10 UTC` today, `2026-12-04 12:04 UTC` another day; `-` for none."""
    if epoch is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    today = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
    if moment.date() == today:
        return moment.strftime("%H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def left(left_s: float | None, target_s: float) -> str:
    """`4m50s left of 10m`, `over by 2m (target 10m)`, or the target alone."""
    target = format_duration(target_s)
    if left_s is None:
        return f"recovery target {target}"
    if left_s >= 0:
        return f"{format_duration(max(1.0, round(left_s)))} left of {target}"
    return f"over by {format_duration(max(1.0, round(-left_s)))} (target {target})"
