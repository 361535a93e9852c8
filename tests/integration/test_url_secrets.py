"""URLs carry passwords and tokens: `watchdog check` and `watchdog run` never
print them, whether the file is refused, the daemon runs its probes and
sinks against targets that fail, or the CLI cannot reach a daemon. Real
processes, talking to loopback only."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest
from waiting import PROCESS_DEADLINE_S, WATCHDOG, free_port, until_blocking

from watchdog.cli import main

# As a user writes them, in the query and in the user info.
URL = "http://alice:s3cret@127.0.0.1:1/x?token=abc"
SECRETS = ("s3cret", "abc")


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WATCHDOG, *argv], capture_output=True, text=True, timeout=60, check=False
    )


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_a_refused_file_never_prints_its_urls_secrets(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            alerts:
              webhook: {{url: "ftp://alice:s3cret@127.0.0.1:1/hook?token=abc"}}
            nodes:
              api:
                probes:
                  - http: {URL}
                    expect_status: [999]
                  - http: "htp://alice:s3cret@127.0.0.1:1/x?token=abc"
                  - exec: "check_http -u 'http://alice:s3cret@127.0.0.1:1/?token=abc"
            """
        )
    )
    for command in ("check", "run"):
        done = run_cli(command, str(path))
        assert_clean(done.stdout + done.stderr)
    refused = run_cli("run", str(path))
    assert refused.returncode == 3
    assert refused.stderr.splitlines() == [
        f"{path}:3: alerts.webhook.url: expected an http:// or https:// URL, "
        "got 'ftp://alice:***@127.0.0.1:1/hook?token=***'",
        f"{path}:8: nodes.api.probes[0].expect_status[0]: expected an HTTP status code, got 999",
        f"{path}:9: nodes.api.probes[1].http: expected an http:// or https:// URL, "
        "got 'htp://alice:***@127.0.0.1:1/x?token=***'",
        f"{path}:10: nodes.api.probes[2].exec: bad command "
        '"check_http -u \'http://alice:***@127.0.0.1:1/?token=***": No closing quotation',
        f"{path}: 4 problems, nothing loaded",
    ]


def test_a_running_daemon_never_prints_its_urls_secrets(tmp_path: Path) -> None:
    """Probes, the webhook, Alertmanager and the heartbeat all fail against
    a closed port, with credentials in their URLs: the daemon's output (its
    log, the console alerts) and its status API name none of them."""
    port = free_port()
    closed = "alice:s3cret@127.0.0.1:1"
    path = tmp_path / "estate.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            server: {{listen: "127.0.0.1:{port}"}}
            state: {{path: history.db}}
            alerts:
              settle: 0s
              webhook: {{url: "http://{closed}/hook?token=abc"}}
              alertmanager: {{url: "http://{closed}/am?token=abc"}}
              heartbeat: {{url: "http://{closed}/ping?token=abc", interval: 1s}}
              routes:
                - sinks: [console, webhook, alertmanager]
            nodes:
              api:
                critical: true
                probes:
                  - http: {URL}
                    interval: 200ms
                    failure_threshold: 1
                  - http: "http://alice:s3cret@[::1/x?token=abc"
                    interval: 200ms
                    failure_threshold: 1
            """
        )
    )
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [WATCHDOG, "run", str(path), "--log-format", "json"],
            stdout=log,
            stderr=log,
            # The console alerts reach the file as they are printed.
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"http://127.0.0.1:{port}"

        def answered(path: str) -> str | None:
            try:
                got = httpx.get(f"{url}{path}", timeout=2)
            except httpx.TransportError:
                return None
            return got.text if got.status_code == 200 else None

        try:
            until_blocking(lambda: answered("/-/ready"))
            # An alert was sent (and refused by every sink but the console).
            until_blocking(lambda: "delivery failed" in log_path.read_text())
            status = answered("/api/v1/status")
            assert status is not None
            assert "connect refused" in status
            assert_clean(status)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=PROCESS_DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=PROCESS_DEADLINE_S)
    output = log_path.read_text()
    assert "FIRING" in output  # the console alert is part of what was checked
    assert_clean(output)


def test_the_cli_never_prints_the_secrets_of_a_daemons_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text("version: 1\nnodes:\n  api: {}\n")
    live = "http://alice:s3cret@127.0.0.1:1/?token=abc"
    assert main(["blast-radius", str(path), "--shutdown", "api", "--live", live]) == 3
    assert main(["silence", "list", str(path), "--live", live]) == 3
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert err.splitlines()[0].startswith(
        # The query swallows the path the CLI appends: masked all the same.
        "watchdog: cannot read the live state at http://alice:***@127.0.0.1:1/?token=***: "
    )
    assert err.splitlines()[1].startswith(
        "watchdog silence: cannot reach the daemon at http://alice:***@127.0.0.1:1/?token=***: "
    )
