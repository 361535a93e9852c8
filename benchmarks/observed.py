"""Benchmark of the observed-edges check (watchdog.observed) on a 10k-node
estate against a real Prometheus holding 10,000 edge series.

The estate is benchmarks/generate.py's (seed 1). Its calls are written as
an OpenTelemetry service graph (`traces_service_graph_request_total`
counters, one sample every 5 minutes over the last 2 hours): 90% of them
along declared `depends_on` requirements, 9% between nodes with no
requirement (undeclared), 1% from names that are no node's. `promtool tsdb
create-blocks-from openmetrics` turns them into blocks, a `prometheus`
serves them on a free loopback port, and the check runs as `watchdog check
FILE --observed URL` would: the default queries (service graph and Istio,
the latter finding nothing) over 1h.

It prints, for --repeat runs, the seconds of the queries (the HTTP
exchange and reading the JSON into calls) and of the comparison with the
topology, and what the check found. Figures, never assertions.

    .venv/bin/python benchmarks/observed.py [--nodes 10000] [--edges 10000]
        [--repeat 3] [--seed 1]

Needs Debian's `prometheus` package (`/usr/bin/prometheus`, `promtool`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from generate import generate
from report import table

from topology import Topology, loads
from topology.observed import ObservedReport, compare
from watchdog.observed import fetch_calls
from watchdog.probes import HttpClients
from watchdog.probes.prometheus import PrometheusServer

PAST_MIN = 120
STEP_MIN = 5
METRIC = "traces_service_graph_request_total"


def edges(topology: Topology, count: int, seed: int) -> list[tuple[str, str, float]]:
    """`count` calls (client, server, requests per second): declared ones,
    undeclared ones and calls from unknown names, as the module says."""
    rng = random.Random(seed)
    declared = sorted({(n, m) for n, m, g in topology.edges() if g.via == "depends_on" and n != m})
    names = sorted(topology.nodes)
    chosen: dict[tuple[str, str], float] = {}
    wanted_declared = min(len(declared), count * 90 // 100)
    for pair in rng.sample(declared, wanted_declared):
        chosen[pair] = rng.uniform(0.05, 50)
    unknown = count // 100
    for attempt in range(count * 10):  # bounded: random pairs rarely collide
        if len(chosen) >= count - unknown or attempt == count * 10 - 1:
            break
        caller, callee = rng.choice(names), rng.choice(names)
        if caller != callee and callee not in topology.node(caller).requirements:
            chosen.setdefault((caller, callee), rng.uniform(0.05, 50))
    for i in range(count - len(chosen)):
        chosen[(f"external-{i:04d}", rng.choice(names))] = rng.uniform(0.05, 5)
    return [(a, b, rate) for (a, b), rate in chosen.items()]


def openmetrics(calls: Sequence[tuple[str, str, float]], now: float) -> str:
    """The calls as counters, one sample every STEP_MIN minutes."""
    lines = [f"# TYPE {METRIC} gauge"]
    minutes = range(-PAST_MIN, 1, STEP_MIN)
    for client, server, rate in calls:
        name = f'{METRIC}{{client="{client}",server="{server}"}}'
        lines.extend(
            f"{name} {(m + PAST_MIN + STEP_MIN) * 60 * rate:.3f} {now + 60 * m:.3f}"
            for m in minutes
        )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_prometheus(folder: Path, text: str) -> tuple[subprocess.Popen[bytes], str, float]:
    """A Prometheus serving `text`: the process, its URL, and the seconds
    promtool took to make the blocks."""
    source, data = folder / "series.om", folder / "data"
    source.write_text(text)
    started = time.perf_counter()
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)],
        check=True,
        timeout=600,
    )
    blocks_s = time.perf_counter() - started
    config = folder / "prometheus.yml"
    config.write_text("global:\n  evaluation_interval: 1h\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    for _ in range(600):  # bounded: 60 s
        if process.poll() is not None:
            raise SystemExit(f"prometheus ended at start: see {folder / 'prometheus.log'}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=5, trust_env=False).status_code == 200:
                return process, url, blocks_s
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("prometheus was not ready within 60 s")


async def runs(
    topology: Topology, url: str, repeat: int
) -> list[tuple[float, float, ObservedReport]]:
    """(query seconds, comparison seconds, report) per run."""
    out = []
    async with HttpClients() as clients:
        client = clients.get(verify_tls=True)
        for _ in range(repeat):
            started = time.perf_counter()
            calls = await fetch_calls(PrometheusServer(url), client, window_s=3600)
            queried = time.perf_counter()
            report = compare(topology, calls, 3600)
            out.append((queried - started, time.perf_counter() - queried, report))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        parser.error("needs prometheus and promtool (apt-get install prometheus)")
    text, _ = generate(args.nodes, args.seed)
    topology = loads(text, "generated")
    calls = edges(topology, args.edges, args.seed)
    with tempfile.TemporaryDirectory(prefix="observed-bench-") as folder:
        process, url, blocks_s = start_prometheus(
            Path(folder), openmetrics(calls, time.time() - 30)
        )
        try:
            results = asyncio.run(runs(topology, url, args.repeat))
        finally:
            process.terminate()
            process.wait(timeout=30)
    report = results[-1][2]
    rows = [["run", "query s", "compare s"]]
    for i, (query_s, compare_s, _) in enumerate(results, 1):
        rows.append([str(i), f"{query_s:.3f}", f"{compare_s:.3f}"])
    rows.append(
        [
            "median",
            f"{statistics.median(r[0] for r in results):.3f}",
            f"{statistics.median(r[1] for r in results):.3f}",
        ]
    )
    print(f"{len(topology)} nodes, {len(calls)} edge series; blocks made in {blocks_s:.1f}s")
    print(table(rows))
    print(
        f"{report.calls} calls read, {report.matched} between nodes; "
        f"{len(report.findings)} undeclared dependencies, {len(report.notes)} notes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
