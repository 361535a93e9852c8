"""The daemon's settings in the topology file: probes, server, state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from topology import InvalidInput
from watchdog.config import LogSpec, Schedule, ServerConfig, load_config
from watchdog.probes import ExecSpec, HttpSpec, TcpSpec

DATA = Path(__file__).resolve().parents[2] / "data" / "daemon"


def test_it_reads_every_kind_of_probe_with_its_settings() -> None:
    config = load_config(DATA / "estate.yaml")

    assert config.server == ServerConfig("127.0.0.1", 9555)
    assert config.state_path == str(DATA / "history.db")
    assert [(p.key, p.kind, p.line) for p in config.probes] == [
        ("farm-1#0", "tcp", 9),
        ("api#0", "http", 17),
        ("api#1", "exec", 31),
        ("api#2", "exec", 33),
        ("api#3", "log", 34),
    ]
    tcp, http, plugin, echo, log = (p.spec for p in config.probes)
    assert tcp == TcpSpec("127.0.0.1", 9001, send="PING", expect="PONG")
    assert config.probes[0].schedule == Schedule(interval_s=5.0)
    assert isinstance(http, HttpSpec)
    assert (http.url, http.method, dict(http.headers), http.expect_status) == (
        "http://127.0.0.1:8081/health",
        "HEAD",
        {"X-Probe": "watchdog"},
        (200, 204),
    )
    assert (http.body_contains, http.body_regex, http.timeout_s) == (
        "ok",
        re.compile("v[0-9]+"),
        2.0,
    )
    assert (http.follow_redirects, http.verify_tls, http.max_body_bytes) == (True, False, 4096)
    assert http.latency_threshold_s == 0.5
    assert config.probes[1].schedule == Schedule(10.0, 4, 1)
    assert plugin == ExecSpec(("/usr/lib/nagios/plugins/check_dummy", "0", "all fine"), 3.0)
    assert echo == ExecSpec(("/bin/echo", "a b"))
    assert log == LogSpec("/var/log/api/*.log")
    assert config.probes[2].schedule == Schedule()


def test_the_defaults_apply_without_server_state_or_probes(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("version: 1\nnodes:\n  a: {}\n")
    config = load_config(path)
    assert (config.server, config.probes) == (ServerConfig("127.0.0.1", 9120), ())
    assert config.state_path == str(tmp_path / "watchdog.db")


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


def test_it_reports_the_topologys_problems_and_its_own_together(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "server: {listen: nowhere}\n"
        "nodes:\n"
        "  a:\n"
        "    depends_on: [b]\n"
        "    probes:\n"
        "      - htp: http://x\n"
        "      - http: ftp://x\n"
        "      - tcp: 127.0.0.1\n"
        "      - tcp: '[::1]:99999'\n"
        "      - exec: ''\n"
        "      - exec: 'unclosed \"quote'\n"
        "      - http: http://x\n"
        "        interval: soon\n"
        "        failure_threshold: 0\n"
        "        expect_status: [200, 700]\n"
        "        body_regex: '('\n"
        "        retries: 3\n"
        "      - 42\n"
    )
    assert problems(tmp_path, text) == [
        "2: server.listen: expected host:port such as 127.0.0.1:9120, got 'nowhere'",
        "5: nodes.a.depends_on[0]: unknown node 'b'",
        "7: nodes.a.probes[0]: unknown probe kind 'htp': a probe starts with its kind, "
        "one of http, tcp, exec, log, prometheus",
        "8: nodes.a.probes[1].http: expected an http:// or https:// URL, got 'ftp://x'",
        "9: nodes.a.probes[2].tcp: expected host:port or [v6]:port, got '127.0.0.1'",
        "10: nodes.a.probes[3].tcp: expected host:port or [v6]:port, got '[::1]:99999'",
        "11: nodes.a.probes[4].exec: empty command",
        "12: nodes.a.probes[5].exec: bad command 'unclosed \"quote': No closing quotation",
        "14: nodes.a.probes[6].interval: bad duration 'soon': expected a number and a unit "
        "(ms, s, m, h, d, w), e.g. '10m' or '1h30m'",
        "15: nodes.a.probes[6].failure_threshold: must be at least 1, got 0",
        "16: nodes.a.probes[6].expect_status[1]: expected an HTTP status code, got 700",
        "17: nodes.a.probes[6].body_regex: bad regular expression '(': "
        "missing ), unterminated subpattern at position 0",
        "18: nodes.a.probes[6]: unknown key 'retries'",
        "19: nodes.a.probes[7]: expected a probe such as {http: URL}, {tcp: host:port} "
        "or {exec: command}",
    ]


def test_it_reads_the_alerts_section(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "version: 1\n"
        "alerts:\n"
        "  settle: 0s\n"
        "  repeat_interval: 1h\n"
        "  slack: {token_env: TOKEN, channels: {critical: '#inc', default: '#ops'}}\n"
        "  alertmanager: {url: 'http://127.0.0.1:9093'}\n"
        "  webhook: {url: 'http://127.0.0.1:8099/hook'}\n"
        "  heartbeat: {url: 'http://127.0.0.1:8099/ping', interval: 30s}\n"
        "nodes:\n  a: {}\n"
    )
    alerts = load_config(path).alerts
    assert (alerts.settle_s, alerts.repeat_interval_s) == (0.0, 3600.0)
    assert alerts.slack is not None
    assert (alerts.slack.token_env, dict(alerts.slack.channels)) == (
        "TOKEN",
        {"critical": "#inc", "default": "#ops"},
    )
    assert (alerts.alertmanager_url, alerts.webhook_url) == (
        "http://127.0.0.1:9093",
        "http://127.0.0.1:8099/hook",
    )
    assert (alerts.heartbeat_url, alerts.heartbeat_interval_s) == (
        "http://127.0.0.1:8099/ping",
        30.0,
    )


def test_it_refuses_secrets_in_the_file_and_incomplete_sinks(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "alerts:\n"
        "  slack: {token: xoxb-1234, channels: {critical: '#inc'}, token_env: T}\n"
        "  alertmanager: {}\n"
        "  webhook: {url: ftp://x, interval: 1s}\n"
        "nodes:\n  a: {}\n"
    )
    found = problems(tmp_path, text)
    assert found == [
        "3: alerts.slack.token: secrets never sit in the file: name an environment variable "
        "with token_env",
        '3: alerts.slack.channels: name a default channel, e.g. channels: {default: "#ops"}',
        "4: alerts.alertmanager: missing 'url'",
        "5: alerts.webhook: unknown key 'interval'",
        "5: alerts.webhook.url: expected an http:// or https:// URL, got 'ftp://x'",
    ]
    assert not any("xoxb-1234" in p for p in found)


def test_it_reads_routes_and_the_templates_folder(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    path = tmp_path / "t.yaml"
    path.write_text(
        "version: 1\n"
        "alerts:\n"
        "  webhook: {url: 'http://127.0.0.1:8099/hook'}\n"
        "  templates: tpl\n"
        "  routes:\n"
        "    - match: {labels: {team: [payments, billing]}, critical: true}\n"
        "      sinks: [webhook]\n"
        "      slack_channel: '#pay'\n"
        "    - match: {kind: anomaly, severity: warning}\n"
        "      sinks: [console]\n"
        "      continue: true\n"
        "nodes:\n  a: {}\n"
    )
    alerts = load_config(path).alerts
    first, second = alerts.routes
    assert (dict(first.labels), first.critical, first.sinks, first.slack_channel) == (
        {"team": ("payments", "billing")},
        True,
        ("webhook",),
        "#pay",
    )
    assert (second.kinds, second.severities, second.sinks, second.continue_) == (
        ("anomaly",),
        ("warning",),
        ("console",),
        True,
    )
    # A route naming the console adds it beside the configured sinks.
    assert alerts.sink_names == ("console", "webhook")
    assert alerts.templates == str(tmp_path / "tpl")


def test_it_refuses_routes_to_unknown_sinks_and_values(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "alerts:\n"
        "  webhook: {url: 'http://127.0.0.1:8099/hook'}\n"
        "  templates: nowhere\n"
        "  routes:\n"
        "    - sinks: [slack, webhok]\n"
        "    - sinks: []\n"
        "    - match: {kind: outgae, critical: maybe, team: x}\n"
        "nodes:\n  a: {}\n"
    )
    found = problems(tmp_path, text)
    assert found == [
        f"4: alerts.templates: no folder '{tmp_path / 'nowhere'}': create it or remove the key",
        "6: alerts.routes[0].sinks[0]: no sink 'slack' (configured: console, webhook)",
        "6: alerts.routes[0].sinks[1]: no sink 'webhok' (did you mean 'webhook'?)",
        "7: alerts.routes[1].sinks: an empty list would drop alerts: name a sink, or use a "
        "silence to mute",
        "8: alerts.routes[2].match: unknown key 'team'",
        "8: alerts.routes[2].match.kind: unknown value 'outgae' (did you mean 'outage'?); one "
        "of outage, drift, anomaly, maneuver, impaired",
        "8: alerts.routes[2].match.critical: expected true or false, got 'maybe'",
    ]


def test_it_reads_a_log_probes_rules(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "version: 1\n"
        "nodes:\n"
        "  api:\n"
        "    probes:\n"
        "      - log: logs/api*.log\n"
        "        from: start\n"
        "        error_pattern: '\\b(ERROR|FATAL)\\b'\n"
        "        watch: [OutOfMemory, '(?i)deadlock']\n"
        "        rate_interval: 30s\n"
        "        learning: 0s\n"
        "        spike_factor: 5\n"
        "        min_errors: 3\n"
        "        silence: 10m\n"
        "        silence_means: down\n"
        "        masks: [ip, {order: 'ORD-\\d+'}]\n"
        "        max_templates: 50\n"
        "        max_line_bytes: 4096\n"
        "      - log: /var/log/other.log\n"
        "        silence: off\n"
    )
    first, second = load_config(path).probes
    spec = first.spec
    assert isinstance(spec, LogSpec)
    assert (spec.paths, spec.from_start, spec.max_line_bytes) == (
        str(tmp_path / "logs/api*.log"),
        True,
        4096,
    )
    rules = spec.rules
    assert (rules.error_pattern, rules.watched) == (
        r"\b(ERROR|FATAL)\b",
        ("OutOfMemory", "(?i)deadlock"),
    )
    assert (rules.interval_s, rules.learning_s, rules.spike_factor, rules.min_count) == (
        30.0,
        0.0,
        5.0,
        3,
    )
    assert (rules.silence_s, rules.silence_is_down) == (600.0, True)
    assert (rules.miner.masks, rules.miner.max_clusters) == (("ip", ("order", r"ORD-\d+")), 50)
    assert first.schedule == Schedule(10.0, 1, 1)  # a log probe's defaults
    assert isinstance(second.spec, LogSpec)
    assert (second.spec.rules.silence_s, second.spec.from_start) == (0.0, False)
    assert second.spec.rules.silence_s == 0.0


def test_it_refuses_bad_log_probe_rules_with_their_lines(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "nodes:\n"
        "  api:\n"
        "    probes:\n"
        "      - log: /var/log/api.log\n"
        "        from: middle\n"
        "        watch: ['(unclosed']\n"
        "        silence: sometimes\n"
        "        masks: [ipv4, {9bad: x}]\n"
        "        min_errors: 0\n"
        "        timeout: 1s\n"
    )
    assert problems(tmp_path, text) == [
        "6: nodes.api.probes[0].from: expected end or start, got 'middle'",
        "7: nodes.api.probes[0].watch[0]: bad regular expression '(unclosed': "
        "missing ), unterminated subpattern at position 0",
        "8: nodes.api.probes[0].silence: expected a duration such as 10m, learn or off, "
        "got 'sometimes'",
        "9: nodes.api.probes[0].masks[0]: unknown mask 'ipv4' (did you mean 'ip'?)",
        "9: nodes.api.probes[0].masks[1]: mask name '9bad' is not an identifier",
        "10: nodes.api.probes[0].min_errors: must be at least 1, got 0",
        "11: nodes.api.probes[0].timeout: a log probe has no timeout",
    ]


def test_probes_merged_from_an_anchor_are_probes_too(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "version: 1\n"
        "nodes:\n"
        "  base: &web {probes: [{tcp: '127.0.0.1:9001'}]}\n"
        "  api:\n"
        "    <<: *web\n"
        "    critical: true\n"
    )
    config = load_config(path)
    assert [(p.key, p.line) for p in config.probes] == [("base#0", 3), ("api#0", 3)]
    assert config.topology.node("api").probed


# The store in Postgres: `state.url`, its password in the environment.


def test_it_reads_a_postgres_state_url_and_its_password_variable(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    url = "postgresql://watchdog@db.internal:5432/estate?sslmode=verify-full&connect_timeout=5"
    path.write_text(
        f"version: 1\nstate:\n  url: '{url}'\n  password_env: WATCHDOG_DB_PASSWORD\n"
        "nodes:\n  a: {}\n"
    )
    config = load_config(path)
    assert (config.state_url, config.state_password_env, config.state) == (
        url,
        "WATCHDOG_DB_PASSWORD",
        url,
    )
    assert (config.lines["state.url"], config.lines["state.password_env"]) == (3, 4)


def test_a_file_state_has_no_url(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("version: 1\nstate: {path: h.db}\nnodes:\n  a: {}\n")
    config = load_config(path)
    assert (config.state_url, config.state_password_env) == (None, None)
    assert config.state == str(tmp_path / "h.db")


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        (
            "{url: 'postgresql://watchdog:hunter2-secret@db/estate'}",
            "2: state.url: secrets never sit in the file: keep the user in the URL and name an "
            "environment variable with state.password_env",
        ),
        (
            "{url: 'postgresql://watchdog@db/estate?password=hunter2-secret'}",
            "2: state.url: secrets never sit in the file: no password in the URL; name an "
            "environment variable with state.password_env",
        ),
        (
            "{url: 'postgresql://watchdog@db/estate?sslmod=require'}",
            "2: state.url: unknown libpq parameter 'sslmod' (did you mean 'sslmode'?)",
        ),
        (
            "{url: 'mysql://watchdog@db/estate'}",
            "2: state.url: expected a postgresql:// URL, got 'mysql://***@db/estate'",
        ),
        (
            "{url: 'postgresql://watchdog@db:99999/estate'}",
            "2: state.url: expected HOST or HOST:PORT (a port from 1 to 65535), got 'db:99999'",
        ),
        (
            "{url: 'postgresql://watchdog@db'}",
            "2: state.url: name the database: postgresql://USER@HOST:PORT/DATABASE, "
            "got 'postgresql://***@db'",
        ),
        (
            "{path: h.db, url: 'postgresql://watchdog@db/estate'}",
            "2: state: a file (path) or a Postgres database (url), not both",
        ),
        (
            "{path: h.db, password_env: DB_PASSWORD}",
            "2: state.password_env: only with state.url: a file has no password",
        ),
        (
            "{url: 'postgresql://watchdog@db/estate', password_env: 'not a name'}",
            "2: state.password_env: expected the name of an environment variable, got 'not a name'",
        ),
        (
            "{uri: 'postgresql://watchdog@db/estate'}",
            "2: state: unknown key 'uri' (did you mean 'url'?)",
        ),
    ],
    ids=[
        "password-in-url",
        "password-in-query",
        "unknown-parameter",
        "scheme",
        "port",
        "no-database",
        "path-and-url",
        "password-without-url",
        "bad-variable",
        "key-typo",
    ],
)
def test_it_refuses_a_state_url_it_cannot_use_and_never_shows_a_password(
    tmp_path: Path, state: str, problem: str
) -> None:
    found = problems(tmp_path, f"version: 1\nstate: {state}\nnodes:\n  a: {{}}\n")
    assert found == [problem]
    assert not any("hunter2" in p for p in found)
