"""The daemon's settings, read from the same file as the topology: the probes
under each node, `server` and `state` (an SQLite file, `path`, or a Postgres
database, `url` with its password in the environment variable named by
`password_env`). Every problem in the file, the topology's and ours, is
reported at once.

Every number of the file has bounds; a value outside them is a problem of
the file (exit 3), never a crash later:

| key | at least | at most |
|---|---|---|
| any duration | | 100 years (`topology.MAX_DURATION_S`) |
| `recovery_target` (a node's, `defaults.recovery_target.*`) | more than 0 | 365d |
| probe `interval` | 100ms | 1d |
| probe `timeout` | 10ms | 1h |
| probe `failure_threshold`, `success_threshold` | 1 | 100 |
| probe `latency_threshold` | 1ms | 1h |
| http `max_body_bytes` | 1 | 64 MiB (67108864) |
| http `expect_status` | 100 | 599 |
| http `method` | an RFC 9110 token (`GET`, `PROPFIND`), at most 32 characters | |
| http `headers` | names are tokens; values ASCII text and tabs, no CR/LF | |
| http `tls_expiry_warning` (https:// URLs only) | 0s (no warning) | 365d |
| exec command | a non-empty first word, no NUL character | |
| prometheus `down_if`, `degraded_if` | an operator (`<` `<=` `>` `>=` `==` `!=`), a number | |
| log `rate_interval` | 1s | 1d |
| log `learning` | 0s | 90d |
| log `silence` | 1s | 30d |
| log `spike_factor` | 1 | 1000 |
| log `min_errors` | 1 | 1000000 |
| log `max_templates` | 1 | 100000 |
| log `max_line_bytes` | 1 | 1 MiB (1048576) |
| `server.listen` | host:port, port 1 to 65535 | |
| `server.max_connections` | 1 | 4096 |
| `server.header_timeout` | 100ms | 10m |
| `alerts.settle` | 0s | 1h |
| `alerts.repeat_interval` | 1m | 30d |
| `alerts.heartbeat.interval` | 100ms | 1d |
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from alerts.routing import Route
from topology import InvalidInput, Problem, Topology, read_document, topology_from_document
from topology.document import Document, Reader, describe, quote, redact_url, redact_urls, suggest
from topology.sources.declared import Fetch, SourceSpec, read_sources
from topology.yamltree import STR, MappingNode, ScalarNode, SequenceNode, YamlNode
from watchdog.log_config import LOG_KEYS, read_log_spec
from watchdog.probes import ExecSpec, HttpSpec, TcpSpec
from watchdog.probes.http import (
    MAX_BODY_BYTES_LIMIT,
    MAX_TLS_EXPIRY_WARNING_S,
    header_trouble,
    method_trouble,
)
from watchdog.probes.log import LogSpec
from watchdog.probes.prometheus import Comparison, PrometheusServer, PrometheusSpec
from watchdog.routes_config import read_routes

__all__ = [
    "DEFAULT_LISTEN",
    "TOKEN_ENV",
    "AlertsConfig",
    "DaemonConfig",
    "LogSpec",
    "ProbeConfig",
    "Schedule",
    "ServerConfig",
    "SlackConfig",
    "config_from_document",
    "load_config",
]

DEFAULT_LISTEN = ("127.0.0.1", 9120)
# The environment variable holding the bearer token of the mutating API
# endpoints (the daemon reads it; the CLI sends it).
TOKEN_ENV = "WATCHDOG_API_TOKEN"
DEFAULT_SETTLE_S = 10.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0
DEFAULT_SLACK_API = "https://slack.com/api/"
DEFAULT_STATE = "watchdog.db"
# Enough for Prometheus, a few dashboards and scripts; few enough that idle
# clients cannot take the descriptors the probes need.
DEFAULT_MAX_CONNECTIONS = 128
DEFAULT_HEADER_TIMEOUT_S = 10.0
MAX_CONNECTIONS_LIMIT = 4096

_DAY = 86400.0
# The bounds of the module docstring's table, (at least, at most).
INTERVAL_S = (0.1, _DAY)
TIMEOUT_S = (0.01, 3600.0)
THRESHOLD = (1, 100)
LATENCY_THRESHOLD_S = (0.001, 3600.0)
HEADER_TIMEOUT_S = (0.1, 600.0)
# A replica's lease: long enough for a few renewals to fail before it is
# lost (one every third of it), short enough that a dead holder's duties
# move soon.
DEFAULT_LEASE_S = 15.0
LEASE_S = (2.0, 300.0)
SETTLE_S = (0.0, 3600.0)
REPEAT_INTERVAL_S = (60.0, 30 * _DAY)
HEARTBEAT_INTERVAL_S = (0.1, _DAY)
# Folders and URLs are quoted longer than names in messages: they are long.
_QUOTED_PATH = 300

# Keys every probe takes, beside its kind's own; defaults as Gatus has them.
COMMON_KEYS = ("interval", "timeout", "failure_threshold", "success_threshold")
DEFAULT_INTERVAL_S = 30.0
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 2


Spec = HttpSpec | TcpSpec | ExecSpec | LogSpec | PrometheusSpec


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a probe runs and how many results in a row change its verdict
    (hysteresis: a flapping target does not flap the node)."""

    interval_s: float = DEFAULT_INTERVAL_S
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """One probe of one node, as written at `line`."""

    node: str
    index: int
    kind: str
    spec: Spec
    schedule: Schedule
    line: int

    @property
    def key(self) -> str:
        """A stable, bounded name for metrics and logs: `node#index`."""
        return f"{self.node}#{self.index}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the API, /metrics and the status page listen, and how much of
    the daemon they may take: open connections at most, how long a client
    may take to send a request's head, and whether /metrics adds a duration
    histogram per probe."""

    host: str = DEFAULT_LISTEN[0]
    port: int = DEFAULT_LISTEN[1]
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    metrics_detail: bool = False


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """Slack through its Web API (a bot token) or an incoming webhook; the
    secret itself is read from the environment variable named here."""

    channels: Mapping[str, str]
    token_env: str | None = None
    webhook_url_env: str | None = None
    base_url: str = DEFAULT_SLACK_API


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """When to speak and where: the console when no sink is configured."""

    settle_s: float = DEFAULT_SETTLE_S
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S
    slack: SlackConfig | None = None
    alertmanager_url: str | None = None
    # The other Alertmanagers of its cluster (`alertmanager: {urls: [...]}`):
    # each alert is posted to every one, as Prometheus does.
    alertmanager_peers: tuple[str, ...] = ()
    webhook_url: str | None = None
    # The dead man's switch: an always-firing `Watchdog` alert to
    # Alertmanager and/or a GET of this URL, every heartbeat interval.
    heartbeat_url: str | None = None
    heartbeat_interval_s: float = 60.0
    routes: tuple[Route, ...] = ()
    # A folder of jinja2 templates that replace the built-in ones of the
    # same name; relative to the file.
    templates: str | None = None

    @property
    def sink_names(self) -> tuple[str, ...]:
        """The sinks these settings configure, by name (the console when
        none is, or when a route names it)."""
        names = []
        if self.slack is not None and self.slack.token_env:
            names.append("slack")
        if self.slack is not None and self.slack.webhook_url_env:
            names.append("slack-webhook")
        if self.alertmanager_url:
            names.append("alertmanager")
        if self.webhook_url:
            names.append("webhook")
        if not names or any("console" in r.sinks for r in self.routes):
            names.insert(0, "console")
        return tuple(names)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """`cluster:`: this daemon is one replica of several sharing one
    Postgres store. `replica` names it (None: the host name and the API's
    port); the lease says how long a replica that stopped renewing keeps
    the duties only one may have; with `shards`, the replicas split the
    probes between them instead of each running all."""

    replica: str | None = None
    lease_s: float = DEFAULT_LEASE_S
    shards: bool = False


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Everything the daemon needs from one file."""

    source: str
    topology: Topology
    probes: tuple[ProbeConfig, ...]
    server: ServerConfig = field(default_factory=ServerConfig)
    state_path: str = DEFAULT_STATE
    # `state.url`: the store in Postgres instead of the file at `state_path`,
    # its password in the environment variable `state_password_env`.
    state_url: str | None = None
    state_password_env: str | None = None
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    # The line of some settings by path (`alerts.slack.token_env`,
    # `alerts.templates`, `state.path`...), for problems found after loading.
    lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # `defaults.prometheus`: the Prometheus of probes that name none, and of
    # the observed-edges check.
    prometheus: PrometheusServer | None = None
    # The file's `sources:`: the live ones are read again on their interval.
    sources: tuple[SourceSpec, ...] = ()
    # `cluster:`: None for a daemon on its own.
    cluster: ClusterConfig | None = None

    @property
    def state(self) -> str:
        """Where the store is: the Postgres URL, else the file's path."""
        return self.state_url if self.state_url is not None else self.state_path


def load_config(path: str | Path, fetch: Fetch | None = None) -> DaemonConfig:
    """The topology and the daemon's settings in the file at `path`, its
    `sources:` read (live ones through `fetch`).

    Raises `InvalidInput` with every problem of the file, whichever part of
    it they are in.
    """
    return config_from_document(read_document(path), fetch)


def config_from_document(document: Document, fetch: Fetch | None = None) -> DaemonConfig:
    """The topology and the daemon's settings in a parsed document (a file,
    or standard input: paths in it are then relative to the current
    directory). Raises `InvalidInput` with every problem."""
    problems: list[Problem] = []
    topology: Topology | None = None
    try:
        topology = topology_from_document(document, fetch)
    except InvalidInput as err:
        problems.extend(err.problems)
    reader = Reader(document.source)
    settings = _Settings(reader, document)
    problems.extend(reader.problems)
    if problems or topology is None:
        raise InvalidInput(problems)
    state = settings.state_path
    if state != ":memory:" and not Path(state).is_absolute():
        # Relative to the file, so the daemon finds its history whatever the
        # directory it was started from.
        state = str(Path(document.source).resolve().parent / state)
    return DaemonConfig(
        source=document.source,
        topology=topology,
        probes=settings.probes,
        server=settings.server,
        state_path=state,
        state_url=settings.state_url,
        state_password_env=settings.state_password_env,
        alerts=settings.alerts,
        lines=MappingProxyType(settings.lines),
        sources=_sources(document),
        prometheus=settings.prometheus,
        cluster=settings.cluster,
    )


def _sources(document: Document) -> tuple[SourceSpec, ...]:
    """The `sources:` of a document the topology accepted (so without
    problems: those were reported with the topology's)."""
    root = document.root
    if not isinstance(root, MappingNode):
        return ()
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == "sources":
            base = Path(document.source).resolve().parent
            return tuple(read_sources(Reader(document.source), value, base))
    return ()


_HOST_PORT = re.compile(
    r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<p6>\d{1,5})|(?P<host>[^:\s]+):(?P<port>\d{1,5})"
)


def _host_port(text: str) -> tuple[str, int] | None:
    """`host:port` or `[v6]:port`, the port in range; None otherwise."""
    match = _HOST_PORT.fullmatch(text)
    if match is None:
        return None
    host = match.group("v6") or match.group("host")
    port = int(match.group("p6") or match.group("port"))
    return (host, port) if 0 < port < 65536 else None


class _Settings:
    """Reads `server`, `state` and every node's `probes`."""

    def __init__(self, reader: Reader, document: Document) -> None:
        self.reader = reader
        self.source = document.source
        self.server = ServerConfig()
        self.state_path = DEFAULT_STATE
        self.state_url: str | None = None
        self.state_password_env: str | None = None
        self.probes: tuple[ProbeConfig, ...] = ()
        self.lines: dict[str, int] = {}
        # The topology's reader already reported what is wrong with the
        # shape of the file: this one only finds keys (merges included) and
        # keeps its problems to itself.
        scratch = Reader(document.source)

        def entries(node: YamlNode | None) -> dict[str, YamlNode]:
            if not isinstance(node, MappingNode):
                return {}
            return dict(scratch.items(scratch.mapping(node, "") or {}))

        root = entries(document.root)
        # Before the probes, which may take their Prometheus from it.
        self.prometheus: PrometheusServer | None = None
        self._prometheus_refused = False
        prometheus = entries(root.get("defaults")).get("prometheus")
        if prometheus is not None:
            self._prometheus_defaults(prometheus)
        if "server" in root:
            self._server(root["server"])
        if "state" in root:
            self._state(root["state"])
        self.cluster: ClusterConfig | None = None
        if "cluster" in root:
            self._cluster(root["cluster"])
        self.alerts = AlertsConfig()
        if "alerts" in root:
            self._alerts(root["alerts"])
        found: list[ProbeConfig] = []
        for name, body in entries(root.get("nodes")).items():
            probes = entries(body).get("probes")
            if isinstance(probes, SequenceNode):
                found.extend(self._probes(name, probes))
        self.probes = tuple(found)

    def _server(self, node: YamlNode) -> None:
        reader = self.reader
        keys = ("listen", "max_connections", "header_timeout", "metrics_detail")
        fields = reader.mapping(node, "server", keys)
        if not fields:
            return
        server = self.server
        if "listen" in fields:
            value = fields["listen"][1]
            text = reader.string(value, "server.listen")
            where = _host_port(text) if text is not None else None
            if text is not None and where is None:
                reader.problem(
                    value,
                    "server.listen",
                    f"expected host:port such as 127.0.0.1:9120, got {quote(text)}",
                )
            elif where is not None:
                server = replace(server, host=where[0], port=where[1])
        if "max_connections" in fields:
            value = fields["max_connections"][1]
            count = reader.integer(value, "server.max_connections", minimum=1)
            if count is not None and count > MAX_CONNECTIONS_LIMIT:
                reader.problem(
                    value,
                    "server.max_connections",
                    f"{count} is more than {MAX_CONNECTIONS_LIMIT}: every connection holds a "
                    "file descriptor the probes may need",
                )
            elif count is not None:
                server = replace(server, max_connections=count)
        if "header_timeout" in fields:
            seconds = reader.duration(
                fields["header_timeout"][1],
                "server.header_timeout",
                minimum=HEADER_TIMEOUT_S[0],
                maximum=HEADER_TIMEOUT_S[1],
            )
            if seconds is not None:
                server = replace(server, header_timeout_s=seconds)
        if "metrics_detail" in fields:
            detail = reader.boolean(fields["metrics_detail"][1], "server.metrics_detail")
            if detail is not None:
                server = replace(server, metrics_detail=detail)
        self.server = server

    def _state(self, node: YamlNode) -> None:
        reader = self.reader
        fields = reader.mapping(node, "state", ("path", "url", "password_env"))
        if not fields:
            return
        if "path" in fields and "url" in fields:
            reader.problem(node, "state", "a file (path) or a Postgres database (url), not both")
        if "path" in fields:
            self.lines["state.path"] = fields["path"][1].line
            path = reader.string(fields["path"][1], "state.path", "a file path or :memory:")
            if path is not None:
                self.state_path = path
        if "url" in fields:
            value = fields["url"][1]
            self.lines["state.url"] = value.line
            url = reader.string(value, "state.url", "a postgresql:// URL")
            trouble = _postgres_url_trouble(url) if url is not None else None
            if trouble is not None:
                reader.problem(value, "state.url", trouble)
            elif url is not None:
                self.state_url = url
        if "password_env" in fields:
            value = fields["password_env"][1]
            self.lines["state.password_env"] = value.line
            name = reader.string(value, "state.password_env")
            if "url" not in fields:
                reader.problem(
                    value, "state.password_env", "only with state.url: a file has no password"
                )
            elif name is not None and not _ENV_NAME.fullmatch(name):
                reader.problem(
                    value,
                    "state.password_env",
                    f"expected the name of an environment variable, got {quote(name)}",
                )
            elif name is not None:
                self.state_password_env = name

    def _urls(self, sub: dict[str, tuple[YamlNode, YamlNode]], path: str) -> list[str]:
        """`urls:` (not with `url:`): one URL or more, each once."""
        reader = self.reader
        if "url" in sub:
            reader.problem(sub["urls"][1], f"{path}.urls", "url or urls, not both")
            return []
        items = reader.sequence(sub["urls"][1], f"{path}.urls", "a list of URLs") or []
        if not items and isinstance(sub["urls"][1], SequenceNode):
            reader.problem(sub["urls"][1], f"{path}.urls", "expected one URL or more")
        found: list[str] = []
        for index, item in enumerate(items):
            url = reader.url(item, f"{path}.urls[{index}]")
            if url is not None and url in found:
                reader.problem(item, f"{path}.urls[{index}]", "listed twice")
            elif url is not None:
                found.append(url)
        return found if len(found) == len(items) else []

    def _cluster(self, node: YamlNode) -> None:
        reader = self.reader
        fields = reader.mapping(node, "cluster", ("replica", "lease", "shards"))
        if fields is None:
            return
        cluster = ClusterConfig()
        if self.state_url is None:
            reader.problem(
                node,
                "cluster",
                "replicas share their state in Postgres: set state.url (SQLite is for one daemon)",
            )
        if "replica" in fields:
            value = fields["replica"][1]
            name = reader.string(value, "cluster.replica")
            if name is not None and not _REPLICA.fullmatch(name):
                reader.problem(
                    value,
                    "cluster.replica",
                    f"expected 1 to 64 letters, digits or . _ : @ -, got {quote(name)}",
                )
            elif name is not None:
                cluster = replace(cluster, replica=name)
        if "lease" in fields:
            seconds = reader.duration(
                fields["lease"][1], "cluster.lease", minimum=LEASE_S[0], maximum=LEASE_S[1]
            )
            if seconds is not None:
                cluster = replace(cluster, lease_s=seconds)
        if "shards" in fields:
            value = fields["shards"][1]
            text = value.value if isinstance(value, ScalarNode) else None
            if text not in ("auto", "off"):
                reader.problem(
                    value,
                    "cluster.shards",
                    f"expected auto (the replicas split the probes) or off, got {describe(value)}",
                )
            else:
                cluster = replace(cluster, shards=text == "auto")
        self.cluster = cluster

    def _alerts(self, node: YamlNode) -> None:
        reader = self.reader
        keys = (
            "settle",
            "repeat_interval",
            "slack",
            "alertmanager",
            "webhook",
            "heartbeat",
            "routes",
            "templates",
        )
        fields = reader.mapping(node, "alerts", keys)
        if not fields:
            return
        values = {key: value for key, (_, value) in fields.items()}
        settle = (
            reader.duration(values["settle"], "alerts.settle", positive=False, maximum=SETTLE_S[1])
            if "settle" in values
            else None
        )
        repeat = (
            reader.duration(
                values["repeat_interval"],
                "alerts.repeat_interval",
                minimum=REPEAT_INTERVAL_S[0],
                maximum=REPEAT_INTERVAL_S[1],
            )
            if "repeat_interval" in values
            else None
        )
        slack = self._slack(values["slack"]) if "slack" in values else None
        urls: dict[str, str] = {}
        interval = None
        peers: list[str] = []
        for key in ("alertmanager", "webhook", "heartbeat"):
            if key in values:
                allowed = {"heartbeat": ("url", "interval"), "alertmanager": ("url", "urls")}
                sub = reader.mapping(values[key], f"alerts.{key}", allowed.get(key, ("url",))) or {}
                if key == "alertmanager" and "urls" in sub:
                    found = self._urls(sub, "alerts.alertmanager")
                    if found:
                        urls[key], *peers = found
                    continue
                if key == "heartbeat":
                    if "interval" in sub:
                        interval = reader.duration(
                            sub["interval"][1],
                            "alerts.heartbeat.interval",
                            minimum=HEARTBEAT_INTERVAL_S[0],
                            maximum=HEARTBEAT_INTERVAL_S[1],
                        )
                    if "url" not in sub:
                        continue  # a heartbeat to Alertmanager alone needs no URL
                if "url" not in sub:
                    reader.problem(values[key], f"alerts.{key}", "missing 'url'")
                    continue
                url = reader.url(sub["url"][1], f"alerts.{key}.url")
                if url is not None:
                    urls[key] = url
        alerts = AlertsConfig(
            settle_s=settle if settle is not None else DEFAULT_SETTLE_S,
            repeat_interval_s=repeat or DEFAULT_REPEAT_INTERVAL_S,
            slack=slack,
            alertmanager_url=urls.get("alertmanager"),
            alertmanager_peers=tuple(peers),
            webhook_url=urls.get("webhook"),
            heartbeat_url=urls.get("heartbeat"),
            heartbeat_interval_s=interval or 60.0,
        )
        if "routes" in values:
            self.lines["alerts.routes"] = values["routes"].line
        routes = (
            read_routes(reader, values["routes"], alerts.sink_names) if "routes" in values else ()
        )
        templates = None
        if "templates" in values:
            self.lines["alerts.templates"] = values["templates"].line
            templates = reader.string(values["templates"], "alerts.templates", "a folder")
            if templates is not None:
                folder = Path(self.source).resolve().parent / templates
                if not folder.is_dir():
                    shown = quote(str(folder), _QUOTED_PATH)
                    reader.problem(
                        values["templates"],
                        "alerts.templates",
                        f"no folder {shown}: create it or remove the key",
                    )
                templates = str(folder)
        self.alerts = replace(alerts, routes=routes, templates=templates)

    def _slack(self, node: YamlNode) -> SlackConfig | None:
        reader = self.reader
        keys = ("token_env", "webhook_url_env", "base_url", "channels", "token", "webhook_url")
        fields = reader.mapping(node, "alerts.slack", keys)
        if fields is None:
            return None
        values = {key: value for key, (_, value) in fields.items()}
        for key in ("token_env", "webhook_url_env"):
            if key in values:
                self.lines[f"alerts.slack.{key}"] = values[key].line
        for secret in ("token", "webhook_url"):
            if secret in values:
                # Refused whatever its value: a secret in a file ends up in
                # version control, backups and support tickets.
                reader.problem(
                    values[secret],
                    f"alerts.slack.{secret}",
                    "secrets never sit in the file: name an environment variable "
                    f"with {secret}_env",
                )
        text = {
            k: reader.string(values[k], f"alerts.slack.{k}")
            for k in ("token_env", "webhook_url_env", "base_url")
            if k in values
        }
        if "token_env" not in values and "webhook_url_env" not in values:
            reader.problem(
                node,
                "alerts.slack",
                "name the environment variable of the bot token (token_env) "
                "or of an incoming webhook (webhook_url_env)",
            )
            return None
        channels: dict[str, str] = {}
        if "channels" in values:
            for key, value in reader.items(
                reader.mapping(values["channels"], "alerts.slack.channels") or {}
            ):
                channel = reader.string(value, f"alerts.slack.channels.{key}", "a channel")
                if channel is not None:
                    channels[key] = channel
        if "token_env" in values and "default" not in channels:
            reader.problem(
                node,
                "alerts.slack.channels",
                'name a default channel, e.g. channels: {default: "#ops"}',
            )
            return None
        return SlackConfig(
            channels=MappingProxyType(channels),
            token_env=text.get("token_env"),
            webhook_url_env=text.get("webhook_url_env"),
            base_url=text.get("base_url") or DEFAULT_SLACK_API,
        )

    def _probes(self, name: str, probes: SequenceNode) -> list[ProbeConfig]:
        out = []
        for i, item in enumerate(probes.value):
            path = f"nodes.{name}.probes[{i}]"
            probe = self._probe(name, i, item, path)
            if probe is not None:
                out.append(probe)
        return out

    def _probe(self, name: str, index: int, item: YamlNode, path: str) -> ProbeConfig | None:
        reader = self.reader
        if not isinstance(item, MappingNode) or not item.value:
            reader.problem(
                item,
                path,
                "expected a probe such as {http: URL}, {tcp: host:port} or {exec: command}",
            )
            return None
        first_key = item.value[0][0]
        kind = first_key.value if isinstance(first_key, ScalarNode) else ""
        if kind not in _KINDS:
            if kind == "https":
                hint = ": an https:// URL is checked by an http probe, write 'http: https://...'"
            else:
                hint = f": a probe starts with its kind, one of {', '.join(_KINDS)}"
            reader.problem(first_key, path, f"unknown probe kind {quote(kind)}{hint}")
            return None
        own_keys, build = _KINDS[kind]
        fields = reader.mapping(item, path, (kind, *COMMON_KEYS, *own_keys))
        if fields is None:
            return None
        values = {key: value for key, (_, value) in fields.items()}
        schedule = self._schedule(values, path, kind)
        timeout = values.get("timeout")
        timeout_s = (
            reader.duration(timeout, f"{path}.timeout", minimum=TIMEOUT_S[0], maximum=TIMEOUT_S[1])
            if timeout is not None
            else None
        )
        spec = build(self, values, path, timeout_s)
        if spec is None or schedule is None or (timeout is not None and timeout_s is None):
            return None
        return ProbeConfig(name, index, kind, spec, schedule, item.line)

    def _schedule(self, values: dict[str, YamlNode], path: str, kind: str) -> Schedule | None:
        reader = self.reader
        defaults = _LOG_SCHEDULE if kind == "log" else Schedule()
        interval = defaults.interval_s
        ok = True
        if "interval" in values:
            got = reader.duration(
                values["interval"],
                f"{path}.interval",
                minimum=INTERVAL_S[0],
                maximum=INTERVAL_S[1],
            )
            ok = got is not None
            interval = got or interval
        thresholds = {}
        for key, default in (
            ("failure_threshold", defaults.failure_threshold),
            ("success_threshold", defaults.success_threshold),
        ):
            thresholds[key] = default
            if key in values:
                got_int = reader.integer(
                    values[key], f"{path}.{key}", minimum=THRESHOLD[0], maximum=THRESHOLD[1]
                )
                ok = ok and got_int is not None
                thresholds[key] = got_int or default
        if not ok:
            return None
        return Schedule(interval, thresholds["failure_threshold"], thresholds["success_threshold"])

    # --- each kind: its own keys and how its spec is built ------------------

    def _http(
        self, values: dict[str, YamlNode], path: str, timeout_s: float | None
    ) -> HttpSpec | None:
        reader = self.reader
        url = reader.url(values["http"], f"{path}.http")
        kwargs: dict[str, Any] = {}
        ok = url is not None
        if timeout_s is not None:
            kwargs["timeout_s"] = timeout_s
        if "method" in values:
            method = reader.string(values["method"], f"{path}.method")
            trouble = method_trouble(method.upper()) if method is not None else None
            if method is not None and trouble is not None:
                reader.problem(
                    values["method"], f"{path}.method", f"{trouble}, got {quote(method)}"
                )
                method = None
            ok = ok and method is not None
            if method is not None:
                kwargs["method"] = method.upper()
        if "headers" in values:
            headers = {}
            for key, value in reader.items(
                reader.mapping(values["headers"], f"{path}.headers") or {}
            ):
                text = reader.string(value, f"{path}.headers.{key}")
                trouble = header_trouble(key, text) if text is not None else None
                if trouble is not None:
                    # A header's value is often a credential: never quoted.
                    reader.problem(value, f"{path}.headers.{key}", trouble)
                    text = None
                ok = ok and text is not None
                headers[key] = text or ""
            kwargs["headers"] = MappingProxyType(headers)
        if "expect_status" in values:
            codes = self._status_codes(values["expect_status"], f"{path}.expect_status")
            ok = ok and codes is not None
            kwargs["expect_status"] = codes or ()
        if "body_contains" in values:
            text = reader.string(values["body_contains"], f"{path}.body_contains")
            ok = ok and text is not None
            kwargs["body_contains"] = text
        if "body_regex" in values:
            pattern = reader.regex(values["body_regex"], f"{path}.body_regex")
            ok = ok and pattern is not None
            kwargs["body_regex"] = pattern
        for key in ("follow_redirects", "verify_tls"):
            if key in values:
                flag = reader.boolean(values[key], f"{path}.{key}")
                ok = ok and flag is not None
                kwargs[key] = bool(flag)
        if "max_body_bytes" in values:
            size = reader.integer(
                values["max_body_bytes"],
                f"{path}.max_body_bytes",
                minimum=1,
                maximum=MAX_BODY_BYTES_LIMIT,
            )
            ok = ok and size is not None
            kwargs["max_body_bytes"] = size
        if "tls_expiry_warning" in values:
            node = values["tls_expiry_warning"]
            warning = reader.duration(
                node,
                f"{path}.tls_expiry_warning",
                positive=False,
                maximum=MAX_TLS_EXPIRY_WARNING_S,
            )
            if warning is not None and url is not None and url[:8].lower() != "https://":
                # Accepted, it would never warn: the URL was meant to be https.
                reader.problem(
                    node,
                    f"{path}.tls_expiry_warning",
                    "only an https:// URL has a certificate to check: "
                    "probe the https:// URL or remove the key",
                )
                warning = None
            ok = ok and warning is not None
            kwargs["tls_expiry_warning_s"] = warning
        if not self._latency(values, path, kwargs):
            ok = False
        return HttpSpec(url=url, **kwargs) if ok and url is not None else None

    def _status_codes(self, node: YamlNode, path: str) -> tuple[int, ...] | None:
        items = node.value if isinstance(node, SequenceNode) else [node]
        codes = []
        for i, item in enumerate(items):
            where = f"{path}[{i}]" if isinstance(node, SequenceNode) else path
            code = self.reader.integer(item, where)
            if code is not None and not 100 <= code <= 599:
                self.reader.problem(item, where, f"expected an HTTP status code, got {code}")
                code = None
            if code is None:
                return None
            codes.append(code)
        return tuple(codes)

    def _latency(self, values: dict[str, YamlNode], path: str, kwargs: dict[str, Any]) -> bool:
        if "latency_threshold" not in values:
            return True
        got = self.reader.duration(
            values["latency_threshold"],
            f"{path}.latency_threshold",
            minimum=LATENCY_THRESHOLD_S[0],
            maximum=LATENCY_THRESHOLD_S[1],
        )
        kwargs["latency_threshold_s"] = got
        return got is not None

    def _tcp(
        self, values: dict[str, YamlNode], path: str, timeout_s: float | None
    ) -> TcpSpec | None:
        reader = self.reader
        text = reader.string(values["tcp"], f"{path}.tcp", "host:port")
        where = _host_port(text) if text is not None else None
        if text is not None and where is None:
            reader.problem(
                values["tcp"], f"{path}.tcp", f"expected host:port or [v6]:port, got {quote(text)}"
            )
        kwargs: dict[str, Any] = {}
        ok = where is not None
        if timeout_s is not None:
            kwargs["timeout_s"] = timeout_s
        for key in ("send", "expect"):
            if key in values:
                got = reader.string(values[key], f"{path}.{key}")
                ok = ok and got is not None
                kwargs[key] = got
        if not self._latency(values, path, kwargs):
            ok = False
        if not ok or where is None:
            return None
        return TcpSpec(host=where[0], port=where[1], **kwargs)

    def _exec(
        self, values: dict[str, YamlNode], path: str, timeout_s: float | None
    ) -> ExecSpec | None:
        reader = self.reader
        node = values["exec"]
        argv: list[str] | None = None
        if isinstance(node, SequenceNode):
            parts = [reader.string(item, f"{path}.exec[{i}]") for i, item in enumerate(node.value)]
            argv = [p for p in parts if p is not None] if None not in parts else None
        else:
            text = reader.string(node, f"{path}.exec", "a command")
            if text is not None:
                try:
                    argv = shlex.split(text)
                except ValueError as err:
                    # A command line can carry a URL with its password.
                    shown = quote(redact_urls(text), _QUOTED_PATH)
                    reader.problem(node, f"{path}.exec", f"bad command {shown}: {err}")
        if argv is not None and (not argv or not argv[0]):
            reader.problem(node, f"{path}.exec", "empty command")
            argv = None
        elif argv is not None and any("\0" in arg for arg in argv):
            reader.problem(node, f"{path}.exec", "a command cannot hold a NUL character")
            argv = None
        if argv is None:
            return None
        return ExecSpec(argv=tuple(argv), **({"timeout_s": timeout_s} if timeout_s else {}))

    def _log(
        self, values: dict[str, YamlNode], path: str, timeout_s: float | None
    ) -> LogSpec | None:
        if timeout_s is not None:
            self.reader.problem(values["timeout"], f"{path}.timeout", "a log probe has no timeout")
        base = Path(self.source).resolve().parent
        return read_log_spec(self.reader, values, path, base)

    def _prometheus(
        self, values: dict[str, YamlNode], path: str, timeout_s: float | None
    ) -> PrometheusSpec | None:
        reader = self.reader
        query = reader.string(values["prometheus"], f"{path}.prometheus", "a PromQL query")
        if query is not None and not query.strip():
            reader.problem(values["prometheus"], f"{path}.prometheus", "empty query")
            query = None
        ok = query is not None
        comparisons: dict[str, Comparison | None] = {}
        for key in ("down_if", "degraded_if"):
            comparisons[key] = None
            if key in values:
                comparisons[key] = self._comparison(values[key], f"{path}.{key}")
                ok = ok and comparisons[key] is not None
        alert = False
        if "alert" in values:
            flag = reader.boolean(values["alert"], f"{path}.alert")
            ok = ok and flag is not None
            alert = bool(flag)
        server = self._prometheus_server(values, path, own=True)
        if "url" not in values and self.prometheus is not None and server is not None:
            # The file's Prometheus, with what the probe says of TLS and
            # credentials over what the defaults say.
            default = self.prometheus
            own_credentials = any(k in values for k in _CREDENTIAL_KEYS)
            credentials = server if own_credentials else default
            server = PrometheusServer(
                default.url,
                bearer_token_env=credentials.bearer_token_env,
                username=credentials.username,
                password_env=credentials.password_env,
                verify_tls=server.verify_tls if "verify_tls" in values else default.verify_tls,
            )
        elif "url" not in values and server is not None:
            server = None
            if not self._prometheus_refused:
                reader.problem(
                    values["prometheus"],
                    path,
                    "no Prometheus to ask: give its url here, "
                    "or once for the file in defaults.prometheus.url",
                )
        if not ok or query is None or server is None:
            return None
        return PrometheusSpec(
            query,
            server,
            down_if=comparisons["down_if"],
            degraded_if=comparisons["degraded_if"],
            alert=alert,
            **({"timeout_s": timeout_s} if timeout_s is not None else {}),
        )

    def _comparison(self, node: YamlNode, path: str) -> Comparison | None:
        text = node.value if isinstance(node, ScalarNode) and node.tag == STR else None
        try:
            if text is None:
                raise ValueError(
                    "expected an operator (<, <=, >, >=, ==, !=) and a number, in quotes, "
                    "e.g. '< 1'"
                )
            return Comparison.parse(text)
        except ValueError as err:
            self.reader.problem(node, path, f"{err}, got {describe(node)}")
            return None

    def _prometheus_defaults(self, node: YamlNode) -> None:
        """`defaults.prometheus`: the server of probes that name none."""
        path = "defaults.prometheus"
        fields = self.reader.mapping(node, path, _SERVER_KEYS)
        if fields is None:
            self._prometheus_refused = True
            return
        values = {key: value for key, (_, value) in fields.items()}
        self.lines[path] = node.line
        if "url" not in values:
            self.reader.problem(node, path, "missing 'url', the address of the Prometheus")
        self.prometheus = self._prometheus_server(values, path, own=False)
        self._prometheus_refused = self.prometheus is None

    def _prometheus_server(
        self, values: dict[str, YamlNode], path: str, *, own: bool
    ) -> PrometheusServer | None:
        """The server settings among `values` (a probe's, `own`, or
        `defaults.prometheus`); a probe without `url` gets a placeholder URL
        that the caller replaces with the file's."""
        reader = self.reader
        ok = True
        url: str | None = "http://defaults.invalid" if own else None
        if "url" in values:
            url = reader.url(values["url"], f"{path}.url")
            if url is not None and urllib.parse.urlsplit(url).password is not None:
                reader.problem(
                    values["url"],
                    f"{path}.url",
                    "secrets never sit in the file: give username and name an environment "
                    "variable with password_env",
                )
                url = None
        for secret in ("bearer_token", "password"):
            if secret in values:
                # Refused whatever its value, as the Slack token is.
                reader.problem(
                    values[secret],
                    f"{path}.{secret}",
                    "secrets never sit in the file: name an environment variable "
                    f"with {secret}_env",
                )
                ok = False
        text: dict[str, str] = {}
        for key in ("bearer_token_env", "username", "password_env"):
            if key in values:
                self.lines[f"{path}.{key}"] = values[key].line
                got = reader.string(values[key], f"{path}.{key}")
                if got is not None and key != "username" and not _ENV_NAME.fullmatch(got):
                    reader.problem(
                        values[key],
                        f"{path}.{key}",
                        f"expected the name of an environment variable, got {quote(got)}",
                    )
                    got = None
                ok = ok and got is not None
                text[key] = got or ""
        if "bearer_token_env" in text and ("username" in text or "password_env" in text):
            reader.problem(
                values["bearer_token_env"],
                path,
                "a bearer token (bearer_token_env) or a user and password "
                "(username, password_env), not both",
            )
            ok = False
        elif ok and ("username" in text) != ("password_env" in text):
            key = "username" if "username" in text else "password_env"
            missing = "password_env" if key == "username" else "username"
            reader.problem(values[key], path, f"basic authentication needs {missing} too")
            ok = False
        verify_tls = True
        if "verify_tls" in values:
            flag = reader.boolean(values["verify_tls"], f"{path}.verify_tls")
            ok = ok and flag is not None
            verify_tls = flag is not False
        if not ok or url is None:
            return None
        return PrometheusServer(
            url,
            bearer_token_env=text.get("bearer_token_env"),
            username=text.get("username"),
            password_env=text.get("password_env"),
            verify_tls=verify_tls,
        )


# libpq's connection parameters (PostgreSQL 18), which a `state.url` may set
# in its query string: `sslmode=verify-full`, `sslrootcert=/etc/...`,
# `options=-csearch_path%3Dwatchdog`, `target_session_attrs=read-write`...
# The secrets among them are refused: they never sit in the file.
LIBPQ_PARAMETERS = frozenset(
    {
        "host", "hostaddr", "port", "dbname", "user", "passfile", "require_auth",
        "channel_binding", "connect_timeout", "client_encoding", "options",
        "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout", "replication",
        "gssencmode", "sslmode", "requiressl", "sslnegotiation", "sslcompression", "sslcert",
        "sslkey", "sslkeylogfile", "sslcertmode", "sslrootcert", "sslcrl", "sslcrldir",
        "sslsni", "requirepeer", "ssl_min_protocol_version", "ssl_max_protocol_version",
        "min_protocol_version", "max_protocol_version", "krbsrvname", "gsslib",
        "gssdelegation", "service", "target_session_attrs", "load_balance_hosts",
    }
)  # fmt: skip
_LIBPQ_SECRETS = ("password", "sslpassword")
_URL_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\](?::(?P<p6>\d{1,5}))?|[^:\[\]]+(?::(?P<port>\d{1,5}))?")


def _postgres_url_trouble(url: str) -> str | None:
    """What is wrong with `url` as the store's Postgres URL, or None: not a
    postgresql:// URL, a password in it (user info or query), no host, a
    port out of range, no database, a query parameter libpq does not know.
    Several hosts, comma-separated, are libpq's (a primary and standbys)."""
    shown = quote(redact_url(url))
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        return f"expected a postgresql:// URL, got {shown}"
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        return f"a URL holds no spaces or control characters: percent-encode them, got {shown}"
    before_query, _, query = rest.partition("#")[0].partition("?")
    authority, _, path = before_query.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        return (
            "secrets never sit in the file: keep the user in the URL and name an environment "
            "variable with state.password_env"
        )
    parameters = urllib.parse.parse_qsl(query, keep_blank_values=True)
    for key, _ in parameters:
        if key in _LIBPQ_SECRETS:
            return (
                f"secrets never sit in the file: no {key} in the URL; name an environment "
                "variable with state.password_env"
            )
        if key not in LIBPQ_PARAMETERS:
            return f"unknown libpq parameter {quote(key)}{suggest(key, LIBPQ_PARAMETERS)}"
    named = dict(parameters)
    if not hosts and "host" not in named and "hostaddr" not in named:
        return f"expected a host after '://' (postgresql://USER@HOST:PORT/DATABASE), got {shown}"
    for host in hosts.split(",") if hosts else ():
        match = _URL_HOST.fullmatch(urllib.parse.unquote(host))
        port = match and (match.group("p6") or match.group("port"))
        if match is None or (port is not None and not 0 < int(port) < 65536):
            return f"expected HOST or HOST:PORT (a port from 1 to 65535), got {quote(host)}"
    if not urllib.parse.unquote(path) and "dbname" not in named:
        return f"name the database: postgresql://USER@HOST:PORT/DATABASE, got {shown}"
    return None


# A log probe is read every 10 s; its anomalies already wait for evidence
# (rate buckets, learning), so one result is enough to change its verdict.
_LOG_SCHEDULE = Schedule(10.0, 1, 1)

# A Prometheus's settings, in `defaults.prometheus` and on a probe; the
# secrets themselves are keys only to be refused with their reason.
_SERVER_KEYS = (
    "url",
    "verify_tls",
    "bearer_token_env",
    "username",
    "password_env",
    "bearer_token",
    "password",
)
_CREDENTIAL_KEYS = ("bearer_token_env", "username", "password_env")
PROMETHEUS_KEYS = ("down_if", "degraded_if", "alert", *_SERVER_KEYS)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REPLICA = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")

_Builder = Callable[[_Settings, dict[str, YamlNode], str, "float | None"], Spec | None]
# One line per probe kind: its own keys, and the reader of its spec.
_KINDS: dict[str, tuple[tuple[str, ...], _Builder]] = {
    "http": (
        (
            "method",
            "headers",
            "expect_status",
            "body_contains",
            "body_regex",
            "follow_redirects",
            "verify_tls",
            "max_body_bytes",
            "latency_threshold",
            "tls_expiry_warning",
        ),
        _Settings._http,
    ),
    "tcp": (("send", "expect", "latency_threshold"), _Settings._tcp),
    "exec": ((), _Settings._exec),
    "log": (LOG_KEYS, _Settings._log),
    "prometheus": (PROMETHEUS_KEYS, _Settings._prometheus),
}
