"""The `watchdog` command: `check`, `blast-radius` and `graph`.

Exit codes follow the Nagios plugin convention: 0 fine, 1 warning (lint
findings, a critical node degraded or without a spare), 2 critical (a
critical node goes down), 3 the input could not be used. Usage errors are
3 as well, so a script gating on 2 never mistakes a typo for a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TextIO

from topology import (
    ACTION_KINDS,
    Action,
    InvalidInput,
    Problem,
    State,
    Topology,
    evaluate,
    format_duration,
    load,
    parse_duration,
    read_document,
    what_if,
)
from topology.document import printable, redact_url, redact_urls, suggest
from topology.durations import bad_duration

__all__ = ["main"]

EXIT_INVALID = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


class _AppendAction(argparse.Action):
    """Collects `--shutdown/--drain/--restart NODE` in the order given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        actions = list(getattr(namespace, "actions", None) or [])
        actions.append((self.const, values))
        namespace.actions = actions


def _add_maneuver(
    parser: argparse.ArgumentParser, *, required: bool, baseline: bool = True
) -> None:
    group = parser.add_argument_group("maneuver (repeatable, applied together)")
    for kind in ACTION_KINDS:
        group.add_argument(
            f"--{kind}",
            action=_AppendAction,
            const=kind,
            dest="actions",
            metavar="NODE",
            help=f"{kind} NODE" + (" (reported as transient)" if kind == "restart" else ""),
        )
    parser.set_defaults(actions=[], actions_required=required, down=[], unknown=[])
    if not baseline:
        return  # the daemon's live state is the baseline
    parser.add_argument(
        "--down",
        action="append",
        default=[],
        metavar="NODE",
        help="NODE is already down: part of the baseline, not of the answer",
    )
    parser.add_argument(
        "--unknown",
        action="append",
        default=[],
        metavar="NODE",
        help="nothing is known of NODE: the answer says when that makes it uncertain",
    )


def _version() -> str:
    try:
        return importlib.metadata.version("service-watchdog")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="watchdog",
        description="Dependency-aware service health: what goes down if you touch a node.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"watchdog {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = commands.add_parser(
        "check",
        help="validate a file as `run` would, then lint its topology",
        description=_CHECK_DESCRIPTION,
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="a topology file; - reads standard input (named <stdin> in messages, "
        "relative paths in it taken from the current directory)",
    )
    check.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), or one JSON document on stdout for scripts",
    )
    check.add_argument(
        "--observed",
        nargs="?",
        const="",
        metavar="URL",
        help="also compare with the calls Prometheus at URL saw between services "
        "(OpenTelemetry's service graph and Istio by default): a call the topology does "
        "not declare is a finding; without URL, the file's defaults.prometheus",
    )
    check.add_argument(
        "--window",
        default="1h",
        metavar="DURATION",
        help="--observed: the calls of this last period, 1m to 31d (default: 1h)",
    )
    check.add_argument(
        "--edge-query",
        action="append",
        default=[],
        metavar="CALLER->CALLEE=QUERY",
        help="--observed: read calls with this query instead of the defaults (repeatable); "
        "CALLER and CALLEE are the labels naming each end, comma-separated, outermost first; "
        "{window} in QUERY is the window, e.g. "
        "'client->server=sum by (client, server) (rate(calls_total[{window}]))'",
    )
    check.add_argument(
        "--env",
        action="store_true",
        help="also fail (exit 3) on what this machine lacks for `run`: a secret's "
        "environment variable unset, a state file of another application or no "
        "directory for it (without --env these are warnings)",
    )

    raw = argparse.RawDescriptionHelpFormatter
    blast = commands.add_parser(
        "blast-radius",
        help="what goes down or loses redundancy if you do a maneuver",
        description=(
            "Answer before a maneuver: which nodes get worse, each with the chain of "
            "requirements back to the maneuver. Exit 0 no critical node gets worse, 1 a "
            "critical node degrades or loses its last spare, 2 a critical node goes down, "
            "3 the input could not be used."
        ),
        epilog=_BLAST_EPILOG,
        formatter_class=raw,
    )
    blast.add_argument("file", metavar="FILE", help="the topology file")
    _add_maneuver(blast, required=True)
    blast.add_argument(
        "--live",
        metavar="URL",
        help="take the baseline (what is already down) from the daemon at URL, e.g. "
        'http://127.0.0.1:9120 or "$WATCHDOG_URL"; the answer names what was down',
    )
    _add_format(blast)

    run = commands.add_parser(
        "run",
        help="watch the estate: probe, propagate, record, alert, serve the API",
        description=(
            "Run the daemon on FILE until SIGTERM or SIGINT (it stops within 5 s); "
            "SIGHUP reloads FILE. Exit 3 when FILE is refused, a secret's environment "
            "variable is unset, or the API cannot listen."
        ),
        epilog="example:\n  watchdog run examples/demo/estate.yaml --listen 127.0.0.1:9200",
        formatter_class=raw,
    )
    run.add_argument("file", metavar="FILE", help="the topology file with the daemon's settings")
    run.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where the API listens, instead of FILE's server.listen (default 127.0.0.1:9120)",
    )
    run.add_argument(
        "--replica",
        metavar="NAME",
        help="this replica's name, instead of FILE's cluster.replica (default: the host "
        "name and the API's port); only with cluster:",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines (and console alerts) for people, or one JSON object per line "
        "(default: text)",
    )

    maneuver = commands.add_parser(
        "maneuver",
        help="start or end a maneuver through the running daemon (checked on live state)",
        description=(
            "start: recorded and announced; refused (exit 2) when a critical node would go "
            "down, unless --force with a --reason. end: checks that everything it impacted "
            "recovered (exit 1 if not). " + _DAEMON_NOTE
        ),
        epilog=_MANEUVER_EPILOG,
        formatter_class=raw,
    )
    steps = maneuver.add_subparsers(dest="step", required=True, parser_class=_Parser)
    start = steps.add_parser(
        "start",
        help="ask for a maneuver",
        description="Ask the daemon for a maneuver on its live state. " + _DAEMON_NOTE,
        epilog=_MANEUVER_EPILOG,
        formatter_class=raw,
    )
    _add_daemon_file(start)
    _add_maneuver(start, required=True, baseline=False)
    start.add_argument("--by", required=True, metavar="NAME", help="who does it (recorded)")
    start.add_argument(
        "--reason", default="", metavar="TEXT", help="why (recorded; needed with --force)"
    )
    start.add_argument(
        "--force",
        action="store_true",
        help="do it even if critical nodes go down (needs --reason; announced as such)",
    )
    _add_live(start)
    _add_format(start)
    end = steps.add_parser(
        "end",
        help="end a maneuver and check the recovery",
        description="End maneuver ID; exit 1 if what it impacted has not recovered. "
        + _DAEMON_NOTE,
        epilog=_MANEUVER_EPILOG,
        formatter_class=raw,
    )
    _add_daemon_file(end)
    end.add_argument("id", type=int, metavar="ID", help="the maneuver's number, as start said it")
    _add_live(end)
    _add_format(end)

    silence = commands.add_parser(
        "silence",
        help="add, list or expire silences in the running daemon",
        description=(
            "A silence mutes the alerts of a node, or of the nodes with a label, for a "
            "while. One on a node that critical nodes need is refused (exit 2) unless "
            "--force; an alert that names a critical node is never muted. " + _DAEMON_NOTE
        ),
        epilog=_SILENCE_EPILOG,
        formatter_class=raw,
    )
    silence_steps = silence.add_subparsers(dest="step", required=True, parser_class=_Parser)
    add = silence_steps.add_parser(
        "add",
        help="mute alerts of a node or label for a while",
        description="Mute the alerts of --node or of --label (not both). " + _DAEMON_NOTE,
        epilog=_SILENCE_EPILOG,
        formatter_class=raw,
    )
    _add_daemon_file(add)
    add.add_argument("--node", metavar="NODE", help="the node whose alerts are muted")
    add.add_argument(
        "--label", metavar="KEY=VALUE", help="the nodes with this label (one node at least)"
    )
    add.add_argument(
        "--for",
        dest="duration",
        required=True,
        metavar="DURATION",
        help="how long, e.g. 2h or 30m (it expires by itself, announced)",
    )
    add.add_argument("--by", required=True, metavar="NAME", help="who asks (recorded)")
    add.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded)")
    add.add_argument(
        "--force",
        action="store_true",
        help="silence a node that critical nodes need anyway (announced as a warning)",
    )
    _add_live(add)
    _add_format(add)
    listing = silence_steps.add_parser(
        "list",
        help="the silences in force",
        description="The silences in force. " + _DAEMON_NOTE,
        formatter_class=raw,
    )
    _add_daemon_file(listing)
    _add_live(listing)
    _add_format(listing)
    expire = silence_steps.add_parser(
        "expire",
        help="end a silence now",
        description="End silence ID now (announced). " + _DAEMON_NOTE,
        formatter_class=raw,
    )
    _add_daemon_file(expire)
    expire.add_argument("id", type=int, metavar="ID", help="the silence's number")
    _add_live(expire)
    _add_format(expire)

    incidents = commands.add_parser(
        "incidents",
        help="incident history per node from the daemon's store",
        description=(
            "Incidents per node from the store FILE names (state.path, or the Postgres "
            "database of state.url, its password in the variable state.password_env "
            "names): count, downtime, mean time to recover, recovery-target breaches, "
            "recurring nodes; incidents still open are marked. Reads the store; never "
            "creates it."
        ),
        epilog="example:\n  watchdog incidents examples/demo/estate.yaml --since 7d",
        formatter_class=raw,
    )
    incidents.add_argument("file", metavar="FILE", help="the topology file the daemon runs")
    incidents.add_argument(
        "--since",
        default="30d",
        metavar="DURATION",
        help="the window: incidents open at any time in it (default: 30d)",
    )
    _add_format(incidents)

    from watchdog import importing, status_cmd

    importing.add_parser(commands)
    status_cmd.add_parser(commands)

    graph = commands.add_parser(
        "graph",
        help="draw the topology (and a blast radius) as Graphviz DOT or Mermaid",
        description="Print FILE as a graph; with a maneuver, impacted nodes are coloured.",
        epilog=(
            "examples:\n"
            "  watchdog graph examples/oms-2017.yaml --shutdown farm-oms-1 | dot -Tsvg > b.svg\n"
            "  watchdog graph examples/oms-2017.yaml --format mermaid"
        ),
        formatter_class=raw,
    )
    graph.add_argument("file", metavar="FILE", help="the topology file")
    graph.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="(default: dot)")
    _add_maneuver(graph, required=False)
    return parser


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), or JSON on stdout for scripts",
    )


def _add_daemon_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        help="the topology file: the daemon is found at its server.listen (not needed "
        "with --live or $WATCHDOG_URL)",
    )


def _add_live(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--live",
        metavar="URL",
        help="the daemon's URL (default: $WATCHDOG_URL, else FILE's server.listen)",
    )


# The environment variable naming the daemon for the client commands, as
# amtool's --alertmanager.url.
URL_ENV = "WATCHDOG_URL"
_DAEMON_NOTE = (
    "The daemon is --live URL, else $WATCHDOG_URL, else FILE's server.listen; "
    "changes need its bearer token in $WATCHDOG_API_TOKEN."
)
_MAIN_EPILOG = """\
examples:
  watchdog check estate.yaml
  watchdog blast-radius estate.yaml --shutdown farm-oms-1
  watchdog run estate.yaml
  export WATCHDOG_URL=http://127.0.0.1:9120 WATCHDOG_API_TOKEN=...
  watchdog maneuver start --shutdown farm-oms-1 --by alice --reason "rack move"

Exit codes: 0 fine, 1 warning, 2 critical, 3 unusable input (usage errors too).
`watchdog COMMAND --help` describes each command."""
_BLAST_EPILOG = """\
examples:
  watchdog blast-radius examples/oms-2017.yaml --shutdown farm-oms-1
  watchdog blast-radius examples/oms-2017.yaml --shutdown farm-pay-1 --down farm-pay-2
  watchdog blast-radius estate.yaml --drain host-7 --live http://127.0.0.1:9120 --format json"""
_MANEUVER_EPILOG = """\
examples:
  watchdog maneuver start estate.yaml --shutdown farm-oms-1 --by alice --reason "rack move"
  watchdog maneuver start --drain host-7 --by bob --live http://127.0.0.1:9120
  watchdog maneuver end estate.yaml 2"""
_SILENCE_EPILOG = """\
examples:
  watchdog silence add estate.yaml --node search --for 2h --by bob --reason reindex
  watchdog silence add --label team=search --for 30m --by bob --reason deploy
  watchdog silence list --format json
  watchdog silence expire 4"""


def _colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def _refuse(args: argparse.Namespace, lines: list[str], problems: list[dict[str, Any]]) -> int:
    """Report unusable input: text on stderr, and JSON on stdout for scripts."""
    for line in lines:
        print(line, file=sys.stderr)
    if getattr(args, "format", "text") == "json":
        json.dump({"valid": False, "exit_code": EXIT_INVALID, "problems": problems}, sys.stdout)
        sys.stdout.write("\n")
    return EXIT_INVALID


def _load(args: argparse.Namespace) -> Topology | int:
    from watchdog.importing import fetch

    try:
        return load(args.file, fetch)
    except InvalidInput as err:
        return _invalid(args, err)


def _invalid(args: argparse.Namespace, err: InvalidInput) -> int:
    """Every problem of a refused file, then a summary; exit 3. A URL a
    problem quotes is shown redacted (the file's URLs carry passwords)."""
    count = len(err.problems)
    lines = [redact_urls(str(p)) for p in err.problems]
    lines.append(
        f"{printable(args.file)}: {count} problem{'s' if count != 1 else ''}, nothing loaded"
    )
    problems = [
        {"file": p.source, "line": p.line, "path": p.path, "message": redact_urls(p.message)}
        for p in err.problems
    ]
    return _refuse(args, lines, problems)


def _observations(
    args: argparse.Namespace, topology: Topology
) -> tuple[dict[str, State], list[Action]] | int:
    """The baseline and the actions named on the command line, every unknown
    node reported with a suggestion."""
    wrong: list[str] = []
    problems: list[dict[str, Any]] = []

    def known(option: str, name: str) -> bool:
        if name in topology:
            return True
        message = f"unknown node {name!r}{suggest(name, topology.nodes)}"
        wrong.append(f"{args.file}: --{option} {name}: {message}")
        problems.append(
            {"file": args.file, "line": None, "path": f"--{option}", "message": message}
        )
        return False

    observed: dict[str, State] = {}
    for name in args.unknown:
        if known("unknown", name):
            observed[name] = State.UNKNOWN
    for name in args.down:
        if known("down", name):
            observed[name] = State.DOWN
    actions = [Action(kind, name) for kind, name in args.actions if known(kind, name)]
    if args.actions_required and not args.actions and not wrong:
        wrong.append(
            "watchdog blast-radius: name a maneuver: --shutdown, --drain or --restart NODE"
        )
        problems.append({"file": args.file, "line": None, "path": "", "message": wrong[-1]})
    if wrong:
        return _refuse(args, wrong, problems)
    return observed, actions


_CHECK_DESCRIPTION = """\
Check each FILE as `watchdog run` reads it before it starts: the topology,
every probe, server, state, alerts, routes and templates, and the secrets
written into the file (refused: name an environment variable). A file that
passes is a file `run` accepts. Then lint its topology (shared fate,
single points of failure, ...).

Exit 0 clean, 1 lint findings, 3 a file `run` would refuse (every problem
on stderr as FILE:LINE: PATH: message); with several files, the worst.

What depends on the machine rather than the file (a secret's environment
variable unset or empty, a state file of another application, no directory
for it) is a warning that leaves the exit code alone, so that CI without
the secrets can check the file; `run` refuses to start on it, and with
--env `check` does too (exit 3): use --env where the daemon runs."""

_CHECK_EPILOG = """\
JSON (--format json) is one document on stdout. For one FILE, its result:
  {"source": FILE, "valid": true, "exit_code": 0|1, "nodes": N,
   "findings": [...], "problems": [], "warnings": [...]}
  or {"source": FILE, "valid": false, "exit_code": 3, "problems": [...],
   "warnings": [...]}
each problem and warning {"file", "line", "path", "message"}, each finding
{"rule", "severity", "nodes", "message"}; with --observed also "notes" (the
shape of a finding, severity "info"). For several, {"exit_code": WORST,
"files": [one result per FILE, in order]}.

--observed: exit 1 when a call between services is not in the topology, 3
when Prometheus cannot answer.

Files over 64 MiB and anything that is not a regular file (a directory, a
FIFO, a device) are refused unread.

examples:
  watchdog check estate.yaml
  watchdog check --env /etc/watchdog/estate.yaml     # on the daemon's host
  watchdog check estates/*.yaml --format json
  generate-estate | watchdog check -
  watchdog check estate.yaml --observed http://prometheus:9090 --window 6h"""

# What names standard input in messages.
_STDIN = "<stdin>"


def _check(args: argparse.Namespace) -> int:
    results = [_check_file(args, name) for name in args.files]
    worst = max(code for code, _ in results)
    if args.format == "json":
        out = (
            results[0][1]
            if len(results) == 1
            else {
                "exit_code": worst,
                "files": [result for _, result in results],
            }
        )
        print(json.dumps(out, indent=2))
    return worst


def _check_file(args: argparse.Namespace, name: str) -> tuple[int, dict[str, Any]]:
    """Check one file (`-`: standard input) as `run` would, then lint it;
    say so on stdout and stderr (text), and return the exit code and the
    file's JSON result."""
    from topology.document import read_stream
    from watchdog.config import config_from_document
    from watchdog.importing import fetch
    from watchdog.preflight import preflight

    source = _STDIN if name == "-" else name
    try:
        document = read_stream(sys.stdin.buffer, _STDIN) if name == "-" else read_document(name)
        config = config_from_document(document, fetch)
    except InvalidInput as err:
        return _check_refused(args, source, err.problems, ())
    found = preflight(config, os.environ, state=True)
    problems = list(found.problems)
    warnings = tuple(sorted(found.environment, key=lambda p: p.line or 0))
    if args.env:
        problems.extend(warnings)
        warnings = ()
    if problems:
        return _check_refused(args, source, InvalidInput(problems).problems, warnings)
    from topology.lint import lint  # networkx is slow to import: only here

    topology = config.topology
    findings = lint(topology)
    notes: list[Any] = []
    if args.observed is not None:
        observed = _observed(args, config)
        if isinstance(observed, str):
            return _check_refused(args, source, [Problem(source, None, "--observed", observed)], ())
        findings.extend(observed.findings)
        notes = list(observed.notes)
    code = 1 if findings else 0
    if args.format != "json":
        from watchdog.render import Style, render_findings

        sys.stdout.write(render_findings(topology, findings, Style(_colour(sys.stdout))))
        for note in notes:
            print(note)
    _check_warn(warnings)
    result = {
        "source": source,
        "valid": True,
        "exit_code": code,
        "nodes": len(topology),
        "findings": [f.to_json() for f in findings],
        "problems": [],
        "warnings": [_problem_json(w) for w in warnings],
    }
    if args.observed is not None:
        result["notes"] = [n.to_json() for n in notes]
    return code, result


def _observed(args: argparse.Namespace, config: Any) -> Any:
    """The observed-edges report for `check --observed`, or why there is
    none (one line)."""
    from watchdog.observed import EdgeQuery, ObservedError, observed_findings

    server = args.observed or config.prometheus
    if server is None:
        return "name Prometheus: --observed URL, or defaults.prometheus.url in the file"
    try:
        window_s = parse_duration(args.window)
    except ValueError:
        return f"--window: {bad_duration(args.window)}"
    queries: list[EdgeQuery] = []
    for text in args.edge_query:
        ends, equals, query = text.partition("=")
        caller, arrow, callee = ends.partition("->")
        labels = [
            tuple(x.strip() for x in side.split(",") if x.strip()) for side in (caller, callee)
        ]
        if not equals or not arrow or not all(labels) or not query.strip():
            return (
                f"--edge-query {printable(text)!r}: expected CALLER->CALLEE=QUERY, "
                "e.g. 'client->server=sum by (client, server) (rate(calls_total[{window}]))'"
            )
        queries.append(EdgeQuery(f"--edge-query {len(queries) + 1}", query, labels[0], labels[1]))
    try:
        return asyncio.run(
            observed_findings(config.topology, server, window_s=window_s, queries=queries or None)
        )
    except ObservedError as err:
        return "; ".join(redact_urls(r) for r in err.reasons)
    except ValueError as err:
        return f"--window: {err}"


def _check_refused(
    args: argparse.Namespace,
    source: str,
    problems: Sequence[Problem],
    warnings: Sequence[Problem],
) -> tuple[int, dict[str, Any]]:
    """A file `run` would refuse: every problem on stderr (a URL shown
    redacted, control characters escaped), then a summary."""
    count = len(problems)
    for problem in problems:
        print(redact_urls(str(problem)), file=sys.stderr)
    print(
        f"{printable(source)}: {count} problem{'s' if count != 1 else ''}, nothing loaded",
        file=sys.stderr,
    )
    _check_warn(warnings)
    return EXIT_INVALID, {
        "source": source,
        "valid": False,
        "exit_code": EXIT_INVALID,
        "problems": [_problem_json(p) for p in problems],
        "warnings": [_problem_json(w) for w in warnings],
    }


def _check_warn(warnings: Sequence[Problem]) -> None:
    for warning in warnings:
        print(
            f"warning: {redact_urls(str(warning))} "
            "(run refuses to start without it; --env makes this an error)",
            file=sys.stderr,
        )


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.source,
        "line": problem.line,
        "path": problem.path,
        "message": redact_urls(problem.message),
    }


def _blast_radius(args: argparse.Namespace) -> int:
    topology = _load(args)
    if isinstance(topology, int):
        return topology
    given = _observations(args, topology)
    if isinstance(given, int):
        return given
    observed, actions = given
    if args.live:
        live = _live_baseline(args, topology)
        if isinstance(live, int):
            return live
        observed = {**live, **observed}  # what the command line says wins
    impact = what_if(topology, observed, actions)
    # What was failed before the maneuver is part of no answer: said apart,
    # so a node already down does not seem to vanish from it.
    before = evaluate(topology, observed).not_up() if observed else {}
    already = {
        state: sorted(n for n, s in before.items() if s == state)
        for state in (State.DOWN, State.DEGRADED)
    }
    if args.format == "json":
        answer = impact.to_json()
        answer["already"] = {str(state): names for state, names in already.items()}
        print(json.dumps(answer, indent=2))
    else:
        from watchdog.render import Style, render_impact

        sys.stdout.write(render_impact(topology, impact, Style(_colour(sys.stdout))))
        for state, names in already.items():
            if names:
                shown = ", ".join(names[:10]) + (
                    f" and {len(names) - 10} more" if len(names) > 10 else ""
                )
                print(f"\nalready {state} before the maneuver (not counted): {shown}")
    return impact.exit_code


def _graph(args: argparse.Namespace) -> int:
    topology = _load(args)
    if isinstance(topology, int):
        return topology
    given = _observations(args, topology)
    if isinstance(given, int):
        return given
    observed, actions = given
    from topology.diagram import FORMATS

    impact = what_if(topology, observed, actions) if actions else None
    baseline = evaluate(topology, observed) if observed or actions else None
    sys.stdout.write(FORMATS[args.format](topology, impact, baseline))
    return 0


def _live_baseline(args: argparse.Namespace, topology: Topology) -> dict[str, State] | int:
    """The observed states of the daemon at `--live`, for the nodes of FILE."""
    url = args.live.rstrip("/") + "/api/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status = json.load(response)
    except (OSError, ValueError) as err:
        reason = redact_urls(str(getattr(err, "reason", None) or err))
        shown = redact_url(url)
        message = f"cannot read the live state at {shown}: {reason}"
        return _refuse(
            args,
            [f"watchdog: {message}"],
            [{"file": shown, "line": None, "path": "--live", "message": message}],
        )
    observed: dict[str, State] = {}
    for node in status.get("nodes", []):
        name, seen = node.get("node"), node.get("observed")
        if name in topology and seen is not None:
            observed[name] = State.parse(seen)
    return observed


def _run(args: argparse.Namespace) -> int:
    from watchdog.daemon import Daemon, StartError
    from watchdog.http_server import ListenError
    from watchdog.logs import configure
    from watchdog.resources import raise_fd_limit
    from watchdog.store import StoreError

    handler = configure(args.log_format)
    listen = None
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            return _refuse(
                args, [f"watchdog run: --listen: expected HOST:PORT, got {args.listen!r}"], []
            )
        listen = (host.strip("[]"), int(port))
    try:
        daemon = Daemon(
            args.file,
            listen=listen,
            secrets=handler.secrets,
            log_format=args.log_format,
            replica=args.replica,
        )
    except InvalidInput as err:
        return _invalid(args, err)
    except (StoreError, StartError) as err:
        return _refuse(args, [f"watchdog run: {redact_urls(str(err))}"], [])
    # Probes, sinks and API clients each hold a descriptor: take what the
    # system allows (systemd's default soft limit is 1,024).
    raise_fd_limit()
    try:
        asyncio.run(daemon.run())
    except ListenError as err:
        daemon.store.close()
        return _refuse(args, [f"watchdog run: {err}"], [])
    return 0


def _incidents(args: argparse.Namespace) -> int:
    from watchdog.config import load_config
    from watchdog.store import Store, StoreError

    try:
        window = parse_duration(args.since)
    except ValueError:
        return _refuse(args, [f"watchdog incidents: --since: {bad_duration(args.since)}"], [])
    try:
        config = load_config(args.file, _fetch)
    except InvalidInput as err:
        return _invalid(args, err)
    now = time.time()
    local = config.state_url is None
    if local and (config.state_path == ":memory:" or not os.path.exists(config.state_path)):
        # Creating it here would make an empty history look like a quiet one.
        return _refuse(
            args,
            [
                f"watchdog incidents: no state file at {printable(config.state_path)}: "
                "the daemon has not run with this file yet (it writes state.path)"
            ],
            [],
        )
    password = None
    if config.state_password_env is not None:
        password = os.environ.get(config.state_password_env) or None
        if password is None:
            return _refuse(
                args,
                [
                    f"watchdog incidents: state.password_env: the environment variable "
                    f"{config.state_password_env} is not set or empty"
                ],
                [],
            )
    try:
        # Postgres too: a database the daemon never wrote is refused, not given tables.
        with Store.open(config.state, clock=time.time, password=password, create=False) as store:
            summary = store.summary(now - window, now)
            incidents = store.incidents(now - window)
    except StoreError as err:
        return _refuse(args, [f"watchdog incidents: {redact_urls(str(err))}"], [])
    if args.format == "json":
        out = {
            "since_s": window,
            "nodes": [
                {
                    "node": s.node,
                    "incidents": s.incidents,
                    "downtime_s": s.downtime_s,
                    "mttr_s": s.mttr_s,
                    "breaches": s.breaches,
                    "recurring": s.recurring,
                }
                for s in summary
            ],
            "incidents": [i.to_json(now) for i in incidents],
        }
        print(json.dumps(out, indent=2))
        return 0
    if not summary:
        print(f"no incidents in the last {format_duration(window)}")
        return 0
    print(f"incidents in the last {format_duration(window)}, most first:")
    still_open = {i.node for i in incidents if i.ended_at is None}
    for s in summary:
        mttr = format_duration(s.mttr_s) if s.mttr_s is not None else "-"
        flags = ["still open"] if s.node in still_open else []
        flags += [f"{s.breaches} over target"] if s.breaches else []
        if s.recurring:
            flags.append("recurring: chase the root cause")
        extra = f"  ({'; '.join(flags)})" if flags else ""
        print(
            f"  {s.node}: {s.incidents} incident{'s' if s.incidents != 1 else ''}, "
            f"down {format_duration(s.downtime_s)}, mean time to recover {mttr}{extra}"
        )
    return 0


def _daemon_call(
    args: argparse.Namespace, command: str, method: str, path: str, body: dict[str, Any] | None
) -> dict[str, Any] | int:
    """One call to the running daemon's API (the URL from --live, or FILE's
    server.listen), with the bearer token from WATCHDOG_API_TOKEN: its JSON
    answer (a 409's too: it carries the refusal), or an exit code after
    saying what went wrong."""
    from watchdog.config import TOKEN_ENV, load_config

    url = args.live or os.environ.get(URL_ENV)
    if not url:
        if args.file is None:
            return _refuse(
                args,
                [f"watchdog {command}: name the daemon: --live URL, ${URL_ENV}, or FILE"],
                [],
            )
        try:
            config = load_config(args.file, _fetch)
        except InvalidInput as err:
            return _invalid(args, err)
        host = config.server.host
        url = f"http://{f'[{host}]' if ':' in host else host}:{config.server.port}"
    url = url.rstrip("/")
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {os.environ.get(TOKEN_ENV, '')}",
        },
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as err:
        answer = json.loads(err.read() or b"{}")
        if err.code == 409 and command == "silence":
            # Refused by the rules (a node critical nodes need), not bad input.
            for p in answer.get("problems") or []:
                print(f"REFUSED: {_said(p)}")
            return 2
        if err.code != 409 or "problems" in answer:
            problems = answer.get("problems") or [f"http {err.code}"]
            return _refuse(
                args,
                [f"watchdog {command}: {redact_urls(_said(p))}" for p in problems],
                [p for p in problems if isinstance(p, dict)],
            )
    except (OSError, ValueError) as err:
        reason = redact_urls(str(getattr(err, "reason", None) or err))
        shown = redact_url(url)
        return _refuse(
            args, [f"watchdog {command}: cannot reach the daemon at {shown}: {reason}"], []
        )
    return answer


def _said(problem: object) -> str:
    """A problem the API answered, for people: `path: message` (the
    message alone when it is about no path)."""
    if not isinstance(problem, dict):
        return str(problem)
    path, message = problem.get("path") or "", str(problem.get("message", ""))
    where = f"{problem['file']}:{problem['line']}: " if problem.get("file") else ""
    return f"{where}{path}: {message}" if path else f"{where}{message}"


def _maneuver(args: argparse.Namespace) -> int:
    if args.step == "start":
        body: dict[str, Any] = {
            "actions": [{"action": kind, "node": node} for kind, node in args.actions],
            "by": args.by,
            "reason": args.reason,
            "force": args.force,
        }
        answer = _daemon_call(args, "maneuver", "POST", "/api/v1/maneuvers", body)
    else:
        answer = _daemon_call(args, "maneuver", "POST", f"/api/v1/maneuvers/{args.id}/end", {})
    if isinstance(answer, int):
        return answer
    if args.format == "json":
        print(json.dumps(answer, indent=2))
        if args.step == "end":
            return 0 if answer["outcome"] == "recovered" else 1
        return 2 if answer["state"] == "refused" else 0
    what = ", ".join(f"{a['action']} {a['node']}" for a in answer["actions"])
    if args.step == "end":
        print(f"maneuver {answer['id']} ({what}) ended: {answer['outcome']}")
        return 0 if answer["outcome"] == "recovered" else 1
    critical = [i["node"] for i in answer["impact"]["impacted"] if i["critical"]]
    effect = f"critical {', '.join(critical)} impacted" if critical else "no critical node impacted"
    if answer["state"] == "refused":
        print(
            f"REFUSED: {what} ({answer['verdict']}: {effect}); "
            "--force with a --reason to do it anyway"
        )
        return 2
    forced = " (forced)" if answer["forced"] else ""
    print(f"maneuver {answer['id']} started{forced}: {what} ({answer['verdict']}: {effect})")
    file = f"{args.file} " if args.file else ""
    print(f"end it with: watchdog maneuver end {file}{answer['id']}")
    return 0


def _silence(args: argparse.Namespace) -> int:
    if args.step == "add":
        if args.node is not None and args.label is not None:
            return _refuse(args, ["watchdog silence: --node or --label, not both"], [])
        if args.node is None and args.label is None:
            return _refuse(args, ["watchdog silence: name --node NODE or --label KEY=VALUE"], [])
        body = {
            "node": args.node,
            "label": args.label,
            "for": args.duration,
            "by": args.by,
            "reason": args.reason,
            "force": args.force,
        }
        answer = _daemon_call(args, "silence", "POST", "/api/v1/silences", body)
        if isinstance(answer, int):
            return answer
        if args.format == "json":
            print(json.dumps(answer, indent=2))
            return 0
        what = f"node {answer['node']}" if answer["node"] else f"label {answer['label']}"
        forced = " (forced)" if answer["forced"] else ""
        print(f"silence {answer['id']}{forced}: {what} until {_when(answer['expires_at'])}")
        return 0
    if args.step == "expire":
        answer = _daemon_call(args, "silence", "DELETE", f"/api/v1/silences/{args.id}", None)
        if isinstance(answer, int):
            return answer
        if args.format == "json":
            print(json.dumps(answer, indent=2))
            return 0
        print(f"silence {answer['id']} expired")
        return 0
    answer = _daemon_call(args, "silence", "GET", "/api/v1/silences", None)
    if isinstance(answer, int):
        return answer
    if args.format == "json":
        print(json.dumps(answer, indent=2))
        return 0
    for item in answer["silences"]:
        what = f"node {item['node']}" if item["node"] else f"label {item['label']}"
        print(
            f"{item['id']}: {what} until {_when(item['expires_at'])} "
            f"by {item['by']}: {item['reason']}{' (forced)' if item['forced'] else ''}"
        )
    if not answer["silences"]:
        print("no silence in force")
    return 0


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def _fetch(kind: str, settings: Mapping[str, str]) -> list[tuple[str, Any]]:
    """Live sources named in a file's `sources:` (see watchdog.importing)."""
    from watchdog.importing import fetch

    return fetch(kind, settings)


def _import(args: argparse.Namespace) -> int:
    from watchdog import importing

    return importing.run(args)


def _status(args: argparse.Namespace) -> int:
    from watchdog import status_cmd

    return status_cmd.run(args)


_COMMANDS = {
    "status": _status,
    "check": _check,
    "import": _import,
    "blast-radius": _blast_radius,
    "graph": _graph,
    "run": _run,
    "incidents": _incidents,
    "maneuver": _maneuver,
    "silence": _silence,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:
        # `watchdog graph ... | head`: the reader left, which is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
