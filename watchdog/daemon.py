"""The daemon: the composition root that builds everything and wires it
together. Probe results become observations, observations become effective
states and transitions, transitions are stored and counted, and the API
shows it all. Nothing imports this module but the CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from alerts.delivery import Delivery
from alerts.memory_outbox import MemoryOutbox
from alerts.model import Alert, Notification, Sink, SinkError
from alerts.routing import Router
from alerts.rules import Alerting, Policy
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.console import ConsoleSink
from alerts.sinks.slack import SlackSink, SlackWebhookSink
from alerts.sinks.webhook import WebhookSink
from alerts.templates import Templates
from alerts.transitions import Transition
from topology import Action, InvalidInput, State, format_duration
from topology.findings import Finding
from watchdog.alert_state import AlertState
from watchdog.api import TOKEN_ENV, Reload
from watchdog.api_link import ApiLink, CallError, Settings
from watchdog.cluster import (
    LEASE,
    Coordinator,
    Heartbeat,
    Observation,
    Observations,
    Standing,
    reconcile_incidents,
    shard,
)
from watchdog.config import AlertsConfig, DaemonConfig, ProbeConfig, load_config
from watchdog.db import Transaction
from watchdog.http_server import ApiLimits
from watchdog.importing import fetch
from watchdog.latency_watch import LatencyWatch
from watchdog.lease import Lease
from watchdog.live import LiveState
from watchdog.logs import Secrets
from watchdog.maneuvers import ManeuverError, Maneuvers
from watchdog.metrics import Metrics
from watchdog.observed import ObservedError, observed_findings, undeclared_alerts
from watchdog.outbox import Outbox
from watchdog.placement import PlacementChange, new_shared_fate, placement_changes
from watchdog.preflight import TEMPLATED, preflight
from watchdog.probe_state import Preloaded, ProbeState
from watchdog.probes import PROBE_KINDS, HttpClients, HttpSpec, Probe, ProbeResult
from watchdog.probes.log import LogProbe, LogSpec
from watchdog.probes.result import inconclusive
from watchdog.scheduler import ProbeScheduler
from watchdog.selfcheck import Impairment, LoopMonitor
from watchdog.silences import Silence, SilenceError, Silences
from watchdog.snapshot import Update
from watchdog.store import LeaseLost, Store, StoreError
from watchdog.stored import Stored, on_worker, threaded, worker

__all__ = ["Daemon", "StartError"]

log = logging.getLogger(__name__)
# State changes, one line each: never held back by the log's flood limit.
transitions_log = logging.getLogger("watchdog.transitions")

# How often, at least, the probes of a node a running maneuver impacts run.
WATCH_INTERVAL_S = 5.0
# How often what probes learned is saved (and at every clean stop).
SAVE_INTERVAL_S = 300.0
# SIGTERM to exit, whatever the load: systemd's default stop timeout is 90 s,
# but an operator's Ctrl-C should not wait.
STOP_S = 4.0
# Non-critical nodes going down (or up) together for one cause are logged
# one by one up to this many, then in one line.
_TOLD_ONE_BY_ONE = 10
# How often the calls Prometheus saw are compared with the topology.
OBSERVED_S = 300.0
# How often a daemon without live sources looks whether a reload added one.
SOURCES_IDLE_S = 60.0
# How often, at most, the API process is told what changed; and at least
# (its /-/healthy hears the daemon's loop through these).
PUBLISH_S = 0.25
HEARTBEAT_S = 1.0
# An alert round works out root causes this many failing nodes per turn of
# the loop (a few milliseconds), for at most this many turns; what is left
# is done at once.
PREPARE_SLICE = 100
PREPARE_TURNS = 400
# A replica's roles (`cluster:`); a daemon on its own is "solo".
SOLO, HOLDER, FOLLOWER, ALONE = "solo", "holder", "follower", "alone"
# A holder that cannot renew gives the lease's duties up after this share
# of the lease (its clock and the database's may drift apart).
STEP_DOWN_SHARE = 0.75
# How often sharded replicas exchange their probes' results, at most; a
# result that says what the last one written said is written again only
# this often (the others' "last run" of it is that old at worst).
EXCHANGE_S = 1.0
REWRITE_S = 60.0


class StartError(Exception):
    """The file is valid but the daemon cannot start as it says (a secret
    missing from the environment)."""


def _secret(variable: str, path: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise StartError(f"{path}: the environment variable {variable} is not set or empty")
    return value


# Header names whose values are credentials.
_SECRET_HEADERS = ("auth", "token", "key", "secret", "cookie", "session", "password")
# Shorter query values are not masked in the log: they would mask words.
_MIN_MASKED = 6


def _url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: its password and its query's values."""
    try:
        parts = urllib.parse.urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return []
    found += [v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= _MIN_MASKED]
    return [v for v in found if v]


def _config_secrets(config: DaemonConfig) -> list[str]:
    """What the file holds that the log must never show: URL passwords and
    tokens, credential headers of HTTP probes."""
    found: list[str] = []
    alerts = config.alerts
    for url in (
        alerts.alertmanager_url,
        *alerts.alertmanager_peers,
        alerts.webhook_url,
        alerts.heartbeat_url,
    ):
        if url:
            found += _url_secrets(url)
    for probe in config.probes:
        if isinstance(probe.spec, HttpSpec):
            found += _url_secrets(probe.spec.url)
            for name, value in probe.spec.headers.items():
                if any(word in name.lower() for word in _SECRET_HEADERS):
                    found.append(value)
                    scheme, _, credential = value.partition(" ")
                    if credential and scheme.lower() in ("bearer", "basic", "token"):
                        found.append(credential)
    return found


def _alert_json(alert: Alert) -> dict[str, Any]:
    """An alert in force, as /api/v1/alerts shows it."""
    return {
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "root_cause": list(alert.root_cause),
        "summary": alert.summary,
        "started_at": alert.started_at,
        "critical": [i.node for i in alert.critical],
        "collateral": len(alert.collateral),
    }


def _critical(alert: Alert) -> bool:
    """Whether `alert` is about a critical node: what a replica that cannot
    reach the store still sends on its own."""
    return bool(alert.critical) or alert.severity == "critical"


def _log_transition(level: int, t: Transition) -> None:
    transitions_log.log(
        level,
        "transition node=%s %s -> %s cause=%s",
        t.node,
        t.old,
        t.new,
        ",".join(t.root_cause) or "-",
    )


def _loopback(host: str) -> bool:
    """Whether `host` is this machine only (a name is taken at its word)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Daemon:
    """One estate watched: built from a file, run until told to stop.

    Everything with state comes in or is built here: the clock, the metrics
    registry, the store, the HTTP clients, the scheduler. `run()` binds the
    API on `config.server` (or `listen`), serves it from a process of its own
    (`watchdog.api_link`) and returns after SIGTERM/SIGINT or `stop()`,
    within `STOP_S`, having finished its writes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
        listen: tuple[str, int] | None = None,
        secrets: Secrets | None = None,
        log_format: str = "text",
        replica: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.log_format = log_format  # the console sink writes alerts in it too
        self.config: DaemonConfig = load_config(self.path, fetch)  # InvalidInput for a bad file
        # What the log masks: every secret read from the environment or the file.
        self.secrets = secrets if secrets is not None else Secrets()
        for value in _config_secrets(self.config):
            self.secrets.add(value)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry, detail=self.config.server.metrics_detail)
        self.live = LiveState(self.config.topology, self.config.probes, clock)
        self.listen = listen or (self.config.server.host, self.config.server.port)
        cluster = self.config.cluster
        # One replica of several: its name (annotations, logs, the lease).
        self.replica: str | None = None
        if cluster is not None:
            self.replica = replica or cluster.replica or f"{socket.gethostname()}:{self.listen[1]}"
        elif replica is not None:
            raise StartError("--replica: the file has no cluster: section (one daemon alone)")
        self.role = SOLO if cluster is None else FOLLOWER
        self.epoch: int | None = None  # the lease's, while this replica holds it
        # Sinks first: a missing secret or a broken template stops the start
        # before anything opens.
        self._sink_client: httpx.AsyncClient | None = None
        self.templates = Templates(self.config.alerts.templates)
        # What `watchdog check` says too, so a green check means run starts.
        found = preflight(self.config, os.environ, templates=self.templates)
        if not found.ok:
            raise StartError(found.start_error())
        self.sinks = self._sinks(self.config.alerts)
        self.router = Router(self.config.alerts.routes, [s.name for s in self.sinks])
        # In Postgres (state.url) when the file says so: unreachable at start
        # is a StoreError, so `run` exits 3 saying why.
        password = None
        if self.config.state_password_env is not None:
            password = _secret(self.config.state_password_env, "state.password_env")
            self.secrets.add(password)
        self.store = Store.open(self.config.state, clock=clock, password=password)
        self.coordinator: Coordinator | None = None
        self.observations: Observations | None = None
        if cluster is not None:
            assert self.replica is not None
            # The lease, and the shared observations, each on a connection
            # and a thread of its own: neither a farm's history queued on the
            # store's thread nor thousands of results delay a renewal.
            self._lease_store = Store.open(self.config.state, clock=clock, password=password)
            self.coordinator = Coordinator(self._lease_store, self.replica, cluster.lease_s)
            self._heartbeat = Heartbeat(
                self.coordinator, max(0.25, cluster.lease_s / 4), self._turned
            )
            self._exchange_thread = worker()
            if cluster.shards:
                self._exchange_store = Store.open(self.config.state, clock=clock, password=password)
                self.observations = Observations(self._exchange_store, self.replica)
            self._lease = Lease(self.store, LEASE, self.replica, cluster.lease_s)
        # The heartbeat's outcomes, for the loop to act on (`_cluster_loop`).
        self._turns: asyncio.Queue[tuple[Standing | StoreError, float]] | None = None
        self._members: tuple[str, ...] = ()
        self._sharing: tuple[tuple[str, ...], bool] | None = None  # as last shared
        self._reached = self._renewed = time.monotonic()
        self._unreachable_since: float | None = None
        self._outgoing: list[Observation] = []
        # What was last written of each probe run here: verdict, state, when.
        self._written: dict[str, tuple[State, State, float]] = {}
        self._owned: frozenset[str] | None = None  # None: every probe
        # The store's one thread: the history is written by it, in order,
        # and every read and write of the loop (`self.stored`) runs on it too.
        # Before the loop runs (here), the start-up reads call the store
        # directly: open incidents, alert state, running maneuvers, what
        # probes learned.
        self._writer = worker()
        resumed = {i.node: i.started_at for i in self.store.open_incidents()}
        self.live.resume(resumed)
        self._resumed_incidents = len(resumed)
        self.probe_state = ProbeState(self.store)
        # The watchdog's own trouble, told apart from the estate's.
        self.loop_monitor = LoopMonitor()
        self.impairment = Impairment()
        self.metrics.stall.set_function(lambda: self.loop_monitor.worst_s)
        self.latency = LatencyWatch(self.probe_state)
        self.latency.replace(self.config.probes)
        self._clients = HttpClients()
        self._logs: dict[str, tuple[ProbeConfig, LogProbe]] = {}
        self._anomalies: dict[str, tuple[str, ...]] = {}  # by probe key
        # Drift alerts from the calls Prometheus saw (see `_observed_loop`).
        self._undeclared: list[Alert] = []
        self._checks = self._build(self.config.probes)
        self.probe_state.forget(self._checks)  # what removed probes learned
        self.maneuvers = Maneuvers(self.store)
        # Resumed after a restart: maneuvers still running are still watched.
        self.watched = self.maneuvers.watched()
        self.scheduler: ProbeScheduler[ProbeConfig] = ProbeScheduler(
            self._scheduled(self.config.probes),
            self._check,
            clock,
            on_lag=self._lag,
            on_cutoff=self._cut_off,
        )
        self.metrics.in_flight.set_function(lambda: self.scheduler.in_flight)
        # What /-/ready says, also after a reload that added probes.
        self.metrics.ready.set_function(lambda: int(self.live.ready))
        self.alerting = Alerting(
            Policy(
                settle_s=self.config.alerts.settle_s,
                repeat_interval_s=self.config.alerts.repeat_interval_s,
            ),
            # The topology in force, after any reload.
            suspects=lambda names: self.live.topology.shared_needs(names),  # noqa: PLW0108
        )
        # What had spoken before a restart: resolved once if it recovered
        # meanwhile, never announced twice if it still fires.
        fence = self._fence if cluster is not None else None
        self.alert_state = AlertState(self.store, fence)
        self.alerting.restore(self.alert_state.load())
        self.outbox = Outbox(self.store, fence)
        self.silences = Silences(self.store, since=clock())
        # What the loop awaits: nothing on it waits for the store. The sync
        # objects above are for the start-up reads (and tests), never the loop.
        self.stored: Stored = threaded(
            self._writer,
            store=self.store,
            outbox=self.outbox,
            alert_state=self.alert_state,
            probe_state=self.probe_state,
            maneuvers=self.maneuvers,
            silences=self.silences,
        )
        self.api_token = os.environ.get(TOKEN_ENV) or None
        if self.api_token is not None:
            self.secrets.add(self.api_token)
        self.alert_rounds = 0
        self._refreshed: dict[str, float] = {}
        # In a cluster every replica posts to Alertmanager itself (it
        # deduplicates), from memory: the shared outbox is the holder's.
        self._own_sinks = frozenset(
            s.name for s in self.sinks if cluster is not None and isinstance(s, AlertmanagerSink)
        )
        shared = {s.name: s for s in self.sinks if s.name not in self._own_sinks}
        self.delivery = Delivery(self.stored.outbox, shared, clock)
        # What this process sends without the store: its own sinks, and
        # whatever the store could not take (a duplicate beats silence).
        self.own_outbox = MemoryOutbox()
        self.own_delivery = Delivery(self.own_outbox, {s.name: s for s in self.sinks}, clock)
        # Alerts sent from here without the store, by key: their next
        # messages (the resolution) go the same way, to the same message.
        self._sent_alone: set[str] = set()
        self._silences: list[Silence] = []  # in force, as last read
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: ApiLink | None = None
        self._changed = asyncio.Event()
        self._slow_sent = 0.0  # when the registry and outbox counts were last sent
        self._counting: concurrent.futures.Future[dict[tuple[str, str], int]] | None = None
        self.metrics.reloaded(True, clock())

    # --- what the API asks ------------------------------------------------

    def healthy(self) -> bool:
        """The loop and the scheduler are alive."""
        return self.scheduler.healthy

    def ready(self) -> bool:
        """The topology is loaded and every probe has reported once."""
        return self.live.ready

    def now(self) -> float:
        """The daemon's clock."""
        return self.clock()

    async def incidents(self, since: float, node: str | None = None) -> list[dict[str, Any]]:
        """Incidents open at any time since `since`, as JSON (read by the
        store's thread)."""
        found = await self.stored.incidents.incidents(since, node)
        now = self.clock()
        return [i.to_json(now) for i in found]

    async def reload(self) -> Reload:
        """Read the file again; put it in force if it is valid, else keep the
        running one and say why (in the log, the answer and the metrics).
        The API answers from the outcome at once, whichever way it came
        (SIGHUP or POST /-/reload)."""
        outcome = await self._reload()
        if self._api is not None:
            self._slow_sent = 0.0
            update = self._update(full=outcome.ok)
            update.registry = generate_latest(self.registry)
            self._api.publish(update)
        return outcome

    async def _reload(self) -> Reload:
        try:
            # Parsing a large file takes a while: not on the loop that probes.
            config = await asyncio.to_thread(load_config, self.path, fetch)
        except InvalidInput as err:
            # One line: a file with many problems is not a flood to limit.
            log.error("reload refused: %s", "; ".join(str(p) for p in err.problems))
            self.metrics.reloaded(False, self.clock())
            return Reload(
                False,
                tuple(
                    {"file": p.source, "line": p.line, "path": p.path, "message": p.message}
                    for p in err.problems
                ),
            )
        refused: list[str] = []
        try:
            router = Router(config.alerts.routes, [s.name for s in self.sinks])
        except ValueError as err:
            # Sinks are built at start (their secrets are read then).
            refused.append(f"{self.path}: alerts.routes: {err}: restart the daemon to add sinks")
        templates = Templates(config.alerts.templates)
        refused.extend(f"alerts.templates: {p}" for p in templates.check(TEMPLATED))
        if refused:
            for problem in refused:
                log.error("reload refused: %s", problem)
            self.metrics.reloaded(False, self.clock())
            return Reload(False, tuple(refused))
        self.templates.adopt(templates)
        moved = placement_changes(self.config.topology, config.topology)
        created = await asyncio.to_thread(
            new_shared_fate, self.config.topology, config.topology, moved
        )
        removed = set(self.config.topology.nodes) - set(config.topology.nodes)
        # What the probes new or changed by the file learned before, read
        # now by the store's thread: made on the loop, they read it from here.
        kept = set(self.config.probes)
        fresh = [p.key for p in config.probes if p not in kept]
        try:
            loaded = await self.stored.probe_state.load_many(fresh)
        except StoreError as err:  # the reload goes on: those probes learn afresh
            log.error("cannot read what new probes learned: %s", err)
            loaded = {key: {} for key in fresh}
        state = Preloaded(self.probe_state, loaded)
        self.config = config
        self.router = router
        self._checks = self._build(config.probes, state)
        self._write(self.probe_state.forget, list(self._checks))
        self.latency.replace(config.probes, state)
        transitions = self.live.replace(config.topology, config.probes)
        if removed and self.role in (SOLO, HOLDER):
            # Nothing will report them up again: their open incidents end now
            # (after the transitions already queued for the store).
            fence = self._fence if self.coordinator is not None else None
            self._write(self.store.end_incidents, removed, self.clock(), fence=fence)
            log.info("reload removed nodes=%d", len(removed))
        self.scheduler.replace(self._scheduled(config.probes))
        self._commit(transitions)
        await self._placed(moved, created)
        self.metrics.reloaded(True, self.clock())
        log.info("reloaded nodes=%d probes=%d", len(config.topology), len(config.probes))
        return Reload(True)

    async def _placed(self, moved: list[PlacementChange], created: list[Finding]) -> None:
        """Tell the placement changes of a reload: a transition line each, and
        a notice for the shared fate they created."""
        for change in moved:
            transitions_log.warning(
                "placement node=%s runs_on=%s -> %s",
                change.node,
                ",".join(change.old) or "-",
                ",".join(change.new) or "-",
            )
        now = self.clock()
        for finding in created:
            log.warning("placement created shared fate: %s", finding.message)
            alert = Alert(
                key=f"placement:{finding.nodes[0]}",
                kind="drift",
                severity="warning" if finding.severity == "warning" else "critical",
                root_cause=(finding.nodes[0],),
                summary=f"a placement change created shared fate: {finding.message}",
                started_at=now,
            )
            await self._queue([Notification(f"{alert.key}@{now:.3f}", alert, "notice", now)], now)

    # --- running ----------------------------------------------------------

    async def run(self) -> None:
        """Probe, serve and record until SIGTERM, SIGINT or `stop()`; then
        stop within `STOP_S` whatever the load, having finished its writes.
        `ListenError` when the API cannot listen (nothing was started)."""
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        host, port = self.listen
        settings = Settings(
            limits=ApiLimits(
                max_connections=self.config.server.max_connections,
                header_timeout_s=self.config.server.header_timeout_s,
            ),
            api_token=self.api_token,
            log_format=self.log_format,
            secrets=self.secrets.values(),
        )
        server = self._api = ApiLink(
            host, port, settings, self.api_call, lambda: self._update(full=True)
        )
        server.start()  # binds first: a busy port stops the start here
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        log.info(
            "watching source=%s nodes=%d probes=%d listen=%s:%d open_incidents=%d",
            self.config.source,
            len(self.config.topology),
            len(self.config.probes),
            host,
            server.port,
            self._resumed_incidents,
        )
        if self.api_token is None and not _loopback(host):
            log.warning(
                "the API listens on %s, beyond this machine, without a token: anyone who "
                "reaches it can read the estate's state; set %s to guard what changes it "
                "and the log lines it shows",
                host,
                TOKEN_ENV,
            )
        tasks = [
            asyncio.create_task(self.loop_monitor.run()),
            asyncio.create_task(self._alert_loop()),
            asyncio.create_task(self._save_loop()),
            asyncio.create_task(self._publish_loop()),
            asyncio.create_task(self._sources_loop()),
            asyncio.create_task(self._observed_loop()),
        ]
        if self.config.alerts.alertmanager_url or self.config.alerts.heartbeat_url:
            tasks.append(asyncio.create_task(self._heartbeat_loop()))
        if self.coordinator is not None:
            # Before the first probe: whether this replica holds the lease,
            # and (sharded) which probes are its own.
            self._set_role(self.role)
            self._turns = asyncio.Queue()
            self._heartbeat.start()
            await self._act(*await self._turns.get())
            tasks.append(asyncio.create_task(self._cluster_loop()))
            if self.observations is not None:
                tasks.append(asyncio.create_task(self._exchange_loop()))
        else:
            self.delivery.start()
        self.scheduler.start()
        self.own_delivery.start()
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(loop, tasks)

    async def _shutdown(
        self, loop: asyncio.AbstractEventLoop, tasks: list[asyncio.Task[None]]
    ) -> None:
        """Stop everything within `STOP_S`: the API (on its thread) while the
        rest stops, each step within what is left of the time."""
        log.info("stopping")
        deadline = loop.time() + STOP_S

        def left(share: float = 1.0) -> float:
            return max(0.05, (deadline - loop.time()) * share)

        api = asyncio.create_task(self._api.stop(1.5) if self._api else asyncio.sleep(0))
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=left(0.1))
        await self.scheduler.shutdown(grace_s=min(1.0, left(0.25)))
        # A send cut off here is tried again at the next start.
        await asyncio.gather(
            self.delivery.stop(timeout_s=min(1.0, left(0.3))),
            self.own_delivery.stop(timeout_s=min(1.0, left(0.3))),
        )
        await self.save_learned()
        closing = [self._clients.aclose(), *(sink.aclose() for sink in self.sinks)]
        if self._sink_client is not None:
            closing.append(self._sink_client.aclose())
        _, pending = await asyncio.wait(
            [asyncio.ensure_future(c) for c in closing], timeout=left(0.5)
        )
        for task in pending:
            task.cancel()
        for _, probe in self._logs.values():
            probe.close()
        await asyncio.wait({api}, timeout=left())
        # What the store's thread was given is written before the store
        # closes, by that thread too (closing a Postgres connection talks).
        self._writer.submit(self.store.close)
        await asyncio.to_thread(self._writer.shutdown, wait=True)
        await self._leave(left())
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("stopped")

    async def save_learned(self) -> None:
        """Save what the probes learned (latency baselines), so that a
        restart does not learn it again; failures are logged."""
        try:
            await self.stored.probe_state.save_many(self.latency.saved(), self.clock())
        except StoreError as err:
            log.error("cannot save what probes learned: %s", err)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL_S)
            await self.save_learned()

    async def _observed_loop(self) -> None:
        """With a Prometheus in the file (`defaults.prometheus`), the calls
        it saw between services are compared with the topology every
        `OBSERVED_S`: an undeclared call to or from a critical node is a
        drift alert. A Prometheus that cannot answer keeps the alerts as they
        were and says so in the log (its absence is not the estate's news)."""
        while True:
            await asyncio.sleep(OBSERVED_S)
            server = self.config.prometheus
            if server is None:
                self._undeclared = []
                continue
            topology = self.config.topology
            try:
                report = await observed_findings(
                    topology, server, client=self._clients.get(verify_tls=server.verify_tls)
                )
            except ObservedError as err:
                log.warning("observed calls unread: %s", "; ".join(err.reasons))
                continue
            self._undeclared = undeclared_alerts(report, topology, self.clock())

    async def _sources_loop(self) -> None:
        """Live sources (a cluster, a catalog) are read again on their
        `refresh` interval, as a reload: a source that cannot be read keeps
        the running topology and says why."""
        while True:
            live = [s.refresh_s for s in self.config.sources if s.live is not None]
            await asyncio.sleep(min(live, default=SOURCES_IDLE_S))  # a reload may add some
            if live:
                await self.reload()

    def stop(self) -> None:
        """Ask `run()` to return."""
        if self._stopping is not None:
            self._stopping.set()

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0), once serving."""
        api = self._api
        return api.port if api is not None and api.running else None

    # --- replicas (`cluster:`) ----------------------------------------------

    def _fence(self, tx: Transaction) -> None:
        """In the transaction of a write only the lease's holder makes:
        `LeaseLost` unless this replica still holds it, at its epoch."""
        epoch = self.epoch
        if epoch is None:
            raise LeaseLost(f"replica {self.replica} does not hold the lease")
        self._lease.fence(tx, epoch)

    def _mine(self, probes: tuple[ProbeConfig, ...]) -> frozenset[str] | None:
        """The keys of the probes this replica runs; None for all of them
        (no sharding, or alone: the others' results cannot be read)."""
        if self.observations is None or self.role == ALONE or self.replica is None:
            return None
        # A log probe reads a file of the machine it runs on: every replica
        # runs its own, and keeps its results to itself.
        logs = {p.key for p in probes if p.kind == "log"}
        keys = [p.key for p in probes if p.key not in logs]
        return shard(keys, self._members, self.replica) | logs

    def _set_role(self, role: str) -> None:
        self.role = role
        for each in (HOLDER, FOLLOWER, ALONE):
            self.metrics.cluster_role.labels(each).set(1 if each == role else 0)
        self._changed.set()

    def _turned(self, outcome: Standing | StoreError, began: float) -> None:
        """From the heartbeat's thread: a turn's outcome, for the loop."""
        loop, turns = self._loop, self._turns
        if loop is None or turns is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: stopping
            loop.call_soon_threadsafe(turns.put_nowait, (outcome, began))

    async def _cluster_loop(self) -> None:
        assert self._turns is not None
        while True:
            await self._act(*await self._turns.get())

    async def _act(self, outcome: Standing | StoreError, sent: float) -> None:
        """Act on a renewal of the lease (four a lease: three may fail
        before it is lost) and heartbeat: take the holder's duties over,
        give them up, go alone when the store stays out of reach for longer
        than the lease; share the probes anew."""
        if isinstance(outcome, StoreError):
            await self._unreached(outcome, sent)
            return
        standing = outcome
        if self._unreachable_since is not None:
            log.warning(
                "cluster: the state store answers again after %s",
                format_duration(max(0.001, sent - self._unreachable_since)),
            )
            self._unreachable_since = None
        self._reached = sent
        if standing.epoch is not None:
            self._renewed = sent
            if self.role != HOLDER:
                await self._take_over(standing.epoch)
        elif self.role == HOLDER:
            await self._step_down("another replica holds the lease")
        elif self.role == ALONE:
            self._set_role(FOLLOWER)
        self._reshard(standing.members)
        try:  # maneuvers started through any replica are watched by all
            self.watch(await self.stored.maneuvers.watched())
        except StoreError as err:
            log.error("cannot read the running maneuvers: %s", err)

    async def _unreached(self, err: StoreError, sent: float) -> None:
        """A turn that could not reach the store: the holder gives its
        duties up before its lease can have run out; past the lease, this
        replica is alone."""
        assert self.coordinator is not None
        lease_s = self.coordinator.lease_s
        if self._unreachable_since is None:
            self._unreachable_since = sent
            log.error("cluster: cannot reach the state store: %s", err)
        now = time.monotonic()
        if self.role == HOLDER and now - self._renewed > lease_s * STEP_DOWN_SHARE:
            await self._step_down("the lease could not be renewed")
        if self.role != ALONE and now - self._reached > lease_s:
            self._set_role(ALONE)
            log.warning(
                "cluster: the state store out of reach for longer than the lease (%s): "
                "alerts about critical nodes are sent from this replica, uncoordinated%s",
                format_duration(lease_s),
                "; it runs every probe" if self.observations is not None else "",
            )
            self._reshard(self._members)

    async def _take_over(self, epoch: int) -> None:
        """The lease is this replica's: go on from the alerts the last
        holder saved (with those this one sent on its own), bring the
        incidents in line with what it sees, deliver the shared outbox."""
        self.epoch = epoch
        log.warning(
            "cluster: this replica holds the lease replica=%s epoch=%d", self.replica, epoch
        )
        # Holder only once the alert state is the last holder's: an alert
        # round meanwhile must not announce what that one already had.
        try:
            stored = await self.stored.alert_state.load()
        except StoreError as err:
            log.error("cluster: cannot read the alert state, going on from this replica's: %s", err)
        else:
            own = self.alerting.tracked(self._sent_alone)
            self.alerting.adopt(stored)
            self.alerting.restore(own)
            if own:
                self.alerting.unsaved({t.alert.key: t for t in own})
        self._set_role(HOLDER)
        now = self.clock()
        if self.live.settled:
            # What failed, with since when and why, as the alert rounds see it.
            failed = self.live.failed()
            states = self.live.states
            seen: dict[str, tuple[State, float, tuple[str, ...]]] = {
                node: (State.UP, 0.0, ()) for node in states if states[node] == State.UP
            }
            seen.update({f.node: (f.state, f.since, f.causes) for f in failed})
            targets = {f.node: f.recovery_target_s for f in failed}
            self._writer.submit(self._reconcile, seen, targets, now)
        self.delivery.start()

    def _reconcile(
        self,
        seen: Mapping[str, tuple[State, float, tuple[str, ...]]],
        targets: Mapping[str, float],
        now: float,
    ) -> None:
        """`reconcile_incidents` on the store's thread, after what it was
        asked before; a failure is logged."""
        try:
            opened, ended = reconcile_incidents(
                self.store, seen, recovery_targets=targets, at=now, fence=self._fence
            )
        except StoreError as err:
            log.error("cluster: cannot bring the incidents in line: %s", err)
            return
        if opened or ended:
            log.warning("cluster: incidents brought in line opened=%d ended=%d", opened, ended)

    async def _step_down(self, why: str) -> None:
        """Give the holder's duties up (the lease is lost, or may be)."""
        self.epoch = None
        self._set_role(FOLLOWER)
        log.warning("cluster: this replica no longer holds the lease: %s", why)
        await self.delivery.stop(timeout_s=1.0)

    def _reshard(self, members: Sequence[str]) -> None:
        """Share the probes anew among `members` (with sharding; alone,
        this replica runs them all)."""
        assert self.replica is not None
        everyone = tuple(sorted({*members, self.replica}))
        self.metrics.cluster_members.set(len(everyone))
        sharing = (everyone, self.role == ALONE)
        if sharing == self._sharing:
            return
        self._members, self._sharing = everyone, sharing
        if self.observations is not None:
            # Probes that come here from a replica that died (or whose
            # results cannot be read) run soon, not at their next turn.
            assert self.coordinator is not None
            soon = max(1.0, self.coordinator.lease_s / 4)
            self.scheduler.replace(self._scheduled(self.config.probes), soon_s=soon)
            log.info(
                "cluster: members=%s probes_run_here=%s",
                ",".join(everyone),
                "all" if self._owned is None else len(self._owned),
            )

    async def _exchange_loop(self) -> None:
        while True:
            await asyncio.sleep(EXCHANGE_S)
            await self.exchange()

    async def exchange(self) -> None:
        """Sharded probes: write this replica's new results, and take those
        the others wrote into the live state (their verdicts as they are).
        What cannot be written now is written later (the latest per probe)."""
        observations = self.observations
        assert observations is not None
        members = self._members
        latest = {o.probe: o for o in self._outgoing}
        self._outgoing = []
        # Alone in the cluster, nobody reads them; otherwise what changed,
        # and the rest now and then (a newcomer reads them all first).
        now, written = time.monotonic(), self._written
        out = [
            o
            for o in latest.values()
            if len(members) > 1
            and (
                (before := written.get(o.probe)) is None
                or before[:2] != (o.verdict, o.state)
                or now - before[2] >= REWRITE_S
            )
        ]

        def trade() -> list[Observation]:
            observations.write(out)
            return observations.read(members)

        try:
            incoming = await on_worker(self._exchange_thread, trade)
        except StoreError:
            # Written later (the latest of each probe); the heartbeat says why.
            self._outgoing = list({o.probe: o for o in [*out, *self._outgoing]}.values())
            return
        for o in out:
            written[o.probe] = (o.verdict, o.state, now)
        owned, live = self._owned, self.live
        if owned is None or not incoming:
            return
        was_ready = live.ready
        transitions = []
        for number, seen in enumerate(incoming, 1):
            if seen.probe in owned or seen.probe not in live.probes:
                continue
            last = live.last.get(seen.probe)
            if last is not None and last.last_at is not None and last.last_at >= seen.at:
                continue
            transitions += live.record(
                seen.probe,
                seen.state,
                seen.reason,
                seen.latency_s,
                tls_expires_at=seen.tls_expires_at,
                verdict=seen.verdict,
                at=seen.at,
            )
            if number % 500 == 0:  # a first read is every probe: the loop goes on meanwhile
                await asyncio.sleep(0)
        self._commit(transitions)
        self._changed.set()
        if live.ready and not was_ready:
            log.info("ready: every probe has reported")

    async def _leave(self, timeout_s: float) -> None:
        """At a clean stop: give the lease up, so that the next holder need
        not wait for it to run out; close the lease's connection."""
        if self.coordinator is None:
            return
        coordinator = self.coordinator
        epoch, self.epoch = self.epoch, None

        def leave() -> None:
            self._heartbeat.stop(timeout_s)  # no renewal after the release
            try:
                if epoch is not None and coordinator.release(epoch):
                    log.info("cluster: lease released replica=%s", self.replica)
            except StoreError as err:
                log.warning("cluster: cannot release the lease: %s", err)
            finally:
                coordinator.store.close()

        # A thread of its own: the release waits for the heartbeat's last
        # turn, and a store that does not answer must not hold the stop.
        leaving = threading.Thread(target=leave, name="watchdog-leave", daemon=True)
        leaving.start()
        self._exchange_thread.submit(self._close_exchange)
        self._exchange_thread.shutdown(wait=False)
        await asyncio.to_thread(leaving.join, timeout_s)

    def _close_exchange(self) -> None:
        if self.observations is not None:
            self.observations.store.close()

    # --- the API process -----------------------------------------------------

    async def api_call(self, op: str, args: Mapping[str, Any]) -> Any:
        """Do what the API process asks (on the daemon's loop); JSON-shaped
        answers. Store calls run on the store's thread; `CallError` for a refusal, and
        a 503 when the store cannot answer (a Postgres server gone): why is
        in the daemon's log, never in the answer (it names the database)."""
        try:
            return await self._api_call(op, args)
        except StoreError as err:
            log.error("api call cannot use the store op=%s: %s", op, err)
            raise CallError(
                503, "the state store cannot answer now: see the daemon's log"
            ) from None

    async def _api_call(self, op: str, args: Mapping[str, Any]) -> Any:
        if op == "registry":
            return await asyncio.to_thread(generate_latest, self.registry)
        if op == "outbox_counts":
            counts = await self.stored.outbox.counts()
            return [[sink, state, n] for (sink, state), n in sorted(counts.items())]
        if op == "incidents":
            return await self.incidents(args["since"], args["node"])
        if op == "maneuvers":
            return [m.to_json() for m in await self.stored.maneuvers.recent()]
        if op == "silences":
            active = await self.stored.silences.active(self.clock())
            return [x.to_json() for x in active]
        if op == "reload":
            # The update is queued before the answer: the API answers from
            # the new file (and the reload's metrics) at once.
            outcome = await self.reload()
            return outcome.ok, list(outcome.problems)
        try:
            return await self._change(op, args)
        except (ManeuverError, SilenceError) as err:
            raise CallError(err.status, str(err)) from None

    async def _change(self, op: str, args: Mapping[str, Any]) -> Any:
        """The API's calls that change the daemon: maneuvers and silences,
        judged on the live state as it is now (a copy: the store's thread
        reads it while the probes go on)."""
        now = self.clock()
        maneuvers, silences = self.stored.maneuvers, self.stored.silences
        if op == "maneuver_start":
            maneuver, note = await maneuvers.start(
                self.live.view(),
                [Action(kind, node) for kind, node in args["actions"]],
                by=args["by"],
                reason=args["reason"],
                force=args["force"],
                at=now,
            )
            await self.announce(note)
            self.watch(await maneuvers.watched())
            return maneuver.to_json(), 409 if maneuver.state == "refused" else 201
        if op == "maneuver_end":
            maneuver, note = await maneuvers.end(self.live.view(), args["ident"], now)
            await self.announce(note)
            self.watch(await maneuvers.watched())
            return maneuver.to_json()
        if op == "silence_add":
            label = args["label"]
            silence, note = await silences.add(
                self.live.view(),
                node=args["node"],
                label=tuple(label) if label is not None else None,
                duration_s=args["duration_s"],
                by=args["by"],
                reason=args["reason"],
                force=args["force"],
                at=now,
            )
            await self.announce(note)
            return silence.to_json()
        if op == "silence_expire":
            expired, notice = await silences.expire(args["ident"], now)
            if notice is not None:
                await self.announce(notice)
            return expired.to_json()
        raise CallError(404, f"no such call {op!r}")

    async def _publish_loop(self) -> None:
        """Tell the API process what changed: soon after a change (at most
        every PUBLISH_S), and every HEARTBEAT_S whatever happens."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_S):
                    await self._changed.wait()
            self._changed.clear()
            if self._api is not None:
                update = self._update(full=False)
                now = time.monotonic()
                if now - self._slow_sent >= HEARTBEAT_S:
                    # The small metrics and the outbox counts, once a second:
                    # a scrape then never waits for this loop. The counts are
                    # read by the store's thread, after what it is writing,
                    # and sent the round after: this loop never waits for
                    # the store either.
                    self._slow_sent = now
                    if not self.config.server.metrics_detail:
                        update.registry = generate_latest(self.registry)
                    counting = self._counting
                    if counting is not None and counting.done() and not counting.exception():
                        counts = counting.result()
                        update.outbox = tuple((k, s, n) for (k, s), n in sorted(counts.items()))
                    if counting is None or counting.done():
                        self._counting = self._writer.submit(self.outbox.counts)
                self._api.publish(update)
            await asyncio.sleep(PUBLISH_S)

    def _update(self, *, full: bool) -> Update:
        """What changed since the last update (everything, when `full` or
        when the live state says so: a reload)."""
        live, metrics = self.live, self.metrics
        changes = live.take_changes()
        latency = self.latency.take_changes()
        results, transitions = metrics.take_changes()
        full = full or changes is None
        update = Update(
            full=full,
            taken_at=self.clock(),
            settled=live.settled,
            ready=live.ready,
            healthy=self.healthy(),
            drift=tuple(live.drift()),
            logs={
                key: (probe.details(private=False), probe.details(private=True))
                for key, (_, probe) in self._logs.items()
            },
            alerts=tuple(_alert_json(a) for a in self.alerting.alerts),
        )
        if self.coordinator is not None:
            owned = self._owned
            update.cluster = {
                "replica": self.replica,
                "role": self.role,
                "members": list(self._members),
                "probes_run_here": len(owned) if owned is not None else len(live.probes),
            }
        if full:
            update.topology = live.topology
            update.probes_of = {n: tuple(keys) for n, keys in live.probes_of.items()}
            update.observed = dict(live.observed)
            update.since = dict(live.since)
            update.last = dict(live.last)
            update.latency = dict(self.latency.views())
            update.results = dict(metrics.results)
            update.transitions = dict(metrics.transitions)
            return update
        assert changes is not None
        nodes, probes = changes
        observed, since, last = live.observed, live.since, live.last
        update.observed = {n: observed[n] for n in nodes if n in observed}
        update.since = {n: since[n] for n in nodes if n in since}
        update.last = {k: last[k] for k in probes if k in last}
        update.latency = latency
        update.results = results
        update.transitions = transitions
        return update

    # --- alerts -----------------------------------------------------------

    def _sinks(self, alerts: AlertsConfig) -> list[Sink]:
        """The sinks the file configures; the console when it names none
        (or a route names it).
        A secret named but missing from the environment stops the start:
        a daemon that cannot alert must not look as if it could."""
        host, port = self.listen
        link = f"http://{host}:{port}"
        templates = self.templates
        sinks: list[Sink] = (
            [ConsoleSink(templates=templates, fmt="json" if self.log_format == "json" else "text")]
            if "console" in alerts.sink_names
            else []
        )
        slack = alerts.slack
        if slack is not None:
            if slack.token_env is not None:
                token = _secret(slack.token_env, "alerts.slack.token_env")
                self.secrets.add(token)
                sinks.append(
                    SlackSink(
                        token,
                        base_url=slack.base_url,
                        channels=slack.channels,
                        link_base=link,
                        channel_for=lambda alert: self.router.decide(alert).slack_channel,
                        templates=templates,
                    )
                )
            if slack.webhook_url_env is not None:
                url = _secret(slack.webhook_url_env, "alerts.slack.webhook_url_env")
                self.secrets.add(url)
                sinks.append(SlackWebhookSink(url, link_base=link, templates=templates))
        if alerts.alertmanager_url or alerts.webhook_url or alerts.heartbeat_url:
            self._sink_client = httpx.AsyncClient(timeout=10.0, trust_env=False)
        if alerts.alertmanager_url is not None:
            assert self._sink_client is not None
            sinks.append(
                AlertmanagerSink(
                    alerts.alertmanager_url,
                    self._sink_client,
                    f"{link}/api/v1/status",
                    clock=self.clock,
                    templates=templates,
                    replica=self.replica,
                    peers=alerts.alertmanager_peers,
                )
            )
        if alerts.webhook_url is not None:
            assert self._sink_client is not None
            sinks.append(WebhookSink(alerts.webhook_url, self._sink_client))
        return sinks

    async def _alert_loop(self, tick_s: float = 1.0) -> None:
        """Every tick: the alert rules over the live state, new notifications
        into the outbox, then whatever is due delivered."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            try:
                await self.alert_once()
            except StoreError as err:  # the store gone (a Postgres outage): one line a round
                log.error("alert round failed: %s", err)
            except Exception:  # the loop must outlive any one failure
                log.exception("alert loop failed")
            # Fixed deadlines, so rounds do not drift by their own duration;
            # and an alert that settles between ticks is sent when it settles.
            next_tick += tick_s
            wake = next_tick
            due = self.alerting.next_due()
            if due is not None:
                wake = min(wake, loop.time() + max(0.0, due - self.clock()))
            # Never a busy loop, even if a round keeps failing.
            await asyncio.sleep(max(0.05, wake - loop.time()))
            if loop.time() > next_tick + tick_s:  # far behind (a suspended VM): catch up once
                next_tick = loop.time()

    async def _heartbeat_loop(self) -> None:
        """The dead man's switch: while the daemon lives, an always-firing
        `Watchdog` alert in Alertmanager and a GET of the heartbeat URL, so
        that its own death is noticed."""
        alerts = self.config.alerts
        started = self.clock()
        beats = 0
        while True:
            beats += 1
            await self.beat(started, beats)
            await asyncio.sleep(alerts.heartbeat_interval_s)

    async def beat(self, started: float, number: int) -> None:
        """One heartbeat to every place that listens for it; failures are
        logged (the absence of beats is what the other side watches)."""
        alive = Alert(
            key="heartbeat",
            kind="heartbeat",
            severity="info",
            root_cause=(),
            summary="the watchdog is alive: this alert fires as long as it runs",
            started_at=started,
        )
        note = Notification(f"heartbeat#{number}", alive, "firing", self.clock())
        for sink in self.sinks:
            if isinstance(sink, AlertmanagerSink):
                try:
                    await sink.send(note, None)
                except SinkError as err:
                    log.warning("heartbeat failed sink=%s error=%s", sink.name, err)
        url = self.config.alerts.heartbeat_url
        if url is not None and self._sink_client is not None:
            try:
                response = await self._sink_client.get(url)
                if response.status_code >= 400:
                    log.warning("heartbeat failed url_status=%d", response.status_code)
            except httpx.HTTPError as err:
                # The URL may carry a token: name the error, not the URL.
                log.warning("heartbeat failed error=%s", type(err).__name__)

    def anomalies(self) -> dict[str, tuple[str, ...]]:
        """The anomalies in force by node (log anomalies, latency
        regressions), as the probes last reported them."""
        out: dict[str, tuple[str, ...]] = {}
        probes = self.live.probes
        for key, reasons in sorted(self._anomalies.items()):
            probe = probes.get(key)
            if probe is not None:
                out[probe.node] = out.get(probe.node, ()) + reasons
        return out

    def watch(self, watched: frozenset[str]) -> None:
        """Bring the close watch up to date with the running maneuvers'
        `watched` nodes (`Maneuvers.watched`): the critical nodes they
        impact are probed at least every `WATCH_INTERVAL_S`, and their
        alerts skip the settle window."""
        if watched != self.watched:
            self.watched = watched
            self.scheduler.replace(self._scheduled(self.config.probes))
            log.info("watching closely nodes=%s", ",".join(sorted(watched)) or "-")

    def _scheduled(self, probes: tuple[ProbeConfig, ...]) -> tuple[ProbeConfig, ...]:
        """`probes` this replica runs (its share, when the replicas shard
        them), those of watched nodes made to run more often."""
        mine = self._owned = self._mine(probes)
        if mine is not None:
            probes = tuple(p for p in probes if p.key in mine)
        self.metrics.probes_owned.set(len(probes))
        return tuple(
            dataclasses.replace(
                p,
                schedule=dataclasses.replace(
                    p.schedule, interval_s=min(p.schedule.interval_s, WATCH_INTERVAL_S)
                ),
            )
            if p.node in self.watched
            else p
            for p in probes
        )

    async def announce(self, notification: Notification) -> None:
        """Queue a notification of a person's action (a maneuver, a silence)
        for every sink its route names, whichever replica it came through."""
        await self._queue([notification], self.clock(), alerts=False)

    async def alert_once(self) -> int:
        """One round of the alert loop: the rules over the live state, what
        is due queued for the sinks (each sink's own worker delivers it, so
        a slow sink holds up nothing else); returns how many notifications
        were queued."""
        self.alert_rounds += 1
        self.metrics.alert_rounds.inc()
        # Silences whose time ran out are announced, as those ended by hand
        # (without the store, later).
        with contextlib.suppress(StoreError):
            ended = await self.stored.silences.ended(self.clock())
            if ended and self.role in (SOLO, HOLDER):  # every replica sees them end
                await self._queue([notice for _, notice in ended], self.clock())
        if not self.live.settled:
            return 0
        # A storm's causes are worked out a slice per turn of the loop: all
        # at once, thousands of them held the probes up past their deadlines.
        for _ in range(PREPARE_TURNS):
            if self.live.prepare(PREPARE_SLICE):
                break
            await asyncio.sleep(0)
        now = self.clock()
        failed = self.live.failed()
        if self._anomalies:
            anomalies = self.anomalies()
            failed = [
                dataclasses.replace(f, anomalies=anomalies[f.node]) if f.node in anomalies else f
                for f in failed
            ]
        impaired = self.impairment.alert(now)
        before = len(self.alerting.alerts)
        notes = self.alerting.update(
            now,
            failed,
            self.live.drifting(),
            watched=self.watched,
            extra=[*([impaired] if impaired is not None else []), *self._undeclared],
        )
        if notes or len(self.alerting.alerts) != before:
            self._changed.set()  # the API shows the alerts in force
        if notes:
            notes = await self._unmuted(notes, now)
        # Queued first, then the alert state: a crash between the two makes
        # the same notifications again, with the same ids, which the outbox
        # takes once.
        await self._queue(notes, now)
        changes = self.alerting.take_changes()
        if self.role in (SOLO, HOLDER):
            try:
                await self.stored.alert_state.save(changes, now)
            except LeaseLost:
                pass  # the next holder goes on from what was saved
            except StoreError:
                self.alerting.unsaved(changes)  # saved once the store is back
                raise
        await self._refresh(now)
        return len(notes)

    async def _refresh(self, now: float) -> None:
        """Every Alertmanager sink's resend interval: the firing alerts it
        was sent, re-posted so that Alertmanager keeps them firing."""
        for sink in self.sinks:
            if not isinstance(sink, AlertmanagerSink):
                continue
            # The first round only starts the count: what fires was just sent.
            if now - self._refreshed.setdefault(sink.name, now) < sink.resend_interval_s:
                continue
            self._refreshed[sink.name] = now
            firing = []
            routed = [
                n
                for n in self.alerting.firing(now)
                if sink.name in self.router.decide(n.alert).sinks
            ]
            outbox = self.own_outbox if sink.name in self._own_sinks else self.stored.outbox
            for note in await self._unmuted(routed, now) if routed else ():
                receipt = await outbox.receipt(note, sink.name)
                if receipt is not None:  # not yet delivered: the outbox sends it
                    firing.append((note, receipt))
            try:
                await sink.refresh(firing)
            except SinkError as err:
                log.warning("alertmanager refresh failed sink=%s error=%s", sink.name, err)

    async def _unmuted(self, notes: list[Notification], now: float) -> list[Notification]:
        """`notes` without those a silence in force mutes (silences read once)."""
        silences = self.stored.silences
        try:
            self._silences = await silences.active(now)
        except StoreError as err:
            # The store out of reach: the silences last read still hold
            # (until they expire), rather than none or no alert at all.
            log.warning("silences unread, those last read hold: %s", err)
        active = [x for x in self._silences if x.expires_at > now]
        topology = self.live.topology
        return [n for n in notes if silences.muting(n.alert, topology, now, active) is None]

    async def _queue(self, notes: list[Notification], now: float, *, alerts: bool = True) -> None:
        """Each notification to the sinks its route names: into the shared
        outbox (in a cluster, the alerts only while this replica holds the
        lease; a person's action, through any replica), and into this
        process's own for the sinks every replica sends to itself. What the
        store cannot take is sent from here (a duplicate beats silence), and
        so are the alerts about critical nodes while this replica is alone."""
        shared: dict[tuple[str, ...], list[Notification]] = {}
        own: dict[tuple[str, ...], list[Notification]] = {}
        coordinated = self.role in (SOLO, HOLDER) or not alerts
        for note in notes:
            sinks = self.router.decide(note.alert).sinks
            mine = tuple(s for s in sinks if s in self._own_sinks)
            theirs = tuple(s for s in sinks if s not in self._own_sinks)
            if mine:
                own.setdefault(mine, []).append(note)
            if not theirs:
                continue
            if note.alert.key in self._sent_alone:
                own.setdefault(theirs, []).append(note)  # its first message went from here
            elif coordinated:
                shared.setdefault(theirs, []).append(note)
            elif self.role == ALONE and _critical(note.alert):
                own.setdefault(theirs, []).append(note)
        for sinks, group in shared.items():
            try:
                await self.stored.outbox.put(group, list(sinks), now, fenced=alerts)
            except LeaseLost:
                log.warning("notifications left to the new holder count=%d", len(group))
            except StoreError as err:
                log.error("cannot queue notifications, sent from here instead: %s", err)
                own.setdefault(sinks, []).extend(group)
        for sinks, group in own.items():
            for note in group:
                if note.event == "resolved":
                    self._sent_alone.discard(note.alert.key)
                elif any(s not in self._own_sinks for s in sinks):
                    self._sent_alone.add(note.alert.key)
            await self.own_outbox.put(group, list(sinks), now)
        if shared:
            self.delivery.wake()
        if own:
            self.own_delivery.wake()

    # --- the probe loop ---------------------------------------------------

    def _build(
        self, probes: tuple[ProbeConfig, ...], state: ProbeState | None = None
    ) -> dict[str, Probe]:
        """A probe for each of `probes`; a log probe whose settings did not
        change is kept (its open files and what it learned), the others are
        made anew, and those gone are closed (their saved state is the
        caller's to drop: `ProbeState.forget`). New log probes read what
        they learned from `state` (by default, the store)."""
        checks: dict[str, Probe] = {}
        logs: dict[str, tuple[ProbeConfig, LogProbe]] = {}
        for p in probes:
            if p.kind in PROBE_KINDS:
                checks[p.key] = PROBE_KINDS[p.kind].build(p.spec, self._clients)
            elif isinstance(p.spec, LogSpec):
                kept = self._logs.pop(p.key, None)
                if kept is not None and kept[0] == p:
                    logs[p.key] = kept
                else:
                    if kept is not None:
                        kept[1].close()
                    probe = LogProbe(
                        p.spec,
                        p.key,
                        state=state or self.probe_state,
                        clock=self.clock,
                        interval_s=p.schedule.interval_s,
                    )
                    logs[p.key] = (p, probe)
                checks[p.key] = logs[p.key][1]
        for _, gone in self._logs.values():
            gone.close()
        self._logs = logs
        self._anomalies = {k: v for k, v in self._anomalies.items() if k in checks}
        return checks

    async def _check(self, probe: ProbeConfig) -> None:
        check = self._checks.get(probe.key)
        if check is None or probe.key not in self.live.probes:
            return  # removed by a reload while it was due
        started = time.monotonic()
        result = await check.check()
        ended = time.monotonic()
        timeout = getattr(probe.spec, "timeout_s", None)
        result = self.impairment.judge(
            result, started=started, ended=ended, timeout_s=timeout, loop=self.loop_monitor
        )
        self._result(probe, result, ended - started)

    def _cut_off(self, probe: ProbeConfig, deadline_s: float) -> None:
        """A run the scheduler cut off at its deadline: the probe did not keep
        its own timeout, so the watchdog (a starved loop, a full thread pool)
        is to blame, not the target. A result all the same (the daemon must
        get ready), but an inconclusive one."""
        if probe.key in self.live.probes:
            words = f"the check did not end within its deadline of {format_duration(deadline_s)}"
            self._result(probe, inconclusive("cut_off", words), deadline_s)

    def _result(self, probe: ProbeConfig, result: ProbeResult, duration_s: float) -> None:
        """One probe result into the latency baseline, the metrics and the
        live state, and what it changes into the store."""
        if result.inconclusive:
            self.impairment.note(result.inconclusive, self.clock())
            self.metrics.inconclusive.labels(result.inconclusive).inc()
        result = self.latency.track(probe.key, result, self.clock())
        if result.anomalies:
            self._anomalies[probe.key] = result.anomalies
        else:
            self._anomalies.pop(probe.key, None)
        self.metrics.result(probe.node, probe.key, result.state, duration_s)
        was_ready = self.live.ready
        transitions = self.live.record(
            probe.key,
            result.state,
            result.reason,
            result.latency_s,
            inconclusive=bool(result.inconclusive),
            tls_expires_at=result.tls_expires_at,
        )
        if self.observations is not None and probe.kind != "log":
            status = self.live.last[probe.key]
            self._outgoing.append(
                Observation(
                    probe.key,
                    status.verdict,
                    result.state,
                    result.reason,
                    result.latency_s,
                    status.last_at or self.clock(),
                    result.tls_expires_at,
                )
            )
        if transitions:
            self._commit(transitions)
            self._changed.set()
        if self.live.ready and not was_ready:
            self._changed.set()
            log.info("ready: every probe has reported")

    def _commit(self, transitions: list[Transition]) -> None:
        """Transitions into the store (by the store's own thread: a farm's
        thousands of them must not hold the probes' loop), the metrics and
        the log."""
        if not transitions:
            return
        topology = self.live.topology
        if self.role in (SOLO, HOLDER):  # a new holder reconciles what others saw
            targets = {t.node: topology.recovery_target_s(t.node) for t in transitions}
            fence = self._fence if self.coordinator is not None else None
            self._write(self.store.record, transitions, recovery_targets=targets, fence=fence)
        self.metrics.count(transitions)
        quiet: dict[tuple[State, State, tuple[str, ...]], list[str]] = {}
        for t in transitions:
            if t.view != "effective" or (t.new < State.DEGRADED and t.old < State.DEGRADED):
                continue
            # Critical nodes and root causes stand out; a farm's dependents
            # going down with it are told together.
            if topology.node(t.node).critical or t.node in t.root_cause:
                _log_transition(logging.WARNING, t)
            else:
                quiet.setdefault((t.old, t.new, t.root_cause), []).append(t.node)
        for (old, new, causes), nodes in quiet.items():
            if len(nodes) <= _TOLD_ONE_BY_ONE:
                for node in nodes:
                    _log_transition(
                        logging.INFO, Transition(node, "effective", old, new, 0, causes)
                    )
                continue
            transitions_log.info(
                "transitions nodes=%d %s -> %s cause=%s first=%s",
                len(nodes),
                old,
                new,
                ",".join(causes) or "-",
                ",".join(nodes[:_TOLD_ONE_BY_ONE]),
            )

    def _write(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run `call` on the store's thread, after what was asked before it,
        without waiting for it; a failure is logged (the history has a gap,
        the daemon goes on)."""

        def write() -> None:
            try:
                call(*args, **kwargs)
            except StoreError as err:
                log.error("cannot write the history: %s", err)

        self._writer.submit(write)

    def _lag(self, key: str, seconds: float) -> None:
        self.metrics.lag.observe(seconds)
