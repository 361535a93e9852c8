"""What the API answers from, and how it gets there. The API runs in a
process of its own (`watchdog.api_process`), so that building an answer for
ten thousand nodes never takes the probes' core. The daemon sends it
`Update`s: what changed since the last one (the whole state at a start or a
reload), a few times a second at most. The API process keeps a `Mirror` of
them and answers each request from a `View`, an immutable copy whose
effective states it works out itself from the observations (the same
engine, the same answer).

Everything here is plain data and pure functions: no network, no clock.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from topology import State, States, Topology, evaluate
from watchdog.latency import LatencyView
from watchdog.live import Drift, LiveView, ProbeStatus

__all__ = ["Mirror", "Update", "View", "merge", "metrics_text", "status_json"]

STATE_VALUES = "0 up, 1 unknown, 2 degraded, 3 down"


@dataclass(slots=True)
class Update:
    """What changed in the daemon, as of `taken_at`. With `full`, the whole
    state (a start, a reload, an API process started again); else only the
    nodes, probes, baselines and counters that changed, and the small parts
    whole (drift, log details, alerts, the other metrics' text)."""

    full: bool
    taken_at: float
    settled: bool
    ready: bool
    healthy: bool
    topology: Topology | None = None  # with `full` only
    probes_of: Mapping[str, tuple[str, ...]] | None = None  # with `full` only
    observed: dict[str, State] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    last: dict[str, ProbeStatus] = field(default_factory=dict)
    latency: dict[str, LatencyView | None] = field(default_factory=dict)
    results: dict[tuple[str, str, str], int] = field(default_factory=dict)
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)
    drift: tuple[Drift, ...] = ()
    logs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)
    alerts: tuple[dict[str, Any], ...] = ()
    # A replica of several: its name, role, the replicas alive (whole).
    cluster: dict[str, Any] | None = None
    # The daemon's other metrics as text and the outbox counts (sink,
    # state, count), about once a second; None: unchanged since the last.
    registry: bytes | None = None
    outbox: tuple[tuple[str, str, int], ...] | None = None


def merge(older: Update, newer: Update) -> Update:
    """One update saying what `older` then `newer` say (for a sender that
    holds updates the other side has not taken yet)."""
    if newer.full:
        return newer
    return replace(
        newer,
        full=older.full,
        topology=older.topology,
        probes_of=older.probes_of,
        observed={**older.observed, **newer.observed},
        since={**older.since, **newer.since},
        last={**older.last, **newer.last},
        latency={**older.latency, **newer.latency},
        results={**older.results, **newer.results},
        transitions={**older.transitions, **newer.transitions},
        registry=newer.registry if newer.registry is not None else older.registry,
        outbox=newer.outbox if newer.outbox is not None else older.outbox,
    )


@dataclass(frozen=True, slots=True)
class View:
    """The daemon's state as of one update, for building answers (any
    thread may read it)."""

    version: int
    taken_at: float
    received_at: float
    live: LiveView
    latency: Mapping[str, LatencyView]
    logs: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]
    alerts: Sequence[Mapping[str, Any]]
    cluster: Mapping[str, Any] | None
    results: Mapping[tuple[str, str, str], int]
    transitions: Mapping[tuple[str, str], int]
    registry: bytes | None  # None: not sent (ask the daemon)
    outbox: tuple[tuple[str, str, int], ...] | None


class Mirror:
    """The daemon's state as the API process knows it: the updates applied
    in order. Not thread-safe: one thread applies and copies."""

    def __init__(self) -> None:
        self.version = 0
        self.received_at: float | None = None
        self.update: Update | None = None  # the latest, for its flags
        self._topology: Topology | None = None
        self._probes_of: Mapping[str, tuple[str, ...]] = {}
        self._observed: dict[str, State] = {}
        self._since: dict[str, float] = {}
        self._last: dict[str, ProbeStatus] = {}
        self._latency: dict[str, LatencyView] = {}
        self._results: dict[tuple[str, str, str], int] = {}
        self._transitions: dict[tuple[str, str], int] = {}
        self._registry: bytes | None = None
        self._outbox: tuple[tuple[str, str, int], ...] | None = None

    @property
    def ready(self) -> bool:
        """The daemon has a topology and every probe has reported."""
        return self.update is not None and self.update.ready

    def apply(self, update: Update, at: float) -> None:
        """Take `update`, received at `at` (a monotonic clock)."""
        if update.full:
            self._topology = update.topology
            self._probes_of = update.probes_of or {}
            self._observed, self._since, self._last = {}, {}, {}
            self._latency, self._results, self._transitions = {}, {}, {}
        self._observed.update(update.observed)
        self._since.update(update.since)
        self._last.update(update.last)
        for key, view in update.latency.items():
            if view is None:
                self._latency.pop(key, None)
            else:
                self._latency[key] = view
        self._results.update(update.results)
        self._transitions.update(update.transitions)
        if update.registry is not None:
            self._registry = update.registry
        if update.outbox is not None:
            self._outbox = update.outbox
        self.update = update
        self.received_at = at
        self.version += 1

    def copy(self) -> tuple[int, Update, dict[str, Any]] | None:
        """What a `View` is made of, copied now (fast: references and
        dictionary copies); None before the first update."""
        update = self.update
        if update is None or self._topology is None or self.received_at is None:
            return None
        parts = {
            "topology": self._topology,
            "probes_of": self._probes_of,
            "observed": dict(self._observed),
            "since": dict(self._since),
            "last": dict(self._last),
            "latency": dict(self._latency),
            "results": dict(self._results),
            "transitions": dict(self._transitions),
            "received_at": self.received_at,
            "registry": self._registry,
            "outbox": self._outbox,
        }
        return self.version, update, parts


def view_of(version: int, update: Update, parts: Mapping[str, Any]) -> View:
    """The `View` of what `Mirror.copy` took: the effective states worked
    out from the observations (the daemon's own rule: before every probe
    has reported, nothing is concluded from them)."""
    topology: Topology = parts["topology"]
    observed: dict[str, State] = parts["observed"]
    basis = observed if update.settled else dict.fromkeys(observed, State.UNKNOWN)
    states: States = evaluate(topology, basis)
    live = LiveView(
        topology=topology,
        states=states,
        observed=observed,
        since=parts["since"],
        probes_of=parts["probes_of"],
        last=parts["last"],
        drift=update.drift,
        ready=update.ready,
    )
    return View(
        version=version,
        taken_at=update.taken_at,
        received_at=parts["received_at"],
        live=live,
        latency=parts["latency"],
        logs=update.logs,
        alerts=update.alerts,
        cluster=update.cluster,
        results=parts["results"],
        transitions=parts["transitions"],
        registry=parts["registry"],
        outbox=parts["outbox"],
    )


def status_json(
    view: View,
    *,
    nodes: Sequence[str] = (),
    states: Sequence[State] = (),
    critical: bool | None = None,
    private: bool = False,
) -> dict[str, Any]:
    """The `/api/v1/status` answer: the nodes that match every filter given
    (any of `nodes`, any of effective `states`, `critical` or not), with
    their probes; log samples redacted unless `private`."""
    live = view.live
    names: Iterable[str] = nodes if nodes else live.topology.nodes
    wanted = set(states)
    out = []
    for node in live.status(names):
        if wanted and node.effective not in wanted:
            continue
        if critical is not None and node.critical != critical:
            continue
        out.append(
            {
                "node": node.node,
                "kind": node.kind,
                "critical": node.critical,
                "observed": str(node.observed) if node.observed is not None else None,
                "effective": str(node.effective),
                "since": node.since,
                "causes": list(node.causes),
                "no_spare": node.no_spare,
                "probes": [_probe(view, p, private) for p in node.probes],
            }
        )
    drift = [
        {
            "node": d.node,
            "effective": str(d.effective),
            "causes": list(d.causes),
            "message": d.message,
        }
        for d in live.drift
    ]
    answer = {
        "source": live.topology.source,
        "ready": live.ready,
        "nodes": out,
        "drift": drift,
    }
    if view.cluster is not None:
        answer["cluster"] = dict(view.cluster)
    return answer


def _probe(view: View, p: ProbeStatus, private: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "probe": p.key,
        "kind": p.kind,
        "verdict": str(p.verdict),
        "last_state": str(p.last_state) if p.last_state is not None else None,
        "last_reason": p.last_reason,
        "last_latency_s": p.last_latency_s,
        "last_at": p.last_at,
    }
    if p.tls_expires_at is not None:
        # Days left as the probe's reasons count them: whole days, towards 0.
        out["tls_expires_at"] = _rfc3339(p.tls_expires_at)
        out["tls_days_left"] = int((p.tls_expires_at - view.taken_at) / 86400)
    latency = view.latency.get(p.key)
    if latency is not None:
        out["latency"] = latency.details()
    logged = view.logs.get(p.key)
    if logged is not None:
        out["log"] = dict(logged[1] if private else logged[0])
    return out


def metrics_text(view: View, extra: Callable[[], str] = str) -> bytes:
    """The families that change with every probe result, written from the
    view (node, probe result, transition and latency families), then
    `extra()` (metrics of the API process itself). Node names and probe
    keys need no escaping: the loader allows only letters, digits and
    `- _ . : / @` in names (keys add `#` and a number)."""
    live = view.live
    topology, states, observed = live.topology, live.states, live.observed
    lines: list[str] = []
    row = lines.append

    def head(name: str, help_text: str, kind: str = "gauge") -> None:
        row(f"# HELP {name} {help_text}")
        row(f"# TYPE {name} {kind}")

    head(
        "watchdog_node_effective_state",
        f"A node's state after propagation through the topology ({STATE_VALUES}).",
    )
    not_up = states.not_up()
    for name, node in topology.nodes.items():
        critical = "true" if node.critical else "false"
        value = float(not_up.get(name, State.UP))
        row(f'watchdog_node_effective_state{{critical="{critical}",node="{name}"}} {value}')
    head("watchdog_node_observed_state", f"A probed node's observed state ({STATE_VALUES}).")
    for name, seen in observed.items():
        row(f'watchdog_node_observed_state{{node="{name}"}} {float(seen)}')
    head(
        "watchdog_node_no_spare",
        "1 when a node is up but one failure away: a group is down to its minimum "
        "(only nodes with a group that has spares).",
    )
    spareless = states.no_spare
    for name, node in topology.nodes.items():
        if any(group.redundant for group in node.groups):
            row(f'watchdog_node_no_spare{{node="{name}"}} {1.0 if name in spareless else 0.0}')
    head(
        "watchdog_topology_drift",
        "1 when a node is probed up while the topology says it must be down.",
    )
    for drift in live.drift:
        row(f'watchdog_topology_drift{{node="{drift.node}"}} 1.0')
    head(
        "watchdog_probe_results_total",
        "Probe results by the state the probe reported.",
        "counter",
    )
    for (owner, probe, state), count in sorted(view.results.items()):
        labels = f'node="{owner}",probe="{probe}",state="{state}"'
        row(f"watchdog_probe_results_total{{{labels}}} {count}")
    head(
        "watchdog_transitions_total",
        "State changes of nodes, as probed (observed) or after propagation (effective); "
        "not the first state learned after a start.",
        "counter",
    )
    for (owner, view_name), count in sorted(view.transitions.items()):
        row(f'watchdog_transitions_total{{node="{owner}",view="{view_name}"}} {count}')
    # A timestamp, as blackbox_exporter's probe_ssl_earliest_cert_expiry: it
    # changes only with the certificate, and `... - time()` is the time left.
    head(
        "watchdog_probe_tls_expiry_timestamp_seconds",
        "When the certificate of an https probe's last run expires (its notAfter), "
        "in seconds since the epoch.",
    )
    for owner, keys in live.probes_of.items():
        for key in keys:
            last = live.last.get(key)
            if last is not None and last.tls_expires_at is not None:
                expiry = f'node="{owner}",probe="{key}"'
                at = _number(last.tls_expires_at)
                row(f"watchdog_probe_tls_expiry_timestamp_seconds{{{expiry}}} {at}")
    _latency(view, row)
    return ("\n".join(lines) + "\n").encode() + extra().encode()


def _latency(view: View, row: Callable[[str], None]) -> None:
    recent, usual, regressed = [], [], []
    for key, latency in sorted(view.latency.items()):
        p = latency.percentiles
        if p is None:
            continue  # no answer yet
        # Labels in name order, as prometheus_client writes them.
        labels = f'node="{latency.node}",probe="{key}"'
        for name, value in (("50", p.p50), ("95", p.p95), ("99", p.p99)):
            sample = f'node="{latency.node}",percentile="{name}",probe="{key}"'
            recent.append(f"watchdog_probe_latency_recent_seconds{{{sample}}} {_number(value)}")
        if latency.baseline_s is not None:
            usual.append(
                f"watchdog_probe_latency_baseline_seconds{{{labels}}} {_number(latency.baseline_s)}"
            )
        regressed.append(
            f"watchdog_probe_latency_regression{{{labels}}} {1.0 if latency.regression else 0.0}"
        )
    for name, help_text, rows in (
        (
            "watchdog_probe_latency_recent_seconds",
            "Percentiles (50, 95, 99) of a probe's latest answers (its window).",
            recent,
        ),
        (
            "watchdog_probe_latency_baseline_seconds",
            "The usual p95 latency of a probe, once learned.",
            usual,
        ),
        (
            "watchdog_probe_latency_regression",
            "1 while a probe's latency is well above its baseline.",
            regressed,
        ),
    ):
        row(f"# HELP {name} {help_text}")
        row(f"# TYPE {name} gauge")
        for line in rows:
            row(line)


def _rfc3339(epoch: float) -> str:
    """`epoch` as RFC 3339 in UTC: `2027-01-04T12:00:00Z`."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: float) -> str:
    """A sample value as Prometheus reads it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
