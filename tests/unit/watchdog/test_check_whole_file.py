"""`watchdog check` validates the whole file as `run` reads it (probes,
server, state, alerts, routes, templates), so a file it passes is one `run`
accepts: every mistake of a newcomer's first hour is refused with file,
line and a clear message, and numbers at the edges are refused, never a
traceback. Several files and standard input, text and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from topology import InvalidInput
from watchdog.cli import main
from watchdog.config import load_config

EXIT_INVALID = 3
BAD_DURATION = "expected a number and a unit (ms, s, m, h, d, w), e.g. '10m' or '1h30m'"
METHOD = "an HTTP method is one word of letters, digits and !#$%&'*+-.^_`|~"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def estate(tmp_path: Path, text: str, name: str = "estate.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def probe_file(tmp_path: Path, probe: str) -> str:
    """A file whose one node has the probe written in `probe` (YAML lines
    under `probes:`): its first line is line 5."""
    return estate(
        tmp_path, "version: 1\nnodes:\n  a:\n    probes:\n" + textwrap.indent(probe, "      ")
    )


def refused(capsys: pytest.CaptureFixture[str], path: str) -> list[str]:
    """The problems of a refused file, without the path prefix and the
    summary; `run` (through `load_config`) refuses it with the same ones."""
    code, out, err = run(capsys, "check", path)
    assert (code, out) == (EXIT_INVALID, "")
    *lines, summary = err.splitlines()
    assert summary == f"{path}: {len(lines)} problem{'s' if len(lines) > 1 else ''}, nothing loaded"
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == lines
    return [line.removeprefix(f"{path}:") for line in lines]


# The newcomer's examples: `check` used to pass them and `run` refused them.


@pytest.mark.parametrize(
    ("probe", "problem"),
    [
        (
            "- http: http://127.0.0.1:8080/\n  interval: 5 sec\n",
            f"6: nodes.a.probes[0].interval: bad duration '5 sec': {BAD_DURATION}",
        ),
        (
            "- http: htp//127.0.0.1:8080\n",
            "5: nodes.a.probes[0].http: expected an http:// or https:// URL, "
            "got 'htp//127.0.0.1:8080'",
        ),
        (
            "- http: http://127.0.0.1:8080/\n  intervall: 5s\n",
            "6: nodes.a.probes[0]: unknown key 'intervall' (did you mean 'interval'?)",
        ),
        (
            "- https: https://127.0.0.1:8443/\n",
            "5: nodes.a.probes[0]: unknown probe kind 'https': an https:// URL is checked by "
            "an http probe, write 'http: https://...'",
        ),
        (
            "- http: file:///etc/passwd\n",
            "5: nodes.a.probes[0].http: expected an http:// or https:// URL, "
            "got 'file:///etc/passwd'",
        ),
        (
            "- http: http://127.0.0.1:8080/\n  body_regex: '(ok'\n",
            "6: nodes.a.probes[0].body_regex: bad regular expression '(ok': "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            "- log: app.log\n  watch: ['[unclosed']\n",
            "6: nodes.a.probes[0].watch[0]: bad regular expression '[unclosed': "
            "unterminated character set at position 0",
        ),
    ],
    ids=["interval-in-words", "scheme-typo", "key-typo", "https-kind", "file-url", "regex", "log"],
)
def test_check_refuses_a_probe_run_would_refuse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, probe: str, problem: str
) -> None:
    assert refused(capsys, probe_file(tmp_path, probe)) == [problem]


def test_check_refuses_a_listen_address_without_a_port(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = estate(tmp_path, "version: 1\nserver: {listen: localhost}\nnodes: {a: {}}\n")
    assert refused(capsys, path) == [
        "2: server.listen: expected host:port such as 127.0.0.1:9120, got 'localhost'"
    ]
    fine = estate(tmp_path, "version: 1\nserver: {listen: 'localhost:9120'}\nnodes: {a: {}}\n")
    assert run(capsys, "check", fine) == (0, f"{fine}: 1 node, no findings\n", "")


def test_check_refuses_a_secret_written_into_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = estate(
        tmp_path,
        """\
        version: 1
        alerts:
          slack:
            token_env: SLACK_TOKEN
            webhook_url: https://hooks.slack.com/services/T0/B0/s3cr3t
            channels: {default: "#ops"}
        nodes: {a: {}}
        """,
    )
    problems = refused(capsys, path)
    assert problems == [
        "5: alerts.slack.webhook_url: secrets never sit in the file: name an environment "
        "variable with webhook_url_env"
    ]
    assert "s3cr3t" not in "".join(problems)


def test_check_refuses_templates_that_run_would_refuse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "tpl" / "console").mkdir(parents=True)
    broken = tmp_path / "tpl" / "console" / "default.j2"
    broken.write_text("{% set line %}\n{{ alert.nodes }}{% endset %}\n")
    path = estate(tmp_path, "version: 1\nalerts: {templates: tpl}\nnodes: {a: {}}\n")
    code, out, err = run(capsys, "check", path)
    assert (code, out) == (EXIT_INVALID, "")
    assert err == (
        f"{path}:2: alerts.templates: {broken}:2: "
        "'alerts.model.Alert object' has no attribute 'nodes'\n"
        f"{path}: 1 problem, nothing loaded\n"
    )


# Numbers at the edges: exit 3 and a message, never a traceback.


@pytest.mark.parametrize(
    ("probe", "problem"),
    [
        (
            "- http: http://127.0.0.1:8080/\n  interval: 1000000w\n",
            "6: nodes.a.probes[0].interval: duration '1000000w' is too long: at most 1d",
        ),
        (
            "- http: http://127.0.0.1:8080/\n  interval: 10ms\n",
            "6: nodes.a.probes[0].interval: duration '10ms' is too short: at least 100ms",
        ),
        (
            f"- tcp: 127.0.0.1:5432\n  timeout: 1{'0' * 400}s\n",
            f"6: nodes.a.probes[0].timeout: duration '1{'0' * 79}…' is too long: at most 1h",
        ),
        ("- exec: ['']\n", "5: nodes.a.probes[0].exec: empty command"),
        ("- exec: ['', '-v']\n", "5: nodes.a.probes[0].exec: empty command"),
        (
            '- exec: ["check\\0"]\n',
            "5: nodes.a.probes[0].exec: a command cannot hold a NUL character",
        ),
        (
            "- log: app.log\n  max_line_bytes: 99999999999999\n",
            "6: nodes.a.probes[0].max_line_bytes: must be at most 1048576, got 99999999999999",
        ),
        (
            '- http: http://127.0.0.1:8080/\n  method: "GET\\r\\nX-Injected: 1"\n',
            f"6: nodes.a.probes[0].method: {METHOD}, got 'GET\\r\\nX-Injected: 1'",
        ),
        (
            "- http: http://127.0.0.1:8080/\n  method: GET /admin\n",
            f"6: nodes.a.probes[0].method: {METHOD}, got 'GET /admin'",
        ),
        (
            '- http: http://127.0.0.1:8080/\n  headers: {X-Token: "a\\r\\nX-Injected: 1"}\n',
            "6: nodes.a.probes[0].headers.X-Token: a header value holds ASCII text and tabs "
            "only: no line break or control character",
        ),
        (
            "- http: http://127.0.0.1:8080/\n  max_body_bytes: 99999999999\n",
            "6: nodes.a.probes[0].max_body_bytes: must be at most 67108864, got 99999999999",
        ),
        (
            "- http: http://127.0.0.1:8080/\n  failure_threshold: 1000\n",
            "6: nodes.a.probes[0].failure_threshold: must be at most 100, got 1000",
        ),
        (
            "- http: http://127.0.0.1:8080/\n  latency_threshold: 2h\n",
            "6: nodes.a.probes[0].latency_threshold: duration '2h' is too long: at most 1h",
        ),
        (
            "- http: 'http://:8080/'\n",
            "5: nodes.a.probes[0].http: expected a host after '://', got 'http://:8080/'",
        ),
        (
            "- http: 'http://127.0.0.1:99999/'\n",
            "5: nodes.a.probes[0].http: expected a port from 1 to 65535 after the host, "
            "got 'http://127.0.0.1:99999/'",
        ),
        (
            '- http: "http://127.0.0.1/a\\r\\nX-Injected: 1"\n',
            "5: nodes.a.probes[0].http: a URL holds no control characters: "
            "percent-encode them, got 'http://127.0.0.1/a\\r\\nX-Injected: 1'",
        ),
        ("- log: ''\n", "5: nodes.a.probes[0].log: expected a file path or glob, got ''"),
        (
            "- log: app.log\n  silence: 60d\n",
            "6: nodes.a.probes[0].silence: must be from 1s to 30d, got '60d'",
        ),
    ],
    ids=[
        "interval-too-long",
        "interval-too-short",
        "timeout-overflow",
        "exec-empty",
        "exec-empty-first-word",
        "exec-nul",
        "max-line-bytes",
        "method-crlf",
        "method-not-a-token",
        "header-crlf",
        "max-body-bytes",
        "threshold",
        "latency-threshold",
        "url-without-host",
        "url-port",
        "url-control",
        "log-empty-path",
        "log-silence",
    ],
)
def test_check_refuses_numbers_and_words_at_the_edges(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, probe: str, problem: str
) -> None:
    assert refused(capsys, probe_file(tmp_path, probe)) == [problem]


def test_check_bounds_the_daemons_own_settings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = estate(
        tmp_path,
        """\
        version: 1
        server: {listen: '127.0.0.1:99999999', header_timeout: 1h}
        alerts:
          settle: 2h
          repeat_interval: 10s
          heartbeat: {interval: 2d}
        nodes: {a: {recovery_target: 400d}}
        """,
    )
    assert refused(capsys, path) == [
        "2: server.listen: expected host:port such as 127.0.0.1:9120, got '127.0.0.1:99999999'",
        "2: server.header_timeout: duration '1h' is too long: at most 10m",
        "4: alerts.settle: duration '2h' is too long: at most 1h",
        "5: alerts.repeat_interval: duration '10s' is too short: at least 1m",
        "6: alerts.heartbeat.interval: duration '2d' is too long: at most 1d",
        "7: nodes.a.recovery_target: duration '400d' is too long: at most 365d",
    ]


# What the machine lacks: a warning, or with --env a refusal.


SLACK = """\
version: 1
state: {path: state.db}
alerts:
  slack:
    token_env: WATCHDOG_TEST_CHECK_TOKEN
    channels: {default: "#ops"}
nodes: {a: {}}
"""
MISSING = (
    "5: alerts.slack.token_env: the environment variable WATCHDOG_TEST_CHECK_TOKEN "
    "is not set or empty"
)


def test_a_missing_secret_is_a_warning_that_keeps_the_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_TEST_CHECK_TOKEN", raising=False)
    path = estate(tmp_path, SLACK)
    code, out, err = run(capsys, "check", path)
    assert (code, out) == (0, f"{path}: 1 node, no findings\n")
    assert err == (
        f"warning: {path}:{MISSING} (run refuses to start without it; --env makes this an error)\n"
    )


def test_with_env_a_missing_secret_refuses_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_TEST_CHECK_TOKEN", raising=False)
    path = estate(tmp_path, SLACK)
    code, out, err = run(capsys, "check", "--env", path)
    assert (code, out) == (EXIT_INVALID, "")
    assert err == f"{path}:{MISSING}\n{path}: 1 problem, nothing loaded\n"
    monkeypatch.setenv("WATCHDOG_TEST_CHECK_TOKEN", "xoxb-1")
    assert run(capsys, "check", "--env", path) == (0, f"{path}: 1 node, no findings\n", "")


def test_with_env_a_state_file_of_another_application_refuses_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setenv("WATCHDOG_TEST_CHECK_TOKEN", "xoxb-1")
    state = tmp_path / "state.db"
    with sqlite3.connect(state) as other:
        other.execute("CREATE TABLE accounts (id INTEGER)")
    other.close()
    before = state.read_bytes()
    path = estate(tmp_path, SLACK)
    code, _, err = run(capsys, "check", "--env", path)
    assert code == EXIT_INVALID
    assert err.splitlines() == [
        f"{path}:2: state.path: {state}: not a watchdog state file: it holds tables of "
        "another application",
        f"{path}: 1 problem, nothing loaded",
    ]
    assert state.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["estate.yaml", "state.db"]


POSTGRES = """\
version: 1
state:
  url: postgresql://watchdog@db.internal:5432/estate?sslmode=verify-full
  password_env: WATCHDOG_TEST_CHECK_DB_PASSWORD
nodes: {a: {}}
"""
NO_PASSWORD = (
    "4: state.password_env: the environment variable WATCHDOG_TEST_CHECK_DB_PASSWORD "
    "is not set or empty"
)


def test_a_postgres_state_needs_its_password_variable_where_run_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_TEST_CHECK_DB_PASSWORD", raising=False)
    path = estate(tmp_path, POSTGRES)
    code, out, err = run(capsys, "check", path)
    assert (code, out) == (0, f"{path}: 1 node, no findings\n")
    assert err == (
        f"warning: {path}:{NO_PASSWORD} (run refuses to start without it; --env makes this "
        "an error)\n"
    )
    assert run(capsys, "check", "--env", path) == (
        EXIT_INVALID,
        "",
        f"{path}:{NO_PASSWORD}\n{path}: 1 problem, nothing loaded\n",
    )
    # Set: nothing more is asked of the machine (check reaches no server).
    monkeypatch.setenv("WATCHDOG_TEST_CHECK_DB_PASSWORD", "s3cret-pw")
    assert run(capsys, "check", "--env", path) == (0, f"{path}: 1 node, no findings\n", "")


def test_a_postgres_state_without_the_postgres_extra_is_what_the_machine_lacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchdog.db

    monkeypatch.setenv("WATCHDOG_TEST_CHECK_DB_PASSWORD", "s3cret-pw")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "watchdog.db.postgres", raising=False)
    monkeypatch.delattr(watchdog.db, "postgres", raising=False)
    path = estate(tmp_path, POSTGRES)
    code, _, err = run(capsys, "check", "--env", path)
    assert code == EXIT_INVALID
    assert err.splitlines() == [
        f"{path}:3: state.url: the postgres extra is not installed: "
        "pip install 'service-watchdog[postgres]'",
        f"{path}: 1 problem, nothing loaded",
    ]
    # `run` says the same, in one line, and starts nothing.
    assert run(capsys, "run", path) == (
        EXIT_INVALID,
        "",
        "watchdog run: state.url postgresql://... needs the postgres extra: "
        "pip install 'service-watchdog[postgres]'\n",
    )


# Several files, standard input, JSON.


def test_several_files_exit_with_the_worst_and_json_is_one_document(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clean = estate(tmp_path, "version: 1\nnodes: {a: {}}\n", "clean.yaml")
    broken = estate(tmp_path, "version: 1\nnodes: {a: {probes: [{htp: x}]}}\n", "broken.yaml")
    code, out, err = run(capsys, "check", clean, broken)
    assert code == EXIT_INVALID
    assert out == f"{clean}: 1 node, no findings\n"
    assert err.splitlines()[-1] == f"{broken}: 1 problem, nothing loaded"

    code, out, _ = run(capsys, "check", "--format", "json", clean, broken)
    assert code == EXIT_INVALID
    answer = json.loads(out)
    assert answer["exit_code"] == EXIT_INVALID
    assert [(f["source"], f["valid"], f["exit_code"]) for f in answer["files"]] == [
        (clean, True, 0),
        (broken, False, EXIT_INVALID),
    ]
    assert answer["files"][0] == {
        "source": clean,
        "valid": True,
        "exit_code": 0,
        "nodes": 1,
        "findings": [],
        "problems": [],
        "warnings": [],
    }
    assert answer["files"][1]["problems"] == [
        {
            "file": broken,
            "line": 2,
            "path": "nodes.a.probes[0]",
            "message": "unknown probe kind 'htp': a probe starts with its kind, one of "
            "http, tcp, exec, log, prometheus",
        }
    ]


def check_process(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "check", *argv],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_a_dash_reads_standard_input_named_stdin(tmp_path: Path) -> None:
    clean = estate(tmp_path, "version: 1\nnodes: {a: {}}\n")
    done = check_process(clean, "-", stdin=b"version: 1\nnodes:\n  a: {runs_on: [b]}\n")
    assert done.returncode == EXIT_INVALID
    assert done.stdout.decode() == f"{clean}: 1 node, no findings\n"
    assert done.stderr.decode() == (
        "<stdin>:3: nodes.a.runs_on[0]: unknown node 'b'\n<stdin>: 1 problem, nothing loaded\n"
    )


def test_help_writes_down_the_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "with several files, the worst" in text
    assert "a warning that leaves the exit code alone" in text
    assert '{"exit_code": WORST, "files": [one result per FILE, in order]}' in text
    assert "Files over 64 MiB and anything that is not a regular file" in text


def test_it_runs_in_a_real_process_and_never_prints_a_traceback(tmp_path: Path) -> None:
    path = probe_file(tmp_path, "- exec: ['']\n  interval: 1000000w\n")
    done = check_process(path)
    assert done.returncode == EXIT_INVALID
    assert b"Traceback" not in done.stderr
    assert os.fsdecode(done.stderr).splitlines()[-1] == f"{path}: 2 problems, nothing loaded"
