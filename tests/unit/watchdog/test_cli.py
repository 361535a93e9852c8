"""The command line: exit codes scripts gate on, text for people, JSON for
scripts, and the bundled example telling the story of the 2017 outage."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from watchdog.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = str((ROOT / "examples" / "oms-2017.yaml").relative_to(ROOT))


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths in messages are echoed as given, so run from a known place.
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("NO_COLOR", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_finds_the_shared_fate_of_the_2017_outage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "check", EXAMPLE)
    assert (code, err) == (1, "")
    assert out == (
        f"{EXAMPLE}: 13 nodes, 3 findings (1 error, 2 warnings)\n"
        "error: shared-fate: farm-oms-1 runs critical orders-workflow and non-critical "
        "orders-search: a maneuver on farm-oms-1 meant for orders-search takes "
        "orders-workflow down\n"
        "warning: criticality-inversion: checkout (recovery target 5m) hard-depends on "
        "orders-workflow (10m), whose recovery targets are longer\n"
        "warning: single-point-of-failure: farm-oms-1 alone takes critical checkout, "
        "orders-workflow down\n"
    )


def test_check_exits_0_on_a_clean_topology(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "clean.yaml"
    path.write_text("version: 1\nnodes:\n  a: {}\n  b: {depends_on: [a]}\n")
    code, out, _ = run(capsys, "check", str(path))
    assert (code, out) == (0, f"{path}: 2 nodes, no findings\n")


def test_check_json_lists_findings_for_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", EXAMPLE, "--format", "json")
    answer = json.loads(out)
    assert code == answer["exit_code"] == 1
    assert (answer["valid"], answer["source"], answer["nodes"]) == (True, EXAMPLE, 13)
    assert [(f["rule"], f["severity"], f["nodes"]) for f in answer["findings"]] == [
        ("shared-fate", "error", ["farm-oms-1", "orders-workflow", "orders-search"]),
        ("criticality-inversion", "warning", ["checkout", "orders-workflow"]),
        ("single-point-of-failure", "warning", ["farm-oms-1", "checkout", "orders-workflow"]),
    ]


def test_blast_radius_of_the_farm_shutdown_exits_2_naming_the_workflow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "blast-radius", EXAMPLE, "--shutdown", "farm-oms-1")
    assert (code, err) == (2, "")
    assert out == (
        "CRITICAL: shutdown farm-oms-1 takes critical checkout, orders-workflow down\n"
        "\n"
        "critical nodes:\n"
        "  checkout  up -> down  (recovery target 5m)\n"
        "    checkout down <- depends_on orders-workflow (down) <- runs_on farm-oms-1 (shutdown)\n"
        "  orders-workflow  up -> down  (recovery target 10m)\n"
        "    orders-workflow down <- runs_on farm-oms-1 (shutdown)\n"
        "\n"
        "other nodes:\n"
        "  farm-oms-1  up -> down\n"
        "    farm-oms-1 (shutdown)\n"
        "  orders-search  up -> down\n"
        "    orders-search down <- runs_on farm-oms-1 (shutdown)\n"
    )


def test_blast_radius_json_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "blast-radius", EXAMPLE, "--shutdown", "farm-oms-1", "--format", "json"
    )
    answer = json.loads(out)
    assert code == answer["exit_code"] == 2
    assert answer["verdict"] == "critical"
    assert answer["uncertain"] is False
    assert answer["actions"] == [{"action": "shutdown", "node": "farm-oms-1"}]
    assert [i["node"] for i in answer["impacted"]] == [
        "checkout",
        "orders-workflow",
        "farm-oms-1",
        "orders-search",
    ]
    assert answer["impacted"][1] == {
        "node": "orders-workflow",
        "kind": "service",
        "critical": True,
        "before": "up",
        "after": "down",
        "recovery_target_s": 600,
        "transient": False,
        "no_spare": False,
        "reason": ["orders-workflow", "farm-oms-1"],
    }


def test_blast_radius_exits_1_when_a_critical_node_loses_its_last_spare(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "blast-radius", EXAMPLE, "--shutdown", "farm-pay-1")
    assert code == 1
    assert out.splitlines()[0] == (
        "WARNING: shutdown farm-pay-1 leaves critical antifraud, checkout, erp-gateway "
        "without a spare"
    )
    assert "    antifraud loses its last spare <- runs_on farm-pay-1 (shutdown)" in out


def test_blast_radius_takes_known_failures_as_the_baseline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "blast-radius", EXAMPLE, "--shutdown", "farm-pay-1", "--down", "farm-pay-2"
    )
    assert code == 2
    assert out.splitlines()[0] == (
        "CRITICAL: shutdown farm-pay-1 takes critical antifraud, checkout, erp-gateway, "
        "orders-workflow down"
    )
    # Part of the baseline, not of the answer: said apart, at the end.
    assert "farm-pay-2" not in out.split("\nalready down")[0]


def test_blast_radius_exits_0_when_no_critical_node_gets_worse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "blast-radius", EXAMPLE, "--drain", "search-index")
    assert code == 0
    assert out.splitlines()[0] == (
        "OK: drain search-index: no critical node gets worse (2 other nodes impacted)"
    )


def test_blast_radius_says_when_unknown_nodes_could_make_it_worse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "blast-radius", EXAMPLE, "--shutdown", "farm-pay-1", "--unknown", "farm-pay-2"
    )
    assert code == 2
    assert out.splitlines()[:2] == [
        "CRITICAL (uncertain): if unknown farm-pay-2 is down, shutdown farm-pay-1 takes "
        "critical antifraud, checkout, erp-gateway, orders-workflow down",
        "with unknown nodes up: WARNING: shutdown farm-pay-1 leaves critical antifraud, "
        "checkout, erp-gateway without a spare",
    ]


def test_blast_radius_marks_restarts_transient(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "blast-radius",
        EXAMPLE,
        "--restart",
        "kv-a",
        "--shutdown",
        "kv-b",
        "--format",
        "json",
    )
    answer = json.loads(out)
    assert code == 2
    assert answer["actions"] == [
        {"action": "restart", "node": "kv-a"},
        {"action": "shutdown", "node": "kv-b"},
    ]
    transient = {i["node"]: i["transient"] for i in answer["impacted"]}
    assert transient == {
        "checkout": True,
        "orders-store": True,
        "orders-workflow": True,
        "kv-a": True,
        "kv-b": False,
        "orders-search": True,
    }


def test_an_unknown_node_in_an_action_is_exit_3_with_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "blast-radius", EXAMPLE, "--shutdown", "farm-oms1")
    assert (code, out) == (3, "")
    assert err == (
        f"{EXAMPLE}: --shutdown farm-oms1: unknown node 'farm-oms1' (did you mean 'farm-oms-1'?)\n"
    )


def test_every_unknown_node_is_reported_at_once_and_in_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys,
        "blast-radius",
        EXAMPLE,
        "--drain",
        "zzz",
        "--down",
        "kv-d",
        "--format",
        "json",
    )
    assert code == 3
    assert err.splitlines() == [
        f"{EXAMPLE}: --down kv-d: unknown node 'kv-d' (did you mean 'kv-a'?)",
        f"{EXAMPLE}: --drain zzz: unknown node 'zzz'",
    ]
    assert json.loads(out) == {
        "valid": False,
        "exit_code": 3,
        "problems": [
            {
                "file": EXAMPLE,
                "line": None,
                "path": "--down",
                "message": "unknown node 'kv-d' (did you mean 'kv-a'?)",
            },
            {"file": EXAMPLE, "line": None, "path": "--drain", "message": "unknown node 'zzz'"},
        ],
    }


def test_blast_radius_without_a_maneuver_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "blast-radius", EXAMPLE, "--down", "kv-a")
    assert code == 3
    assert err == "watchdog blast-radius: name a maneuver: --shutdown, --drain or --restart NODE\n"


def test_usage_errors_are_exit_3_not_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["blast-radius", EXAMPLE, "--shutdown"])
    assert exit_info.value.code == 3
    assert "error: argument --shutdown: expected one argument" in capsys.readouterr().err


def test_a_missing_file_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "blast-radius", "nowhere.yaml", "--shutdown", "x")
    assert code == 3
    assert err == (
        "nowhere.yaml: cannot read: No such file or directory\n"
        "nowhere.yaml: 1 problem, nothing loaded\n"
    )


def test_graph_draws_dot_with_the_blast_radius_coloured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "graph", EXAMPLE, "--shutdown", "farm-oms-1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "digraph topology {"
    assert (
        '  "orders-workflow" [label="orders-workflow\\nservice · critical 10m · up -> down", '
        'fillcolor="#fca5a5", color="#b00020", penwidth=3];'
    ) in lines
    assert '  "farm-oms-1" [label="farm-oms-1\\nfarm · shutdown", fillcolor="#ef4444"];' in lines
    assert '  "kv-a" [label="kv-a\\nhost"];' in lines
    assert '  "orders-workflow" -> "antifraud" [label="depends_on soft", style=dashed];' in lines
    assert '  "orders-store" -> "kv-a" [label="runs_on 2 of 3"];' in lines


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_graph_output_is_accepted_by_graphviz(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", EXAMPLE, "--shutdown", "farm-oms-1", "--down", "kv-a")
    assert code == 0
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=out, capture_output=True, text=True, check=True, timeout=60
    )
    assert svg.stdout.count('<g id="node') == 13


def test_graph_draws_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", EXAMPLE, "--format", "mermaid", "--drain", "kv-a")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flowchart TB"
    assert '  n6["kv-a<br/>host · drain"]' in lines
    assert '  n10["orders-store<br/>database · critical 10m · no spare left"]' in lines
    assert "  n11 -.->|depends_on soft| n0" in lines
    assert "  class n6 action" in lines
    assert "  class n10 no_spare" in lines


def test_colour_only_on_a_terminal() -> None:
    """Run the real console script under a pseudo-terminal: ANSI colours
    appear there, and never when the output is a pipe."""
    script = str(Path(sys.executable).with_name("watchdog"))
    argv = [script, "blast-radius", EXAMPLE, "--shutdown", "farm-oms-1"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert piped.returncode == 2
    assert "\033[" not in piped.stdout

    leader, follower = pty.openpty()
    with subprocess.Popen(argv, stdout=follower, stderr=follower, env=env) as proc:
        os.close(follower)
        chunks = []
        for _ in range(200):  # bounded: the answer is a few hundred bytes
            ready, _, _ = select.select([leader], [], [], 5)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 2
    os.close(leader)
    text = b"".join(chunks).decode()
    assert "\033[1;31mCRITICAL\033[0m" in text


def test_blast_radius_says_what_was_already_down(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("blast-radius", EXAMPLE, "--shutdown", "farm-pay-1", "--down", "farm-pay-2")
    code, out, _ = run(capsys, *argv)
    assert code == 2
    assert out.endswith("\nalready down before the maneuver (not counted): farm-pay-2\n")
    code, out, _ = run(capsys, *argv, "--format", "json")
    assert code == 2
    assert json.loads(out)["already"] == {"down": ["farm-pay-2"], "degraded": []}


def test_version_and_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("watchdog 0.")
    for command in (["blast-radius"], ["maneuver", "start"], ["silence", "add"], ["incidents"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "example" in text, command
        assert "--format" in text, command
    with pytest.raises(SystemExit):
        main(["incidents", "--help"])
    assert "(default: 30d)" in " ".join(capsys.readouterr().out.split())


def test_incidents_on_a_file_that_never_ran_says_so_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text("version: 1\nstate: {path: history.db}\nnodes:\n  a: {}\n")
    code, out, err = run(capsys, "incidents", str(path))
    assert (code, out) == (3, "")
    assert err == (
        f"watchdog incidents: no state file at {tmp_path / 'history.db'}: the daemon has "
        "not run with this file yet (it writes state.path)\n"
    )
    assert not (tmp_path / "history.db").exists()
