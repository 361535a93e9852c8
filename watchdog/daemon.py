"""The daemon: the composition root that builds everything and wires it
together. Probe results become observations, observations become effective
states and transitions, transitions are stored and counted, and the API
shows it all. Nothing imports this module but the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import signal
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client import CollectorRegistry

from alerts.delivery import Delivery
from alerts.model import Alert, Notification, Sink, SinkError
from alerts.routing import Router
from alerts.rules import Alerting, Policy
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.console import ConsoleSink
from alerts.sinks.slack import SlackSink, SlackWebhookSink
from alerts.sinks.webhook import WebhookSink
from alerts.templates import Templates
from alerts.transitions import Transition
from topology import InvalidInput, State, format_duration
from watchdog.alert_state import AlertState
from watchdog.api import TOKEN_ENV, Busy, Reload, create_app
from watchdog.config import AlertsConfig, DaemonConfig, ProbeConfig, load_config
from watchdog.http_server import ApiServer
from watchdog.latency_watch import LatencyWatch
from watchdog.live import LiveState
from watchdog.logs import Secrets
from watchdog.maneuvers import Maneuvers
from watchdog.metrics import Metrics
from watchdog.outbox import Outbox
from watchdog.probe_state import ProbeState
from watchdog.probes import PROBE_KINDS, HttpClients, HttpSpec, Probe, ProbeResult
from watchdog.probes.log import LogProbe, LogSpec
from watchdog.probes.result import inconclusive
from watchdog.scheduler import ProbeScheduler
from watchdog.selfcheck import Impairment, LoopMonitor
from watchdog.silences import Silences
from watchdog.snapshot import LatencyView, Snapshot
from watchdog.store import Store, StoreError

__all__ = ["Daemon", "StartError"]

log = logging.getLogger(__name__)
# State changes, one line each: never held back by the log's flood limit.
transitions_log = logging.getLogger("watchdog.transitions")

# How often, at least, the probes of a node a running maneuver impacts run.
WATCH_INTERVAL_S = 5.0
# The sinks whose words come from templates.
_TEMPLATED = ("console", "slack", "alertmanager")
# How often what probes learned is saved (and at every clean stop).
SAVE_INTERVAL_S = 300.0
# SIGTERM to exit, whatever the load: systemd's default stop timeout is 90 s,
# but an operator's Ctrl-C should not wait.
STOP_S = 4.0
# How long an API request waits for the daemon's loop before a 503.
API_WAIT_S = 10.0
# How long one snapshot answers the API: many clients, one copy.
SNAPSHOT_TTL_S = 0.5

T = TypeVar("T")


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
    for url in (alerts.alertmanager_url, alerts.webhook_url, alerts.heartbeat_url):
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


def _loopback(host: str) -> bool:
    """Whether `host` is this machine only (a name is taken at its word)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


class Daemon:
    """One estate watched: built from a file, run until told to stop.

    Everything with state comes in or is built here: the clock, the metrics
    registry, the store, the HTTP clients, the scheduler. `run()` serves the
    API on `config.server` (or `listen`) and returns after SIGTERM/SIGINT or
    `stop()`, having finished its writes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
        listen: tuple[str, int] | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.config: DaemonConfig = load_config(self.path)  # InvalidInput for a bad file
        # What the log masks: every secret read from the environment or the file.
        self.secrets = secrets if secrets is not None else Secrets()
        for value in _config_secrets(self.config):
            self.secrets.add(value)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry, detail=self.config.server.metrics_detail)
        self.live = LiveState(self.config.topology, self.config.probes, clock)
        self.listen = listen or (self.config.server.host, self.config.server.port)
        # Sinks first: a missing secret or a broken template stops the start
        # before anything opens.
        self._sink_client: httpx.AsyncClient | None = None
        self.templates = Templates(self.config.alerts.templates)
        problems = self.templates.check(_TEMPLATED)
        if problems:
            raise StartError("; ".join(f"alerts.templates: {p}" for p in problems))
        self.sinks = self._sinks(self.config.alerts)
        self.router = Router(self.config.alerts.routes, [s.name for s in self.sinks])
        self.store = Store.open(self.config.state_path, clock=clock)
        resumed = {i.node: i.started_at for i in self.store.open_incidents()}
        self.live.resume(resumed)
        self._resumed_incidents = len(resumed)
        self.probe_state = ProbeState(self.store)
        # The watchdog's own trouble, told apart from the estate's.
        self.loop_monitor = LoopMonitor()
        self.impairment = Impairment()
        self.latency = LatencyWatch(self.probe_state)
        self.latency.replace(self.config.probes)
        self._clients = HttpClients()
        self._logs: dict[str, tuple[ProbeConfig, LogProbe]] = {}
        self._anomalies: dict[str, tuple[str, ...]] = {}  # by probe key
        self._checks = self._build(self.config.probes)
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
        self.alert_state = AlertState(self.store)
        self.alerting.restore(self.alert_state.load())
        self.outbox = Outbox(self.store)
        self.metrics.read_at_scrape(self.outbox.counts)
        self.silences = Silences(self.store)
        self.api_token = os.environ.get(TOKEN_ENV) or None
        if self.api_token is not None:
            self.secrets.add(self.api_token)
        self.alert_rounds = 0
        self._refreshed: dict[str, float] = {}
        self.delivery = Delivery(self.outbox, {s.name: s for s in self.sinks}, clock)
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: ApiServer | None = None
        self._snapped: tuple[float, Snapshot] | None = None
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

    def incidents(self, since: float, node: str | None = None) -> list[dict[str, Any]]:
        """Incidents open at any time since `since`, as JSON."""
        now = self.clock()
        return [i.to_json(now) for i in self.store.incidents(since, node)]

    async def reload(self) -> Reload:
        """Read the file again; put it in force if it is valid, else keep the
        running one and say why (in the log, the answer and the metrics)."""
        try:
            # Parsing a large file takes a while: not on the loop that probes.
            config = await asyncio.to_thread(load_config, self.path)
        except InvalidInput as err:
            problems = tuple(str(p) for p in err.problems)
            for problem in problems:
                log.error("reload refused: %s", problem)
            self.metrics.reloaded(False, self.clock())
            return Reload(False, problems)
        refused: list[str] = []
        try:
            router = Router(config.alerts.routes, [s.name for s in self.sinks])
        except ValueError as err:
            # Sinks are built at start (their secrets are read then).
            refused.append(f"{self.path}: alerts.routes: {err}: restart the daemon to add sinks")
        templates = Templates(config.alerts.templates)
        refused.extend(f"alerts.templates: {p}" for p in templates.check(_TEMPLATED))
        if refused:
            for problem in refused:
                log.error("reload refused: %s", problem)
            self.metrics.reloaded(False, self.clock())
            return Reload(False, tuple(refused))
        self.templates.adopt(templates)
        removed = set(self.config.topology.nodes) - set(config.topology.nodes)
        self.config = config
        self.router = router
        self._checks = self._build(config.probes)
        self.latency.replace(config.probes)
        transitions = self.live.replace(config.topology, config.probes)
        if removed:
            # Nothing will report them up again: their open incidents end now.
            ended = self.store.end_incidents(removed, self.clock())
            log.info("reload removed nodes=%d ended_incidents=%d", len(removed), ended)
        self.scheduler.replace(self._scheduled(config.probes))
        self._commit(transitions)
        self._snapped = None  # the API answers from the new topology at once
        self.metrics.reloaded(True, self.clock())
        log.info("reloaded nodes=%d probes=%d", len(config.topology), len(config.probes))
        return Reload(True)

    # --- running ----------------------------------------------------------

    async def run(self) -> None:
        """Probe, serve and record until SIGTERM, SIGINT or `stop()`; then
        stop within `STOP_S` whatever the load, having finished its writes.
        `ListenError` when the API cannot listen (nothing was started)."""
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        host, port = self.listen
        server = self._api = ApiServer(
            create_app(self),
            host,
            port,
            max_connections=self.config.server.max_connections,
            header_timeout_s=self.config.server.header_timeout_s,
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
        ]
        if self.config.alerts.alertmanager_url or self.config.alerts.heartbeat_url:
            tasks.append(asyncio.create_task(self._heartbeat_loop()))
        self.scheduler.start()
        self.delivery.start()
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

        api = asyncio.create_task(asyncio.to_thread(self._stop_api, 1.5))
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=left(0.1))
        await self.scheduler.shutdown(grace_s=min(1.0, left(0.25)))
        # A send cut off here is tried again at the next start.
        await self.delivery.stop(timeout_s=min(1.0, left(0.3)))
        self.save_learned()
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
        self.store.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("stopped")

    def _stop_api(self, timeout_s: float) -> None:
        if self._api is not None:
            self._api.stop(timeout_s)

    def save_learned(self) -> None:
        """Save what the probes learned (latency baselines), so that a
        restart does not learn it again; failures are logged."""
        try:
            self.latency.save(self.clock())
        except StoreError as err:
            log.error("cannot save what probes learned: %s", err)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL_S)
            self.save_learned()

    def stop(self) -> None:
        """Ask `run()` to return."""
        if self._stopping is not None:
            self._stopping.set()

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0), once serving."""
        server = self._api
        return server.port if server is not None and server.running else None

    # --- what the API asks, from its own thread ------------------------------

    async def on_daemon(self, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()` on the daemon's loop, from the API's thread (or
        from the loop itself); `Busy` when the loop does not get to it
        within `API_WAIT_S`."""
        loop = self._loop
        if loop is None or loop is asyncio.get_running_loop():
            return await call()
        future = asyncio.run_coroutine_threadsafe(_awaited(call), loop)
        try:
            async with asyncio.timeout(API_WAIT_S):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise Busy(f"the watchdog's loop did not answer within {API_WAIT_S:g}s") from None

    async def snapshot(self) -> Snapshot:
        """The state the API answers from, taken on the daemon's loop and
        kept for `SNAPSHOT_TTL_S`, so that many clients cost it little."""

        async def take() -> Snapshot:
            return self._snapshot()

        return await self.on_daemon(take)

    def _snapshot(self) -> Snapshot:
        now = time.monotonic()
        kept = self._snapped
        if kept is not None and now - kept[0] < SNAPSHOT_TTL_S:
            return kept[1]
        latency = {
            key: LatencyView(
                node,
                key,
                baseline.window(),
                baseline.baseline_s,
                baseline.spread_s,
                None if baseline.regression is None else baseline.regression.reason,
            )
            for node, key, baseline in self.latency.baselines()
        }
        snapshot = Snapshot(
            taken_at=self.clock(),
            live=self.live.view(),
            latency=latency,
            logs={
                key: (probe.details(private=False), probe.details(private=True))
                for key, (_, probe) in self._logs.items()
            },
            alerts=tuple(self.alerting.alerts),
        )
        self._snapped = (now, snapshot)
        return snapshot

    def outbox_counts(self) -> Mapping[tuple[str, str], int]:
        """Notifications per (sink, state); safe from any thread."""
        return self.outbox.counts()

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
            [ConsoleSink(templates=templates)] if "console" in alerts.sink_names else []
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

    def watch(self) -> None:
        """Bring the close watch up to date with the running maneuvers: the
        critical nodes they impact are probed at least every
        `WATCH_INTERVAL_S`, and their alerts skip the settle window."""
        watched = self.maneuvers.watched()
        if watched != self.watched:
            self.watched = watched
            self.scheduler.replace(self._scheduled(self.config.probes))
            log.info("watching closely nodes=%s", ",".join(sorted(watched)) or "-")

    def _scheduled(self, probes: tuple[ProbeConfig, ...]) -> tuple[ProbeConfig, ...]:
        """`probes`, those of watched nodes made to run more often."""
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

    def announce(self, notification: Notification) -> None:
        """Queue a notification for every sink (maneuvers); the alert loop
        delivers it."""
        self._queue([notification], self.clock())

    async def alert_once(self) -> int:
        """One round of the alert loop: the rules over the live state, what
        is due queued for the sinks (each sink's own worker delivers it, so
        a slow sink holds up nothing else); returns how many notifications
        were queued."""
        self.alert_rounds += 1
        self.metrics.alert_rounds.inc()
        if not self.live.settled:
            return 0
        now = self.clock()
        failed = self.live.failed()
        if self._anomalies:
            anomalies = self.anomalies()
            failed = [
                dataclasses.replace(f, anomalies=anomalies[f.node]) if f.node in anomalies else f
                for f in failed
            ]
        mono = time.monotonic()
        impaired = self.impairment.alert(
            now, self.loop_monitor.stalled_s(mono - self.impairment.window_s, mono)
        )
        notes = self.alerting.update(
            now,
            failed,
            self.live.drifting(),
            watched=self.watched,
            extra=[impaired] if impaired is not None else [],
        )
        if notes:
            notes = self._unmuted(notes, now)
        # Queued first, then the alert state: a crash between the two makes
        # the same notifications again, with the same ids, which the outbox
        # takes once.
        self._queue(notes, now)
        self.alert_state.save(self.alerting.take_changes(), now)
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
            for note in self._unmuted(routed, now) if routed else ():
                receipt = self.outbox.receipt(note, sink.name)
                if receipt is not None:  # not yet delivered: the outbox sends it
                    firing.append((note, receipt))
            try:
                await sink.refresh(firing)
            except SinkError as err:
                log.warning("alertmanager refresh failed sink=%s error=%s", sink.name, err)

    def _unmuted(self, notes: list[Notification], now: float) -> list[Notification]:
        """`notes` without those a silence in force mutes (silences read once)."""
        active, topology = self.silences.active(now), self.live.topology
        return [n for n in notes if self.silences.muting(n.alert, topology, now, active) is None]

    def _queue(self, notes: list[Notification], now: float) -> None:
        """Each notification into the outbox for the sinks its route names."""
        by_sinks: dict[tuple[str, ...], list[Notification]] = {}
        for note in notes:
            by_sinks.setdefault(self.router.decide(note.alert).sinks, []).append(note)
        for sinks, group in by_sinks.items():
            self.outbox.put(group, list(sinks), now)
        if notes:
            self.delivery.wake()

    # --- the probe loop ---------------------------------------------------

    def _build(self, probes: tuple[ProbeConfig, ...]) -> dict[str, Probe]:
        """A probe for each of `probes`; a log probe whose settings did not
        change is kept (its open files and what it learned), the others are
        made anew, and those gone are closed and their saved state dropped."""
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
                        state=self.probe_state,
                        clock=self.clock,
                        interval_s=p.schedule.interval_s,
                    )
                    logs[p.key] = (p, probe)
                checks[p.key] = logs[p.key][1]
        for _, gone in self._logs.values():
            gone.close()
        self._logs = logs
        self._anomalies = {k: v for k, v in self._anomalies.items() if k in checks}
        self.probe_state.forget(checks)
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
        )
        if transitions:
            self._commit(transitions)
        if self.live.ready and not was_ready:
            log.info("ready: every probe has reported")

    def _commit(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        topology = self.live.topology
        targets = {t.node: topology.recovery_target_s(t.node) for t in transitions}
        self.store.record(transitions, recovery_targets=targets)
        self.metrics.count(transitions)
        for t in transitions:
            if t.view == "effective" and (t.new >= State.DEGRADED or t.old >= State.DEGRADED):
                # Critical nodes and root causes stand out; a farm's fifty
                # dependents going down with it need not.
                loud = topology.node(t.node).critical or t.node in t.root_cause
                transitions_log.log(
                    logging.WARNING if loud else logging.INFO,
                    "transition node=%s %s -> %s cause=%s",
                    t.node,
                    t.old,
                    t.new,
                    ",".join(t.root_cause) or "-",
                )

    def _lag(self, key: str, seconds: float) -> None:
        self.metrics.lag.observe(seconds)
