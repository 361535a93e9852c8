"""Cluster benchmark: replicas of one estate sharing one Postgres store and
splitting the probes between them (`cluster: {shards: auto}`): what probe
rate do they sustain, what does each cost, and how long until the probes
of a replica killed with SIGKILL run again elsewhere? (issue 12).

Everything runs on 127.0.0.1 and is started and stopped here: one Postgres
server for the whole run (tests/support/postgres_server.py's
`running_postgres()`: initdb in a temp folder, fsync off, stopped and
removed at the end), and for each number of replicas R of --replicas
(1,2,3) and each size P of --probes (10,000 and 30,000):

- Estate: P nodes, each with exactly one `tcp:` probe (interval
  --interval, timeout 2s, failure_threshold 3): 4 farms (FARMS), each probing
  its own listener, and P - FARMS services spread over them (`runs_on`),
  each probing its farm's listener. One listening port per farm,
  accepting and closing each connection, served by a process of its own
  (storm_support/farms.py), so every probe succeeds. The file sets
  `state.url` to a fresh database of its own on the Postgres server (the
  password from an environment variable, `password_env`) and
  `cluster: {lease: --lease, shards: auto}`; no alert sink (nothing fails).
- Replicas r1..rR: `.venv/bin/watchdog run FILE --listen 127.0.0.1:PORT
  --replica rN`, each in a process group of its own, its stdout and
  stderr in a log file (the log's lines are counted by kind at the end).
- Ready: polled every 0.5 s (bounded by --ready-timeout) until every
  replica answers /-/ready with 200, says `watchdog_cluster_members` R,
  and the replicas' `watchdog_probes_owned` add up to P. Printed: the time
  from the first start to then.
- Steady window of --seconds: each replica's /metrics read at its start
  and end; the sustained probe rate is the sum over replicas of the growth
  of `watchdog_probe_results_total` (every series added up: the probe runs
  that replica made) over the time between its two reads (each read timed
  at the middle of its request), printed beside the target P / interval.
  CPU, % of one core, per replica: utime + stime from /proc/PID/stat over
  the window. Postgres's CPU over the window: the postmaster (its pid from
  `postmaster.pid` in the data folder) with its children's (cutime +
  cstime: those that ended, counted whole) and its live children's (every
  process whose parent is the postmaster): a backend that ended during the
  window counts with its CPU from before it, a rough figure.
- Failover (R >= 2): the victim is the last replica, rR. The probes it
  owns are those `watchdog.cluster.owner(key, sorted(members))` gives it
  (a probe's key is `NODE#0`). It is killed with SIGKILL at T
  (time.time()); then every 0.5 s (bounded: lease x 3 + interval x 3 +
  60 s) a survivor's /api/v1/status is read (each in turn: a replica
  knows at once when its own probes ran; timeout 60 s) until every one of
  the victim's probes has `last_at` > T in one of them, and the survivors'
  /metrics until their `watchdog_probes_owned` add up to P again.
  Printed: failover, the time from T to the status read that saw the last
  of them (its answer's arrival); beside it, from T to the latest of their
  first `last_at` past T seen (when the last of them actually ran); and
  the time from T to the metrics read that saw P owned again. "not within
  N s" when the bound passed first.
- Stop: SIGTERM to every replica still running, SIGKILL (to its group)
  after 30 s (SIGTERM_GRACE_S); the farms' process stopped; the database is left
  to the server, which is stopped and removed at the end.

Figures, never assertions: the table says what was measured on this
machine (the table's title says how many CPUs), shared with whatever else
runs on it.

    .venv/bin/python benchmarks/cluster.py [--replicas 1,2,3]
        [--probes 10000,30000] [--seconds 60] [--interval 10s] [--lease 10s]
        [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from report import sizes, table
from storm import count_log, daemon, farms

from watchdog.cluster import owner

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = ROOT / "tests" / "support"
PG_VARIABLE = "WATCHDOG_BENCH_PG_PASSWORD"
FARMS = 4
PROBE_TIMEOUT = "2s"
FAILURE_THRESHOLD = 3
POLL_S = 0.5
METRICS_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 60.0
SIGTERM_GRACE_S = 30.0
LABEL = re.compile(r'(\w+)="([^"]*)"')
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _seconds(text: str) -> float:
    """`10s`, `500ms`, `1m` or `10` as seconds (an argparse type)."""
    match = DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration such as 10s, got {text!r}")
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match[2]]
    return float(match[1]) * unit


def _duration(seconds: float) -> str:
    """Seconds as the topology file writes them: `10s`, `500ms`."""
    return f"{seconds:g}s" if seconds == int(seconds) else f"{seconds * 1000:g}ms"


class Gone(RuntimeError):
    """A replica exited, or the cluster never got ready, before the end."""


# --- the estate -------------------------------------------------------------------


def farm_names() -> list[str]:
    return [f"farm-{i}" for i in range(FARMS)]


def node_names(probes: int) -> list[str]:
    """Every node (one probe each): the farms, then the services."""
    return farm_names() + [f"svc-{i:05d}" for i in range(probes - FARMS)]


def render(probes: int, ports: dict[str, int], *, url: str, interval: str, lease: str) -> str:
    """The topology file every replica runs."""
    probe = f"interval: {interval}, timeout: {PROBE_TIMEOUT}"
    probe += f", failure_threshold: {FAILURE_THRESHOLD}"
    lines = [
        "# Generated by benchmarks/cluster.py",
        "version: 1",
        "state:",
        f'  url: "{url}"',
        f"  password_env: {PG_VARIABLE}",
        f"cluster: {{lease: {lease}, shards: auto}}",
        "nodes:",
    ]
    farms_ = farm_names()
    for farm in farms_:
        lines += [
            f"  {farm}:",
            "    kind: farm",
            f'    probes: [{{tcp: "127.0.0.1:{ports[farm]}", {probe}}}]',
        ]
    for i, name in enumerate(node_names(probes)[FARMS:]):
        farm = farms_[i % FARMS]
        lines += [
            f"  {name}:",
            f"    runs_on: [{farm}]",
            f'    probes: [{{tcp: "127.0.0.1:{ports[farm]}", {probe}}}]',
        ]
    return "\n".join(lines) + "\n"


# --- processes --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command's parenthesis (the
    state is [0], the parent [1], utime [11])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s(postmaster: int) -> float:
    """The CPU of the postmaster, of its children that ended (cutime +
    cstime) and of those alive, in seconds."""
    fields = _stat(postmaster)
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            child = _stat(int(entry.name))
            if int(child[1]) == postmaster:
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postmaster(data: Path) -> int | None:
    """The postmaster's pid, from the first line of `postmaster.pid`."""
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self) -> None:
        if self.process.poll() is not None:
            raise Gone(f"replica {self.name} exited with {self.process.returncode}")


def _stop(replicas: Sequence[Replica]) -> dict[str, str]:
    """SIGTERM to every replica still running, SIGKILL to the group of any
    still there after the grace: how each ended."""
    ended: dict[str, str] = {}
    started = time.monotonic()
    for replica in replicas:
        if replica.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                replica.process.send_signal(signal.SIGTERM)
    for replica in replicas:
        left = max(0.1, SIGTERM_GRACE_S - (time.monotonic() - started))
        if replica.process.returncode is not None and replica.name not in ended:
            ended[replica.name] = f"exited before ({replica.process.returncode})"
            continue
        try:
            code = replica.process.wait(timeout=left)
            ended[replica.name] = f"SIGTERM: exit {code} after {time.monotonic() - started:.1f} s"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(replica.process.pid, signal.SIGKILL)
            replica.process.wait(timeout=10)
            ended[replica.name] = f"killed -9 after {SIGTERM_GRACE_S:g} s of SIGTERM"
    return ended


# --- what the replicas say ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """What one /metrics read says (at: time.monotonic(), mid-request)."""

    at: float
    results: float  # every series of watchdog_probe_results_total added up
    owned: float | None
    members: float | None
    role: str | None


def parse_metrics(text: str, at: float) -> Reading:
    results = 0.0
    owned = members = None
    role = None
    for line in text.splitlines():
        if not line.startswith("watchdog_"):
            continue
        name, _, rest = line.partition("{")
        if rest:
            labels, _, value = rest.rpartition("} ")
        else:
            name, _, value = line.partition(" ")
            labels = ""
        try:
            number = float(value.split()[0])
        except (ValueError, IndexError):
            continue
        if name == "watchdog_probe_results_total":
            results += number
        elif name == "watchdog_probes_owned":
            owned = number
        elif name == "watchdog_cluster_members":
            members = number
        elif name == "watchdog_cluster_role" and number == 1:
            role = dict(LABEL.findall(labels)).get("role")
    return Reading(at, results, owned, members, role)


def read_metrics(client: httpx.Client, replica: Replica) -> Reading | None:
    """The replica's /metrics, or None if it did not answer."""
    start = time.monotonic()
    try:
        response = client.get(f"{replica.base}/metrics", timeout=METRICS_TIMEOUT_S)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_metrics(response.text, (start + time.monotonic()) / 2)


def _ready(client: httpx.Client, replica: Replica) -> bool:
    try:
        return client.get(f"{replica.base}/-/ready", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(
    client: httpx.Client, replicas: Sequence[Replica], probes: int, timeout_s: float
) -> str:
    """Until every replica is ready, sees them all, and they own every
    probe between them; what the last poll saw (Gone when the bound passes)."""
    deadline = time.monotonic() + timeout_s
    seen = "nothing yet"
    while time.monotonic() < deadline:
        for replica in replicas:
            replica.check()
        ready = [_ready(client, r) for r in replicas]
        readings = [read_metrics(client, r) for r in replicas] if all(ready) else []
        if readings and all(readings):
            members = [r.members for r in readings if r]
            owned = [r.owned or 0 for r in readings if r]
            seen = f"members {members}, owned {owned}"
            if all(m == len(replicas) for m in members) and sum(owned) == probes:
                return seen
        else:
            seen = f"ready {ready}"
        time.sleep(POLL_S)
    raise Gone(f"not ready within {timeout_s:g} s (last seen: {seen})")


def _sleep(seconds: float, replicas: Sequence[Replica]) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        for replica in replicas:
            replica.check()
        time.sleep(min(POLL_S, left))


# --- one configuration --------------------------------------------------------------


def run_one(
    r: int, p: int, args: argparse.Namespace, server: Any, directory: Path
) -> dict[str, Any]:
    """R replicas on an estate of P probes, end to end: its figures
    (partial, with "error", when a replica died or never got ready)."""
    tag = f"[{r} x {p}]"
    figures: dict[str, Any] = {"replicas": r, "probes": p, "target_rate": p / args.interval}
    database = server.create_database()
    topology = directory / f"cluster-{r}x{p}.yaml"
    replicas: list[Replica] = []
    with contextlib.ExitStack() as stack:
        farm_process = stack.enter_context(farms(farm_names()))
        topology.write_text(
            render(
                p,
                farm_process.ports,
                url=server.url(database),
                interval=args.interval_text,
                lease=args.lease_text,
            ),
            encoding="utf-8",
        )
        client = stack.enter_context(httpx.Client(trust_env=False))
        _progress(f"{tag} starting {r} replicas on database {database}")
        started = time.monotonic()
        for i in range(1, r + 1):
            name, port = f"r{i}", _free_port()
            log_path = directory / f"cluster-{r}x{p}-{name}.log"
            log = stack.enter_context(log_path.open("wb"))
            command = [args.watchdog, "run", str(topology)]
            command += ["--listen", f"127.0.0.1:{port}", "--replica", name]
            process = stack.enter_context(daemon(command, log))
            replicas.append(Replica(name, port, process, log_path))
        try:
            seen = wait_ready(client, replicas, p, args.ready_timeout)
            figures["ready_s"] = time.monotonic() - started
            _progress(f"{tag} ready after {figures['ready_s']:.1f} s ({seen})")
            _steady(figures, args, client=client, replicas=replicas, server=server, tag=tag)
            if r >= 2:
                _failover(figures, args, client=client, replicas=replicas, p=p, tag=tag)
        except Gone as err:
            figures["error"] = str(err)
            _progress(f"{tag} {err}")
        finally:
            figures["stopped"] = _stop(replicas)
    figures["logs"] = {
        replica.name: {"path": str(replica.log), **_log_summary(replica.log)}
        for replica in replicas
    }
    return figures


def _steady(
    figures: dict[str, Any],
    args: argparse.Namespace,
    *,
    client: httpx.Client,
    replicas: Sequence[Replica],
    server: Any,
    tag: str,
) -> None:
    postmaster = _postmaster(server.data)
    _progress(f"{tag} steady window of {args.seconds:g} s")
    first = [read_metrics(client, r) for r in replicas]
    cpu0 = [(_cpu_s(r.process.pid), time.monotonic()) for r in replicas]
    pg0 = (postgres_cpu_s(postmaster), time.monotonic()) if postmaster else None
    _sleep(args.seconds, replicas)
    cpu1 = [(_cpu_s(r.process.pid), time.monotonic()) for r in replicas]
    pg1 = (postgres_cpu_s(postmaster), time.monotonic()) if postmaster else None
    last = [read_metrics(client, r) for r in replicas]
    rates = []
    for a, b in zip(first, last, strict=True):
        rates.append(None if a is None or b is None else (b.results - a.results) / (b.at - a.at))
    figures["rates"] = rates
    figures["sustained_rate"] = None if None in rates else sum(r or 0.0 for r in rates)
    figures["owned"] = [b.owned if b else None for b in last]
    figures["roles"] = [b.role if b else None for b in last]
    figures["cpu_pct"] = [
        (c1 - c0) / (w1 - w0) * 100 for (c0, w0), (c1, w1) in zip(cpu0, cpu1, strict=True)
    ]
    if pg0 and pg1:
        figures["postgres_cpu_pct"] = (pg1[0] - pg0[0]) / (pg1[1] - pg0[1]) * 100
    _progress(
        f"{tag} sustained {figures['sustained_rate'] or 0:.0f}/s of {figures['target_rate']:.0f}/s"
        f", CPU {_pcts(figures['cpu_pct'])}"
    )


def _failover(
    figures: dict[str, Any],
    args: argparse.Namespace,
    *,
    client: httpx.Client,
    replicas: Sequence[Replica],
    p: int,
    tag: str,
) -> None:
    members = sorted(r.name for r in replicas)
    victim, survivors = replicas[-1], replicas[:-1]
    keys = {f"{node}#0" for node in node_names(p)}
    pending = {key for key in keys if owner(key, members) == victim.name}
    figures["victim"] = victim.name
    figures["victim_probes"] = len(pending)
    bound = args.lease * 3 + args.interval * 3 + 60
    figures["failover_bound_s"] = bound
    _progress(f"{tag} kill -9 {victim.name} ({len(pending)} probes); waiting up to {bound:g} s")
    killed = time.time()
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    first_after: dict[str, float] = {}
    statuses = 0
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline and (pending or "rebalanced_s" not in figures):
        tick = time.monotonic()
        for survivor in survivors:
            survivor.check()
        if "rebalanced_s" not in figures:
            readings = [read_metrics(client, s) for s in survivors]
            if all(readings) and sum(r.owned or 0 for r in readings if r) == p:
                figures["rebalanced_s"] = time.time() - killed
        if pending:
            # Each survivor in turn: each knows at once when its own probes
            # ran (the others' results reach it when they change).
            asked = survivors[statuses % len(survivors)]
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = client.get(f"{asked.base}/api/v1/status", timeout=STATUS_TIMEOUT_S)
                arrived = time.time()
                statuses += 1
                if response.status_code == 200:
                    for node in response.json().get("nodes", []):
                        for probe in node.get("probes", []):
                            key, at = probe.get("probe"), probe.get("last_at")
                            if key in pending and at is not None and at > killed:
                                pending.discard(key)
                                first_after[key] = at
                    if not pending:
                        figures["failover_s"] = arrived - killed
                        figures["last_ran_s"] = max(first_after.values(), default=killed) - killed
        time.sleep(max(0.0, POLL_S - (time.monotonic() - tick)))
    figures["status_reads"] = statuses
    figures["failover_pending"] = len(pending)
    _progress(
        f"{tag} failover {_s(figures.get('failover_s'), bound)}"
        f", owned rebalanced {_s(figures.get('rebalanced_s'), bound)}"
    )


def _log_summary(path: Path) -> dict[str, Any]:
    counts = count_log(path)
    return {"lines": counts.lines, "tracebacks": counts.tracebacks, "kinds": counts.kinds}


# --- printing -------------------------------------------------------------------------


def _s(value: float | None, bound: float | None = None) -> str:
    if value is None:
        return f"not within {bound:g} s" if bound is not None else "-"
    return f"{value:.1f}"


def _pcts(values: Sequence[float] | None) -> str:
    return "-" if not values else "[" + ", ".join(f"{v:.0f}" for v in values) + "]"


def _rate(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}/s"


def report(runs: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    rows = [
        [
            "replicas",
            "probes",
            "ready s",
            "target rate",
            "sustained",
            "CPU % per replica",
            "Postgres CPU %",
            "failover s",
            "(last ran s)",
            "owned rebalanced s",
        ]
    ]
    for f in runs:
        bound = f.get("failover_bound_s")
        failover = rebalanced = last_ran = "-"
        if bound is not None:
            failover = _s(f.get("failover_s"), bound)
            rebalanced = _s(f.get("rebalanced_s"), bound)
            last_ran = _s(f.get("last_ran_s"))
        pg = f.get("postgres_cpu_pct")
        rows.append(
            [
                str(f["replicas"]),
                f"{f['probes']:,}",
                _s(f.get("ready_s")),
                _rate(f["target_rate"]),
                _rate(f.get("sustained_rate")),
                _pcts(f.get("cpu_pct")),
                "-" if pg is None else f"{pg:.0f}",
                failover,
                last_ran,
                rebalanced,
            ]
        )
    out = [
        f"Cluster: replicas sharing one Postgres, probes sharded (interval {args.interval_text},"
        f" lease {args.lease_text}, steady window {args.seconds:g} s, {os.cpu_count()} CPUs)",
        "",
        table(rows),
        "",
        "failover: kill -9 of the last replica to the status read (of a survivor, each in"
        " turn) that saw the last of its probes run since; (last ran): to the latest of"
        " those probes' first run since;"
        " owned rebalanced: to the survivors' watchdog_probes_owned adding up to the probes.",
    ]
    for f in runs:
        tag = f"{f['replicas']} x {f['probes']:,}"
        if "error" in f:
            out.append(f"{tag}: stopped early: {f['error']}")
        if "victim" in f:
            out.append(
                f"{tag}: victim {f['victim']} owned {f['victim_probes']:,} probes;"
                f" {f.get('status_reads', 0)} status reads; roles at the window's end"
                f" {f.get('roles')}; owned {f.get('owned')}"
            )
        for name, log in f.get("logs", {}).items():
            kinds = "; ".join(f"{count} x {kind}" for kind, count in log["kinds"].items())
            out.append(
                f"{tag} {name} log: {log['lines']} lines, {log['tracebacks']} tracebacks"
                f" ({f['stopped'].get(name, '-')}): {kinds}"
            )
    return "\n".join(out)


@contextlib.contextmanager
def postgres() -> Iterator[Any]:
    """The tests' Postgres server (tests/support/postgres_server.py)."""
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))
    from postgres_server import PASSWORD, running_postgres

    os.environ[PG_VARIABLE] = PASSWORD  # the replicas inherit it
    with running_postgres() as server:
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    """Run every configuration; print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--replicas", type=sizes(1, "replica counts"), default=(1, 2, 3), help="default 1,2,3"
    )
    parser.add_argument(
        "--probes",
        type=sizes(FARMS + 1, "probe counts"),
        default=(10_000, 30_000),
        help="estate sizes, one probe per node (default 10000,30000)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="steady window (default 60)")
    parser.add_argument("--interval", type=_seconds, default=10.0, help="probe interval (10s)")
    parser.add_argument("--lease", type=_seconds, default=10.0, help="cluster lease (10s)")
    parser.add_argument(
        "--ready-timeout", type=float, default=600.0, help="seconds to wait for ready (600)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (files, logs)")
    parser.add_argument(
        "--watchdog",
        default=str(ROOT / ".venv" / "bin" / "watchdog"),
        help="the watchdog command (default .venv/bin/watchdog)",
    )
    args = parser.parse_args(argv)
    if shutil.which(args.watchdog) is None:
        parser.error(f"no watchdog command at {args.watchdog}: run make install")
    args.interval_text = _duration(args.interval)
    args.lease_text = _duration(args.lease)
    # A SIGTERM to the harness unwinds it, so every process it started goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    directory = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    runs: list[dict[str, Any]] = []
    try:
        with postgres() as server:
            for r in args.replicas:
                for p in args.probes:
                    runs.append(run_one(r, p, args, server, directory))
    except LookupError as err:  # no Postgres binaries, postgres user or psycopg
        parser.exit(1, f"cluster.py: {err}\n")
    finally:
        if args.keep:
            _progress(f"files kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(report(runs, args))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
