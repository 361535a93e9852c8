"""`watchdog run` as a real process, driven the way operators do: signals,
the API over HTTP, `blast-radius --live`, and `watchdog incidents` reading
the store it left behind. Every wait is bounded; nothing asserts a duration."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import flagged
from waiting import PROCESS_DEADLINE_S, WATCHDOG, free_port, until_blocking


def estate(port: int, tmp: Path, extra: str = "") -> str:
    # The farm's health is a file the test creates or removes.
    flag = tmp / "farm-ok"
    probe = flagged(flag)
    return (
        textwrap.dedent(
            f"""\
        version: 1
        server: {{listen: "127.0.0.1:{port}"}}
        state: {{path: history.db}}
        nodes:
          farm:
            kind: farm
            probes:
              - exec: [/bin/sh, -c, "{probe}"]
                interval: 200ms
                failure_threshold: 1
                success_threshold: 1
          workflow:
            critical: true
            runs_on: [farm]
        """
        )
        + extra
    )


TOKEN = "cli-api-T0KEN-7331"


@pytest.fixture
def daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    monkeypatch.setenv("WATCHDOG_API_TOKEN", TOKEN)
    port = free_port()
    (tmp_path / "farm-ok").touch()
    path = tmp_path / "estate.yaml"
    path.write_text(estate(port, tmp_path))
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [WATCHDOG, "run", str(path), "--log-format", "json"], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        until_blocking(ready)
        yield proc, url, path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=PROCESS_DEADLINE_S)
        log.close()


def status(url: str) -> dict[str, dict[str, Any]]:
    return {n["node"]: n for n in httpx.get(f"{url}/api/v1/status", timeout=5).json()["nodes"]}


def logged(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in (tmp_path / "daemon.log").read_text().splitlines()
        if line.startswith("{")
    ]


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WATCHDOG, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_blast_radius_live_takes_the_daemons_baseline(
    daemon: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    _, url, path = daemon
    offline = run_cli("blast-radius", str(path), "--shutdown", "farm", "--format", "json")
    assert (offline.returncode, json.loads(offline.stdout)["verdict"]) == (2, "critical")

    (tmp_path / "farm-ok").unlink()
    until_blocking(lambda: status(url)["workflow"]["effective"] == "down")
    live = run_cli(
        "blast-radius", str(path), "--shutdown", "farm", "--live", url, "--format", "json"
    )
    assert (live.returncode, json.loads(live.stdout)["impacted"]) == (0, [])

    gone = run_cli("blast-radius", str(path), "--shutdown", "farm", "--live", "http://127.0.0.1:9")
    assert gone.returncode == 3
    assert gone.stderr.startswith(
        "watchdog: cannot read the live state at http://127.0.0.1:9/api/v1/status:"
    )


def test_sighup_reloads_and_a_bad_file_keeps_the_running_one(
    daemon: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    proc, url, path = daemon
    good = path.read_text()
    path.write_text(good + "  search: {runs_on: [farm]}\n")
    proc.send_signal(signal.SIGHUP)
    until_blocking(lambda: "search" in status(url))

    path.write_text(good.replace("runs_on: [farm]", "runs_on: [frm]"))
    proc.send_signal(signal.SIGHUP)

    def refused() -> list[dict[str, Any]]:
        return [e for e in logged(tmp_path) if e["message"].startswith("reload refused")]

    [entry] = until_blocking(refused)
    assert entry["message"] == (
        f"reload refused: {path}:14: nodes.workflow.runs_on[0]: unknown node 'frm' "
        "(did you mean 'farm'?)"
    )
    assert "search" in status(url)
    # The log line may be written a moment before the API hears the outcome.
    until_blocking(
        lambda: (
            "watchdog_config_last_reload_successful 0.0"
            in httpx.get(f"{url}/metrics", timeout=5).text
        )
    )


def test_sigterm_stops_cleanly_and_incidents_reads_what_it_kept(
    daemon: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    proc, url, path = daemon
    (tmp_path / "farm-ok").unlink()
    until_blocking(lambda: status(url)["workflow"]["effective"] == "down")
    (tmp_path / "farm-ok").touch()
    until_blocking(lambda: status(url)["workflow"]["effective"] == "up")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=PROCESS_DEADLINE_S) == 0
    assert logged(tmp_path)[-1]["message"] == "stopped"

    answer = run_cli("incidents", str(path), "--format", "json")
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert [(n["node"], n["incidents"], n["recurring"]) for n in report["nodes"]] == [
        ("farm", 1, False),
        ("workflow", 1, False),
    ]
    workflow = next(i for i in report["incidents"] if i["node"] == "workflow")
    assert (workflow["worst"], workflow["root_cause"], workflow["breached"]) == (
        "down",
        ["farm"],
        False,
    )
    assert workflow["ended_at"] is not None

    text = run_cli("incidents", str(path))
    assert text.stdout.splitlines()[0] == "incidents in the last 30d, most first:"
    assert text.stdout.splitlines()[2].startswith("  workflow: 1 incident, down ")

    bad = run_cli("incidents", str(path), "--since", "a while")
    assert (bad.returncode, bad.stderr) == (
        3,
        "watchdog incidents: --since: bad duration 'a while': expected a number and a unit "
        "(ms, s, m, h, d, w), e.g. '10m' or '1h30m'\n",
    )


def test_maneuver_start_is_refused_then_forced_and_end_checks_recovery(
    daemon: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    _, url, path = daemon
    refused = run_cli("maneuver", "start", str(path), "--shutdown", "farm", "--by", "alice")
    assert (refused.returncode, refused.stdout) == (
        2,
        "REFUSED: shutdown farm (critical: critical workflow impacted); "
        "--force with a --reason to do it anyway\n",
    )
    needs_reason = run_cli(
        "maneuver", "start", str(path), "--shutdown", "farm", "--by", "alice", "--force"
    )
    assert (needs_reason.returncode, needs_reason.stderr) == (
        3,
        "watchdog maneuver: a forced maneuver needs a reason\n",
    )
    forced = run_cli(
        "maneuver",
        "start",
        str(path),
        "--shutdown",
        "farm",
        "--by",
        "alice",
        "--force",
        "--reason",
        "rack move",
    )
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[0] == (
        "maneuver 2 started (forced): shutdown farm (critical: critical workflow impacted)"
    )
    (tmp_path / "farm-ok").unlink()
    until_blocking(lambda: status(url)["workflow"]["effective"] == "down")
    ended = run_cli("maneuver", "end", str(path), "2")
    assert (ended.returncode, ended.stdout) == (
        1,
        "maneuver 2 (shutdown farm) ended: not recovered: farm, workflow\n",
    )
    again = run_cli("maneuver", "end", str(path), "2")
    assert (again.returncode, again.stderr) == (
        3,
        "watchdog maneuver: maneuver 2 is ended, not running\n",
    )


def test_silence_add_list_expire(daemon: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    _, url, path = daemon
    add = [
        "silence",
        "add",
        str(path),
        "--node",
        "farm",
        "--for",
        "2h",
        "--by",
        "bob",
        "--reason",
        "move",
    ]
    refused = run_cli(*add)
    assert (refused.returncode, refused.stdout) == (  # refused as a maneuver is: 2
        2,
        "REFUSED: farm is needed by critical nodes: a silence there would hide their "
        'outage; --force ("force": true) to silence anyway\n',
    )
    forced = run_cli(*add, "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith("silence 1 (forced): node farm until ")
    listed = run_cli("silence", "list", str(path))
    assert listed.stdout.startswith("1: node farm until ")
    assert listed.stdout.endswith(" by bob: move (forced)\n")
    assert run_cli("silence", "expire", str(path), "1").stdout == "silence 1 expired\n"
    assert run_cli("silence", "list", str(path)).stdout == "no silence in force\n"
    unknown = run_cli("silence", "expire", str(path), "9")
    assert (unknown.returncode, unknown.stderr) == (3, "watchdog silence: no silence 9\n")

    # The daemon found by $WATCHDOG_URL, no FILE; JSON for scripts.
    env = {"WATCHDOG_URL": url}
    both = run_cli("silence", "add", "--node", "farm", "--label", "a=b", *add[5:], env=env)
    assert (both.returncode, both.stderr) == (3, "watchdog silence: --node or --label, not both\n")
    nothing = run_cli("silence", "add", "--label", "team=nobody", *add[5:], env=env)
    assert (nothing.returncode, nothing.stderr) == (
        3,
        "watchdog silence: label team=nobody matches no node\n",
    )
    added = run_cli(
        "silence", "add", "--node", "farm", *add[5:], "--force", "--format", "json", env=env
    )
    assert added.returncode == 0, added.stderr
    silence = json.loads(added.stdout)
    assert (silence["node"], silence["by"], silence["forced"]) == ("farm", "bob", True)
    listed = run_cli("silence", "list", "--format", "json", env=env)
    assert [s["id"] for s in json.loads(listed.stdout)["silences"]] == [silence["id"]]
    lost = run_cli("silence", "list")
    assert (lost.returncode, lost.stderr) == (
        3,
        "watchdog silence: name the daemon: --live URL, $WATCHDOG_URL, or FILE\n",
    )


def test_a_busy_port_is_one_line_and_exit_3(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        path = tmp_path / "estate.yaml"
        path.write_text(estate(port, tmp_path))
        done = subprocess.run(
            [WATCHDOG, "run", str(path)],
            capture_output=True,
            text=True,
            timeout=PROCESS_DEADLINE_S,
            check=False,
        )
    assert done.returncode == 3
    assert done.stderr.splitlines()[-1] == (
        f"watchdog run: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in done.stderr
