"""Malformed topology files: each is refused as a whole (`watchdog check`
exits 3, nothing loaded) with every problem on stderr as
`FILE:LINE: PATH: message`, in line order, then one summary line.

The files are in tests/data/invalid, one mistake (or one story of mistakes)
each; their first line is a comment saying what is wrong, so the expected
line numbers count it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import topology
from topology import Group, InvalidInput, Problem
from watchdog.cli import main

ROOT = Path(__file__).resolve().parents[3]
# Relative to ROOT (the tests run from there): messages echo the path as given.
INVALID = Path("tests") / "data" / "invalid"
EXIT_INVALID = 3

BAD_DURATION = "expected a number and a unit (ms, s, m, h, d, w), e.g. '10m' or '1h30m'"
NAME_RULE = "start with a letter or digit, then use letters, digits and - _ . : / @"
EMPTY_FILE = "empty file: expected a mapping with 'version: 1' and 'nodes'"
KEY_INDENTED = (
    "a key or a '- ' item is indented differently from the keys of the mapping that starts "
    "at line {}, or a value is missing after a colon"
)
MAPPING_VALUES = (
    "this line is indented deeper than the key above it, the line above lacks its ':', or a "
    "value holds ': ' and needs quotes (YAML: mapping values are not allowed in this context)"
)


@dataclass(frozen=True)
class Expected:
    """One problem as the loader should report it."""

    line: int | None
    path: str
    message: str

    def text(self, source: str) -> str:
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def as_json(self, source: str) -> dict[str, Any]:
        return {"file": source, "line": self.line, "path": self.path, "message": self.message}


def refusal(source: str, problems: list[Expected]) -> str:
    """The whole of stderr for a refused file."""
    count = len(problems)
    lines = [p.text(source) for p in problems]
    lines.append(f"{source}: {count} problem{'s' if count != 1 else ''}, nothing loaded")
    return "".join(f"{line}\n" for line in lines)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def load_problems(path: str | Path) -> list[Expected]:
    with pytest.raises(InvalidInput) as caught:
        topology.load(path)
    return [Expected(p.line, p.path, p.message) for p in caught.value.problems]


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def at(line: int | None, path: str, message: str) -> Expected:
    """A row of the tables below: the problem at `line`."""
    return Expected(line, path, message)


MANY_PROBLEMS = [
    at(5, "nodes.orders-workflow.critical", "expected true or false, got 'maybe'"),
    at(
        6,
        "nodes.orders-workflow.runs_on[0]",
        "unknown node 'farm-oms1' (did you mean 'farm-oms-1'?)",
    ),
    at(7, "nodes.orders-workflow", "unknown key 'depend_on' (did you mean 'depends_on'?)"),
    at(10, "nodes.orders-store.recovery_target", f"bad duration '10 minutes': {BAD_DURATION}"),
    at(11, "nodes.orders-store.runs_on.min", "min 3 is larger than the group's 2 members"),
    at(13, "nodes.orders-store", "duplicate key 'kind' (first at line 12)"),
    at(17, "defaults.recovery_target.critical", "duration '0s' must be more than zero"),
    at(18, "", "unknown key 'alert' (did you mean 'alerts'?)"),
]


def case(name: str, problems: list[Expected], *, bug: str = "") -> Any:
    """A row of CASES; `bug` marks the expectation as not met yet, and why."""
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(name, problems, id=name.removesuffix(".yaml"), marks=marks)


# file name in tests/data/invalid -> every problem it must be refused with
CASES = [
    # references to nodes
    case(
        "unknown-node-did-you-mean.yaml",
        [
            at(
                10,
                "nodes.orders-workflow.depends_on[0]",
                "unknown node 'orders-stor' (did you mean 'orders-store'?)",
            )
        ],
    ),
    case(
        "unknown-node-no-match.yaml",
        [at(6, "nodes.orders-workflow.runs_on[0]", "unknown node 'zeppelin'")],
    ),
    case(
        "unknown-node-in-any-of.yaml",
        [
            at(
                7,
                "nodes.orders-store.runs_on.any_of[1]",
                "unknown node 'kv-bb' (did you mean 'kv-b'?)",
            )
        ],
    ),
    case(
        "unknown-node-close-to-itself.yaml",
        [at(5, "nodes.kv-a.depends_on[0]", "unknown node 'kv-aa'")],
    ),
    case(
        "requires-itself-runs-on.yaml",
        [at(6, "nodes.orders-store.runs_on[1]", "node 'orders-store' requires itself")],
    ),
    case(
        "requires-itself-depends-on.yaml",
        [at(5, "nodes.orders-store.depends_on[0]", "node 'orders-store' requires itself")],
    ),
    # unknown and duplicate keys
    case(
        "unknown-key-depend-on.yaml",
        [at(7, "nodes.orders-workflow", "unknown key 'depend_on' (did you mean 'depends_on'?)")],
    ),
    case(
        "unknown-top-level-key.yaml",
        [at(3, "", "unknown key 'default' (did you mean 'defaults'?)")],
    ),
    case(
        "unknown-group-key.yaml",
        [at(7, "nodes.orders-store.runs_on", "unknown key 'mn' (did you mean 'min'?)")],
    ),
    case(
        "defaults-bad-key.yaml",
        [
            at(
                4,
                "defaults.recovery_target",
                "unknown key 'noncritical' (did you mean 'non_critical'?)",
            )
        ],
    ),
    case(
        "duplicate-key-in-node.yaml",
        [at(7, "nodes.orders-store", "duplicate key 'kind' (first at line 5)")],
    ),
    case(
        "duplicate-node.yaml",
        [at(6, "nodes", "duplicate key 'kv-a' (first at line 4)")],
    ),
    case(
        "bad-node-name.yaml",
        [at(4, "nodes", f"bad node name 'orders store': {NAME_RULE}")],
    ),
    # groups
    case(
        "min-larger-than-group.yaml",
        [at(7, "nodes.orders-store.runs_on.min", "min 3 is larger than the group's 2 members")],
    ),
    case(
        "min-zero.yaml",
        [at(7, "nodes.orders-store.depends_on[0].min", "min must be at least 1, got 0")],
    ),
    case(
        "min-not-a-number.yaml",
        [at(7, "nodes.orders-store.runs_on.min", "expected a whole number, got 'two'")],
    ),
    case(
        "min-boolean.yaml",
        [at(8, "nodes.orders-store.runs_on.min", "expected a whole number, got true")],
    ),
    case(
        "empty-runs-on.yaml",
        [at(5, "nodes.orders-store.runs_on", "empty group: name at least one node")],
    ),
    case(
        "empty-any-of.yaml",
        [at(6, "nodes.orders-store.depends_on[0].any_of", "empty group: name at least one node")],
    ),
    case(
        "group-without-any-of.yaml",
        [at(6, "nodes.orders-store.runs_on", "missing 'any_of': list the nodes of the group")],
    ),
    case(
        "same-member-twice.yaml",
        [at(7, "nodes.orders-store.runs_on.any_of[2]", "'kv-a' is listed twice in this group")],
    ),
    # durations
    case(
        "duration-in-words.yaml",
        [at(5, "nodes.orders-store.recovery_target", f"bad duration '10 minutes': {BAD_DURATION}")],
    ),
    case(
        "duration-zero.yaml",
        [at(5, "nodes.orders-store.recovery_target", "duration '0s' must be more than zero")],
    ),
    case(
        "duration-overflow.yaml",
        [
            at(
                5,
                "nodes.orders-store.recovery_target",
                f"duration '1{'0' * 79}…' is too long: at most 365d",
            )
        ],
    ),
    case(
        "duration-too-long.yaml",
        [
            at(
                5,
                "nodes.orders-store.recovery_target",
                "duration '1000000w' is too long: at most 365d",
            )
        ],
    ),
    case(
        "min-huge.yaml",
        [at(6, "nodes.orders-store.runs_on.min", f"{'9' * 40} is too large a number")],
    ),
    case(
        "duration-without-unit.yaml",
        [at(5, "nodes.orders-store.recovery_target", f"bad duration 600: {BAD_DURATION}")],
    ),
    # wrong types
    case(
        "critical-not-boolean.yaml",
        [at(5, "nodes.orders-store.critical", "expected true or false, got 'yes please'")],
    ),
    case(
        "kind-a-list.yaml",
        [at(5, "nodes.orders-store.kind", "expected a string, got a list")],
    ),
    case(
        "labels-a-list.yaml",
        [at(5, "nodes.orders-store.labels", "expected a mapping, got a list")],
    ),
    case(
        "depends-on-mapping.yaml",
        [
            at(6, "nodes.orders-store.depends_on", "unknown key 'a'"),
            at(6, "nodes.orders-store.depends_on", "missing 'any_of': list the nodes of the group"),
        ],
    ),
    case(
        "node-body-a-list.yaml",
        [at(5, "nodes.orders-store", "expected a mapping, got a list")],
    ),
    # the document as a whole
    case("empty.yaml", [at(1, "", EMPTY_FILE)]),
    case("comments-only.yaml", [at(1, "", EMPTY_FILE)]),
    case(
        "top-level-a-list.yaml",
        [at(2, "", "expected a mapping with 'version' and 'nodes', got a list")],
    ),
    case(
        "nodes-empty.yaml",
        [at(3, "nodes", "no nodes: describe at least one node")],
    ),
    case(
        "nodes-missing.yaml",
        [at(1, "nodes", "missing: describe the estate under 'nodes:'")],
    ),
    case(
        "version-missing.yaml",
        [at(1, "version", "missing: add 'version: 1' at the top")],
    ),
    case(
        "version-2.yaml",
        [at(2, "version", "unsupported version 2: this watchdog reads version 1")],
    ),
    case(
        "version-a-string.yaml",
        [at(2, "version", "expected the number 1, got '1'")],
    ),
    case(
        "version-empty.yaml",
        [at(2, "version", "expected the number 1, got nothing")],
    ),
    # not YAML, or not one YAML document
    case(
        "not-yaml-unbalanced-bracket.yaml",
        [
            at(
                6,
                "",
                "a list opened with '[' at line 5 is not closed with ']', or two of its items "
                "lack a ',' between them (YAML: did not find expected ',' or ']')",
            )
        ],
    ),
    case(
        "not-yaml-tab-indent.yaml",
        [
            at(
                5,
                "",
                "indented with a tab: YAML takes spaces only "
                "(YAML: found character that cannot start any token)",
            )
        ],
    ),
    # YAML syntax errors: what they usually mean, then PyYAML's words
    case(
        "yaml-key-indented-less.yaml",
        [at(6, "", f"{KEY_INDENTED.format(4)} (YAML: did not find expected key)")],
    ),
    case(
        "yaml-list-item-indented-less.yaml",
        [at(7, "", f"{KEY_INDENTED.format(5)} (YAML: did not find expected key)")],
    ),
    case("yaml-key-indented-more.yaml", [at(6, "", MAPPING_VALUES)]),
    case("yaml-colon-in-value.yaml", [at(5, "", MAPPING_VALUES)]),
    case(
        "yaml-key-without-colon.yaml",
        [
            at(
                6,
                "",
                "the key at line 5 lacks its ':', or a quote or bracket opened before it is "
                "not closed (YAML: could not find expected ':')",
            )
        ],
    ),
    case(
        "yaml-key-among-list-items.yaml",
        [
            at(
                7,
                "",
                "a list item is indented differently from the ones before it (line 6), or a "
                "'key: value' line sits among the '- ' items "
                "(YAML: did not find expected '-' indicator)",
            )
        ],
    ),
    case(
        "yaml-flow-mapping-unclosed.yaml",
        [
            at(
                5,
                "",
                "a mapping opened with '{' at line 4 is not closed with '}', or two of its "
                "entries lack a ',' between them (YAML: did not find expected ',' or '}')",
            )
        ],
    ),
    case(
        "yaml-quote-unclosed.yaml",
        [
            at(
                7,
                "",
                "a quote opened at line 5 is never closed (YAML: found unexpected end of stream)",
            )
        ],
    ),
    case(
        "yaml-unknown-escape.yaml",
        [
            at(
                5,
                "",
                "a backslash in double quotes starts an escape YAML does not know: write "
                "regular expressions and Windows paths in single quotes "
                "(YAML: found unknown escape character)",
            )
        ],
    ),
    case(
        "yaml-reserved-character.yaml",
        [
            at(
                5,
                "",
                "a value starts with '@', which YAML reserves: put the value in quotes "
                "(YAML: found character that cannot start any token)",
            )
        ],
    ),
    case(
        "yaml-control-character.yaml",
        [
            at(
                5,
                "",
                "a control character (0x1b) is not allowed in YAML text: remove it, or write "
                "it as an escape inside double quotes",
            )
        ],
    ),
    case(
        "two-documents.yaml",
        [
            at(
                5,
                "",
                "not valid YAML: expected a single document in the stream (line 2), "
                "but found another document",
            )
        ],
    ),
    case(
        "duplicate-anchor.yaml",
        [at(5, "", "not valid YAML: found duplicate anchor: first at line 4")],
    ),
    case(
        "not-utf8.yaml",
        [at(4, "", "not UTF-8 text: byte 0xe9 at offset 55")],
    ),
    # merge keys
    case(
        "merge-into-itself.yaml",
        [at(6, "nodes.orders-store", "'<<' merges a mapping into itself")],
    ),
    case(
        "merge-unknown-key.yaml",
        [at(9, "nodes.orders-archive", "unknown key 'any_of' (merged from line 7)")],
    ),
    case(
        "depends-on-twice.yaml",
        [at(7, "nodes.a.depends_on[1]", "'b' is listed twice in depends_on")],
    ),
    case(
        "kind-empty.yaml",
        [at(5, "nodes.a.kind", "expected a kind such as service or farm, got ''")],
    ),
    # terminal safety: control characters are escaped wherever text is quoted
    case(
        "control-characters-in-names.yaml",
        [
            at(4, "nodes", f"bad node name '\\x1b[31mfarm\\x07': {NAME_RULE}"),
            at(6, "nodes.api.labels.team\\x1b[2J", "expected a string, got a list"),
            at(7, "nodes.api.depends_on[0]", "unknown node 'db\\x9b\\u202e'"),
            at(9, "nodes.api.critical", "expected true or false, got '\\x1b]0;owned\\x07'"),
        ],
    ),
    # all at once
    case("many-problems.yaml", MANY_PROBLEMS),
]


@pytest.mark.parametrize(("name", "problems"), CASES)
def test_check_refuses_the_file_with_every_problem(
    capsys: pytest.CaptureFixture[str], name: str, problems: list[Expected]
) -> None:
    path = str(INVALID / name)
    code, out, err = run(capsys, "check", path)
    assert err == refusal(path, problems)
    assert (code, out) == (EXIT_INVALID, "")


def test_every_invalid_file_has_a_case() -> None:
    files = {path.name for path in INVALID.glob("*.yaml")}
    assert files == {row.values[0] for row in CASES}
    assert len(files) >= 25


def test_no_problem_holds_a_control_character(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", str(INVALID / "control-characters-in-names.yaml"))
    assert code == EXIT_INVALID
    assert not [c for c in out + err if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0]
    assert "\u202e" not in err


def test_check_refuses_a_file_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(INVALID / "does-not-exist.yaml")
    code, out, err = run(capsys, "check", path)
    assert err == refusal(path, [at(None, "", "cannot read: No such file or directory")])
    assert (code, out) == (EXIT_INVALID, "")


def test_check_refuses_a_directory(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(INVALID)
    code, out, err = run(capsys, "check", path)
    assert err == refusal(path, [at(None, "", "cannot read: a directory, not a regular file")])
    assert (code, out) == (EXIT_INVALID, "")


def test_messages_start_with_the_path_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / INVALID / "duplicate-node.yaml")
    code, _, err = run(capsys, "check", path)
    assert code == EXIT_INVALID
    assert err == refusal(path, [at(6, "nodes", "duplicate key 'kv-a' (first at line 4)")])


def test_check_json_lists_every_problem_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(INVALID / "many-problems.yaml")
    code, out, err = run(capsys, "check", "--format", "json", path)
    assert code == EXIT_INVALID
    assert json.loads(out) == {
        "source": path,
        "valid": False,
        "exit_code": EXIT_INVALID,
        "problems": [p.as_json(path) for p in MANY_PROBLEMS],
        "warnings": [],
    }
    assert err == refusal(path, MANY_PROBLEMS)


# The API: `load` and `loads` raise InvalidInput with located problems.


def test_load_raises_invalid_input_with_located_problems() -> None:
    path = INVALID / "unknown-node-did-you-mean.yaml"
    with pytest.raises(InvalidInput) as caught:
        topology.load(path)
    assert caught.value.problems == (
        Problem(
            source=str(path),
            line=10,
            path="nodes.orders-workflow.depends_on[0]",
            message="unknown node 'orders-stor' (did you mean 'orders-store'?)",
        ),
    )
    assert str(caught.value) == (
        f"{path}:10: nodes.orders-workflow.depends_on[0]: "
        "unknown node 'orders-stor' (did you mean 'orders-store'?)"
    )


def test_load_sorts_every_problem_by_line() -> None:
    assert load_problems(INVALID / "many-problems.yaml") == MANY_PROBLEMS


def test_load_of_a_missing_file_has_no_line() -> None:
    path = INVALID / "does-not-exist.yaml"
    with pytest.raises(InvalidInput) as caught:
        topology.load(path)
    assert caught.value.problems == (
        Problem(str(path), None, "", "cannot read: No such file or directory"),
    )
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"


def test_loads_reports_what_load_reports() -> None:
    path = INVALID / "many-problems.yaml"
    with pytest.raises(InvalidInput) as from_text:
        topology.loads(path.read_text(encoding="utf-8"), source=str(path))
    with pytest.raises(InvalidInput) as from_file:
        topology.load(path)
    assert from_text.value.problems == from_file.value.problems


def test_loads_names_the_source_string_by_default() -> None:
    text = "version: 1\nnodes:\n  a:\n    runs_on: [b]\n    kind: [farm]\n"
    with pytest.raises(InvalidInput) as caught:
        topology.loads(text)
    assert caught.value.problems == (
        Problem("<string>", 4, "nodes.a.runs_on[0]", "unknown node 'b'"),
        Problem("<string>", 5, "nodes.a.kind", "expected a string, got a list"),
    )
    assert str(caught.value) == (
        "<string>:4: nodes.a.runs_on[0]: unknown node 'b'\n"
        "<string>:5: nodes.a.kind: expected a string, got a list"
    )


def test_loads_refuses_an_empty_text() -> None:
    with pytest.raises(InvalidInput) as caught:
        topology.loads("", source="inline")
    assert caught.value.problems == (Problem("inline", 1, "", EMPTY_FILE),)


# YAML niceties that must keep working.


def test_merge_keys_in_a_node_body_load_and_an_explicit_key_wins() -> None:
    text = (
        "version: 1\n"
        "nodes:\n"
        "  farm-1: {kind: farm}\n"
        "  orders-api: &service\n"
        "    kind: api\n"
        "    critical: true\n"
        "    runs_on: [farm-1]\n"
        "    recovery_target: 5m\n"
        "  orders-admin:\n"
        "    <<: *service\n"
        "    critical: false\n"
        "  orders-batch:\n"
        "    kind: batch\n"
        "    <<: *service\n"
    )
    loaded = topology.loads(text)
    on_farm = (Group(("farm-1",), 1, False, "runs_on"),)
    admin, batch = loaded.node("orders-admin"), loaded.node("orders-batch")
    assert (admin.kind, admin.critical, admin.recovery_target_s, admin.groups) == (
        "api",
        False,
        300.0,
        on_farm,
    )
    assert (batch.kind, batch.critical, batch.recovery_target_s, batch.groups) == (
        "batch",
        True,
        300.0,
        on_farm,
    )


def test_merge_of_a_list_takes_each_key_from_the_first_mapping_that_has_it() -> None:
    text = (
        "version: 1\n"
        "nodes:\n"
        "  a: &a {kind: farm}\n"
        "  b: &b {kind: host, critical: true}\n"
        "  c: {<<: [*a, *b]}\n"
    )
    c = topology.loads(text).node("c")
    assert (c.kind, c.critical) == ("farm", True)


def test_a_node_without_a_body_is_valid() -> None:
    loaded = topology.loads("version: 1\nnodes:\n  kv-a:\n  orders-store: {runs_on: kv-a}\n")
    kv_a = loaded.node("kv-a")
    assert (kv_a.kind, kv_a.critical, kv_a.groups, kv_a.line) == ("service", False, (), 3)
    assert loaded.node("orders-store").groups == (Group(("kv-a",), 1, False, "runs_on"),)


def test_a_long_chain_of_merges_loads_in_linear_time() -> None:
    """Each level merges the previous one twice: read naively that is 2**40
    mappings; each anchor must be read once."""
    lines = ["version: 1", "nodes:", "  n0: &l0 {kind: farm}"]
    lines += [f"  n{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}]}}" for i in range(1, 41)]
    topo = topology.loads("\n".join(lines) + "\n")
    assert topo.node("n40").kind == "farm"


def test_depends_on_accepts_a_lone_group_in_full() -> None:
    topo = topology.loads(
        "version: 1\nnodes:\n  a: {}\n  b: {}\n"
        "  c: {depends_on: {any_of: [a, b], min: 2, soft: true}}\n"
    )
    assert topo.node("c").groups == (Group(("a", "b"), 2, True, "depends_on"),)


def test_a_problem_in_a_merged_anchor_is_reported_once() -> None:
    text = (
        "version: 1\n"
        "nodes:\n"
        "  base: &base\n"
        "    kind: farm\n"
        "    kind: host\n"
        "  a: {<<: *base}\n"
        "  b: {<<: *base}\n"
    )
    with pytest.raises(InvalidInput) as caught:
        topology.loads(text, "t.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "t.yaml:5: nodes.base: duplicate key 'kind' (first at line 4)"
    ]
