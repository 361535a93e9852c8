"""Bad input at scale: what is not a topology file is refused unread, huge
text is quoted cut, "did you mean" stays fast on thousands of broken
references, and a blast radius down a long chain stays linear in size.

No wall-clock assertion: sizes, counts and exact answers only (the old
quadratic paths took minutes on the same inputs)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import topology
from topology import Action, InvalidInput, Problem
from topology.document import MAX_FILE_BYTES, Suggestions, quote, read_document, suggest
from topology.engine import REASON_HEAD, REASON_LIMIT, REASON_TAIL
from watchdog.cli import main

EXIT_INVALID = 3


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _limited() -> None:
    # Were the limits gone, the child would read /dev/zero until the end of
    # memory: stop it at 1 GiB instead of the machine's.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def check_process(*argv: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "check", *argv],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_limited,
    )


# Files that are not topology files.


def test_a_device_is_refused_unread() -> None:
    done = check_process("/dev/zero")
    assert (done.returncode, done.stdout) == (EXIT_INVALID, "")
    assert done.stderr == (
        "/dev/zero: cannot read: a character device, not a regular file\n"
        "/dev/zero: 1 problem, nothing loaded\n"
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "estate.yaml"
    os.mkfifo(fifo)
    done = check_process(str(fifo))
    assert (done.returncode, done.stderr.splitlines()[0]) == (
        EXIT_INVALID,
        f"{fifo}: cannot read: a named pipe, not a regular file",
    )


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as sparse:  # no disk used: a hole of 64 MiB
        sparse.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(InvalidInput) as caught:
        read_document(path)
    assert caught.value.problems == (
        Problem(
            str(path),
            None,
            "",
            "cannot read: 67,108,865 bytes is more than the 64 MiB a file may hold",
        ),
    )


def test_standard_input_over_the_limit_is_refused() -> None:
    with open("/dev/zero", "rb") as zeros:
        done = check_process("-", stdin=zeros.fileno())
    assert (done.returncode, done.stderr) == (
        EXIT_INVALID,
        "<stdin>: cannot read: it holds more than the 64 MiB a file may hold\n"
        "<stdin>: 1 problem, nothing loaded\n",
    )


# Huge and hostile text in messages.


def test_quote_escapes_control_characters_and_cuts_long_text() -> None:
    assert quote("farm\x1b[31m\x07\x7f\x9b") == "'farm\\x1b[31m\\x07\\x7f\\x9b'"
    assert quote("k" * 10_000_000) == "'" + "k" * 80 + "…'"
    assert quote("abc", limit=2) == "'ab…'"


def test_a_problem_escapes_and_cuts_whatever_it_is_built_from() -> None:
    problem = Problem("f\x1b.yaml", 3, "nodes." + "x" * 1000 + ".labels", "bad \x07" + "y" * 2000)
    assert problem.source == "f\\x1b.yaml"
    assert problem.path == "nodes." + "x" * 79 + "….labels"
    assert problem.message.startswith("bad \\x07yyy")
    assert len(problem.message) == 1000


def test_ten_megabytes_of_name_are_quoted_cut(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    big = "k" * 10_000_000
    path = tmp_path / "estate.yaml"
    path.write_text(
        f"version: 1\nnodes:\n  a:\n    ? {big}\n    : 1\n    critical: {big}\n"
        f"    runs_on: [{big}]\n    labels:\n      ? {big}\n      : [1]\n"
    )
    code, out, err = run(capsys, "check", str(path))
    cut = "'" + "k" * 80 + "…'"
    assert (code, out) == (EXIT_INVALID, "")
    assert err.splitlines() == [
        f"{path}:4: nodes.a: unknown key {cut}",
        f"{path}:6: nodes.a.critical: expected true or false, got {cut}",
        f"{path}:7: nodes.a.runs_on[0]: unknown node {cut}",
        f"{path}:10: nodes.a.labels.{'k' * 79}…: expected a string, got a list",
        f"{path}: 4 problems, nothing loaded",
    ]


# "Did you mean" on thousands of broken references.


def test_suggestions_among_thousands_find_typos_and_renamed_names() -> None:
    names = [f"service-{i:05d}" for i in range(5000)] + [f"farm-{i:04d}" for i in range(500)]
    suggestions = Suggestions(names)
    assert suggestions("servce-00042x") == " (did you mean 'service-00042'?)"  # two edits
    assert suggestions("service-0042") == " (did you mean 'service-00042'?)"
    assert suggestions("farm-old-0042") == " (did you mean 'farm-0042'?)"  # a renamed farm
    assert (
        suggestions("service-00042", exclude="service-00042") != " (did you mean 'service-00042'?)"
    )
    assert suggestions("zeppelin") == ""
    assert suggestions("x" * 500) == ""  # not a name


def test_suggestions_among_a_few_are_difflibs_own() -> None:
    keys = ("depends_on", "runs_on", "recovery_target", "critical")
    assert suggest("depend_on", keys) == " (did you mean 'depends_on'?)"
    assert suggest("kind", keys) == ""
    # Ties go to the first name in sort order, whatever the order given.
    assert suggest("abc", ["abe", "abd"]) == suggest("abc", ["abd", "abe"])
    assert suggest("abc", ["abe", "abd"]) == " (did you mean 'abd'?)"


def test_four_thousand_broken_references_each_get_their_suggestion(tmp_path: Path) -> None:
    lines = ["version: 1", "nodes:"]
    # Each node needs the next one, misspelt (a node is never its own suggestion).
    lines += [f"  service-{i:05d}: {{depends_on: [servce-{i + 1:05d}x]}}" for i in range(4000)]
    path = tmp_path / "estate.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as caught:
        topology.load(path)
    problems = caught.value.problems
    assert len(problems) == 4000
    assert problems[1234].message == (
        "unknown node 'servce-01235x' (did you mean 'service-01235'?)"
    )
    # The last one names no node, misspelt or not: a close one all the same.
    assert problems[-1].message.startswith("unknown node 'servce-04000x' (did you mean 'service-")
    assert all("did you mean" in p.message for p in problems)


def test_a_thousand_stale_farm_names_in_a_large_estate(tmp_path: Path) -> None:
    lines = ["version: 1", "nodes:"]
    lines += [f"  farm-{f:04d}: {{kind: farm}}" for f in range(500)]
    for i in range(9500):
        farm = f"farm-old-{i:04d}" if i < 1000 else f"farm-{i % 500:04d}"
        lines.append(f"  svc-{i:05d}: {{runs_on: [{farm}]}}")
    path = tmp_path / "estate.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as caught:
        topology.load(path)
    problems = caught.value.problems
    assert len(problems) == 1000
    assert problems[42].message == "unknown node 'farm-old-0042' (did you mean 'farm-0042'?)"


# A blast radius down a long chain of requirements.


def chain(length: int) -> topology.Topology:
    lines = ["version: 1", "nodes:", "  n0: {kind: farm}"]
    lines += [f"  n{i}: {{depends_on: [n{i - 1}]}}" for i in range(1, length)]
    return topology.loads("\n".join(lines) + "\n")


def test_a_long_reason_chain_keeps_its_ends() -> None:
    impact = topology.what_if(chain(5000), {}, [Action("shutdown", "n0")])
    last = next(i for i in impact.impacted if i.node == "n4999")
    assert (last.reason, last.reason_omitted) == (
        ("n4999", "n4998", "n4997", "n4996", "n4995", "n4994", "n4", "n3", "n2", "n1", "n0"),
        4989,
    )
    assert last.to_json()["reason"] == [
        *("n4999", "n4998", "n4997", "n4996", "n4995", "n4994"),
        "... 4989 more ...",
        *("n4", "n3", "n2", "n1", "n0"),
    ]
    # The whole answer grows with the chain, not with its square.
    assert len(json.dumps(impact.to_json())) < 5000 * 400


@pytest.mark.parametrize(("length", "shown", "omitted"), [(12, 12, 0), (13, 11, 2), (14, 11, 3)])
def test_chains_up_to_the_limit_are_whole(length: int, shown: int, omitted: int) -> None:
    assert REASON_LIMIT == REASON_HEAD + REASON_TAIL + 1 == 12
    impact = topology.what_if(chain(length), {}, [Action("shutdown", "n0")])
    top = next(i for i in impact.impacted if i.node == f"n{length - 1}")
    assert (len(top.reason), top.reason_omitted) == (shown, omitted)
    assert top.reason[0] == f"n{length - 1}"
    assert top.reason[-1] == "n0"
