"""`watchdog status`: the status page in a terminal. It asks the running
daemon for `/api/v1/status-page` (found as the `maneuver` commands find it:
--live URL, else $WATCHDOG_URL, else FILE's server.listen) and prints the
same things in the same words: critical services first, each with its
state, since when, its recovery target and the time left, the root-cause
sentence and its record over 90 days; then the outages by root cause and
the maneuvers in progress. Colour only on a terminal (and never with
NO_COLOR); the words carry the meaning either way.

Exit codes, as the other commands (Nagios): 0 every critical service is up,
1 one is degraded, 2 one is down, 3 the daemon could not be asked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from topology import format_duration
from watchdog.render import Style
from watchdog.web.model import DAY_DEGRADED, DAY_DOWN, left, when

__all__ = ["add_parser", "exit_code", "render", "run"]

# The 90 days of a record, drawn in this many characters (3 days each).
BAR_CHARS = 30

_EPILOG = """\
examples:
  watchdog status examples/demo/estate.yaml
  watchdog status --live http://127.0.0.1:9120
  WATCHDOG_URL=http://127.0.0.1:9120 watchdog status --format json | jq '.services[0]'
  watchdog status --view public          # what customers see at /?view=public

exit: 0 every critical service up, 1 one degraded, 2 one down, 3 the daemon
could not be asked."""


def add_parser(commands: Any) -> None:
    """The `status` subcommand and its options."""
    from watchdog.cli import _add_daemon_file, _add_format, _add_live

    parser = commands.add_parser(
        "status",
        help="the status page in the terminal: critical services first, why, since when",
        description=(
            "What the daemon's status page (its URL /) shows, from the running daemon: "
            "critical services first with their state, since when, the time left of "
            "their recovery target, the root cause in a sentence and 90 days of history; "
            "the outages going on by root cause; the maneuvers in progress. The daemon is "
            "--live URL, else $WATCHDOG_URL, else FILE's server.listen."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_daemon_file(parser)
    _add_live(parser)
    parser.add_argument(
        "--view",
        choices=("internal", "public"),
        default="internal",
        help="internal (default): every critical node, causes, maneuvers; public: only "
        "the nodes labelled status_page: public, in customers' words",
    )
    _add_format(parser)


def run(args: argparse.Namespace) -> int:
    """Ask the daemon and print; the exit code."""
    from watchdog.cli import _colour, _daemon_call

    answer = _daemon_call(args, "status", "GET", f"/api/v1/status-page?view={args.view}", None)
    if isinstance(answer, int):
        return answer
    if args.format == "json":
        print(json.dumps(answer, indent=2))
    else:
        sys.stdout.write(render(answer, Style(colour=_colour(sys.stdout))))
    return exit_code(answer)


def exit_code(model: Mapping[str, Any]) -> int:
    """2 when a critical service is down, 1 when one is degraded, else 0."""
    states = {s["state"] for s in model["services"] if s["critical"]}
    if "down" in states:
        return 2
    if "degraded" in states:
        return 1
    return 0


def _state(style: Style, state: str) -> str:
    """A state in capitals, padded, coloured on a terminal."""
    text = f"{state.upper():<9}"
    if state == "down":
        return style.red(text)
    if state == "degraded":
        return style.yellow(text)
    if state == "up":
        return style.green(text)
    return style.dim(text)


def _bar(days: str, style: Style) -> str:
    """90 days in BAR_CHARS characters, oldest first: `-` no incident, `~`
    degraded at worst, `X` down at some time."""
    size = max(1, -(-len(days) // BAR_CHARS))
    out = []
    for start in range(0, len(days), size):
        chunk = days[start : start + size]
        if DAY_DOWN in chunk:
            out.append(style.red("X"))
        elif DAY_DEGRADED in chunk:
            out.append(style.yellow("~"))
        else:
            out.append(style.green("-"))
    return "".join(out)


def _ago(seconds: float) -> str:
    return f"{format_duration(max(0.0, round(seconds)))} ago"


def _service(s: Mapping[str, Any], now: float, style: Style, width: int) -> list[str]:
    name = style.bold(f"{s['name']:<{width}}") if s["critical"] else f"{s['name']:<{width}}"
    since = f"{'up since' if s['state'] == 'up' else 'since'} {when(s['since'], now)}"
    since += f" ({_ago(now - s['since'])})"
    if "recovery_target_s" in s:
        since += f", {left(s.get('left_s'), s['recovery_target_s'])}"
    lines = [f"  {_state(style, s['state'])} {name}  {since}"]
    indent = " " * 12
    if s["state"] != "up" or s["sentence"] != "up":
        lines.append(f"{indent}{s['sentence']}")
    record = s.get("uptime")
    if record is not None:
        incidents = record["incidents"]
        count = (
            f"{incidents} incident{'s' if incidents != 1 else ''}" if incidents else "no incident"
        )
        bar = _bar(record["days"], style)
        lines.append(f"{indent}90 days: {record['percent']:.2f}% up, {count}  [{bar}]")
    return lines


def render(model: Mapping[str, Any], style: Style) -> str:
    """The page as text: a headline, the services (critical first), the
    outages by root cause and the maneuvers in progress."""
    now = float(model["now"])
    public = model["view"] == "public"
    where = "public view" if public else model.get("source", "")
    lines = [
        f"{where}, as of {when(model['taken_at'], now)} ({_ago(now - model['taken_at'])})",
        _headline(model, style),
    ]
    if not model["healthy"]:
        lines.append(style.yellow("the daemon has not been heard from lately: this may be stale"))
    services: Sequence[Mapping[str, Any]] = model["services"]
    width = min(32, max((len(s["name"]) for s in services), default=0))
    if public:
        groups = [("Services", services)]
    else:
        groups = [
            ("Critical services", [s for s in services if s["critical"]]),
            ("Other services in trouble", [s for s in services if not s["critical"]]),
        ]
    for title, members in groups:
        lines += ["", style.bold(title)]
        if not members:
            lines.append("  none")
        for s in members:
            lines += _service(s, now, style, width)
        hidden = model.get("others_not_shown", 0)
        if title.startswith("Other") and hidden:
            lines.append(f"  ... and {hidden} more (see the outages below)")
    lines += ["", style.bold("Incidents" if public else "Outages now, by root cause")]
    if not model["incidents"]:
        lines.append("  none")
    for i in model["incidents"]:
        head = f"  {_state(style, i['state'])} {i['name'] if public else i['root']}"
        lines.append(f"{head}  since {when(i['since'], now)} ({_ago(now - i['since'])})")
        lines.append(f"{' ' * 12}{i['sentence']}")
        if not public:
            takes = []
            if i["critical"]:
                takes.append(f"takes critical {', '.join(i['critical'])} down")
            if i["others"]:
                shown = ", ".join(i["others"][:10]) + (", ..." if len(i["others"]) > 10 else "")
                takes.append(f"{len(i['others'])} other: {shown}")
            if takes:
                lines.append(f"{' ' * 12}{'; '.join(takes)}")
    lines += ["", style.bold("Maintenance in progress" if public else "Maneuvers in progress")]
    if model["history"]["fetched_at"] is None:
        lines.append("  (the history is not loaded yet)")
    elif not model["maneuvers"]:
        lines.append("  none")
    for m in model["maneuvers"]:
        started = m.get("started_at")
        since = f" since {when(started, now)}" if started is not None else ""
        if public:
            lines.append(f"  {m['name']}{since}")
        else:
            reason = f": {m['reason']}" if m["reason"] else ""
            forced = " (forced)" if m["forced"] else ""
            lines.append(f"  #{m['id']} {m['what']}{forced} by {m['by']}{since}{reason}")
    return "\n".join(lines) + "\n"


def _headline(model: Mapping[str, Any], style: Style) -> str:
    headline = model["headline"]
    text = headline["text"]
    if headline["indicator"] == "critical":
        return style.red(text)
    if headline["indicator"] in ("major", "minor"):
        return style.yellow(text)
    return style.green(text)
