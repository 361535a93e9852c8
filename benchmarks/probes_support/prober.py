"""The measured process of benchmarks/probes.py: our prober, run alone in
this process so that nothing else (nginx, the benchmark, blackbox_exporter's
driver) is charged to it.

Two modes:

- `daemon`: a real `watchdog.daemon.Daemon` on a generated topology file
  (one node per endpoint, one http probe each), serving its API on
  127.0.0.1 port 0, every result going through live state, the store and
  the metrics as in production;
- `bare`: the `ProbeScheduler` running `HttpProbe.check()` and recording
  the verdict in a dict, nothing else: what the probes alone cost, with
  either our `HttpClients` (httpx's own transport) or an `httpx.AsyncClient`
  on the `httpx-aiohttp` transport (`--transport aiohttp`).

After `--warmup` seconds (at least one interval, so every probe has run
once and connections are open) it measures for `--seconds`: probes
completed, failures, process CPU time (time.process_time), scheduling lags
(the scheduler's on_lag), nginx's accepted connections (stub_status), and
at the end the peak RSS (VmHWM). It prints one JSON object on stdout.

    .venv/bin/python benchmarks/probes_support/prober.py --mode daemon \
        --topology FILE --status-url URL --seconds 60 --warmup 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from alerts.transitions import Transition
from topology import State
from watchdog.config import ProbeConfig, load_config
from watchdog.daemon import Daemon
from watchdog.probes import DEFAULT_LIMITS, HttpClients, HttpProbe, HttpSpec, ProbeResult
from watchdog.scheduler import ProbeScheduler


@dataclass
class Tally:
    """What the prober did, counted as it happens."""

    measuring: bool = False
    completed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    lags: list[float] = field(default_factory=list)

    def result(self, state: State, reason: str) -> None:
        if self.measuring:
            self.completed += 1
            if state != State.UP:
                self.failures[f"{state}: {reason}"] += 1

    def lag(self, seconds: float) -> None:
        if self.measuring:
            self.lags.append(seconds)


def stub_accepts(url: str) -> int:
    """nginx's stub_status `accepts` counter (one blocking request, which
    itself is one accept: the caller subtracts it)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    with socket.create_connection((host, port), timeout=5) as sock:
        request = f"GET {parts.path} HTTP/1.0\r\nHost: {host}\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    # "Active connections: 1 \nserver accepts handled requests\n 5 5 7 \n..."
    return int(body.splitlines()[2].split()[0])


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM, reset by exec, unlike
    ru_maxrss which a child inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _CountingDaemon(Daemon):
    """The daemon, with its lag and results also heard by the benchmark."""

    tally: Tally

    def _lag(self, key: str, seconds: float) -> None:
        super()._lag(key, seconds)
        self.tally.lag(seconds)


def _attach(daemon: _CountingDaemon, tally: Tally) -> None:
    daemon.tally = tally
    live = daemon.live
    original = live.record

    def record(
        key: str, state: State, reason: str, latency_s: float | None, **options: Any
    ) -> list[Transition]:
        tally.result(state, reason)
        return original(key, state, reason, latency_s, **options)

    setattr(live, "record", record)  # noqa: B010 (an instance attribute on purpose)


async def _window(tally: Tally, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then measure for the window; the figures as a dict."""
    await asyncio.sleep(args.warmup)
    accepts0 = stub_accepts(args.status_url)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tally.measuring = True
    await asyncio.sleep(args.seconds)
    tally.measuring = False
    cpu1, wall1 = time.process_time(), time.perf_counter()
    accepts1 = stub_accepts(args.status_url)
    lags = sorted(tally.lags)
    return {
        "completed": tally.completed,
        "failures": sum(tally.failures.values()),
        "failure_reasons": dict(tally.failures.most_common(5)),
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "lag_p50_s": statistics.median(lags) if lags else float("nan"),
        "lag_p99_s": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan"),
        "lag_max_s": lags[-1] if lags else float("nan"),
        "new_connections": accepts1 - accepts0 - 1,  # less our own stub_status request
        "peak_rss_mb": peak_rss_mb(),
    }


async def run_daemon(args: argparse.Namespace) -> dict[str, Any]:
    """A real Daemon on the file, measured over the window."""
    tally = Tally()
    daemon = _CountingDaemon(args.topology, listen=("127.0.0.1", 0))
    _attach(daemon, tally)
    running = asyncio.create_task(daemon.run())
    try:
        figures = await _window(tally, args)
        figures["ready"] = daemon.ready()
    finally:
        daemon.stop()
        await running
    return figures


def _aiohttp_client() -> httpx.AsyncClient:
    """An httpx client on the httpx-aiohttp transport, set up as HttpClients
    sets up its own: same headers and connection limits, no proxies or
    netrc from the environment, plain http (TLS is not measured here)."""
    from httpx_aiohttp import AiohttpTransport

    return httpx.AsyncClient(
        transport=AiohttpTransport(verify=False, trust_env=False, limits=DEFAULT_LIMITS),
        headers={"User-Agent": "service-watchdog", "Accept-Encoding": "identity"},
        trust_env=False,
    )


async def run_bare(args: argparse.Namespace) -> dict[str, Any]:
    """The scheduler running HttpProbes, each verdict recorded in a dict."""
    config = load_config(args.topology)
    probes: list[ProbeConfig] = list(config.probes)
    tally = Tally()
    verdicts: dict[str, ProbeResult] = {}
    clients = HttpClients()
    client = _aiohttp_client() if args.transport == "aiohttp" else None
    checks: dict[str, HttpProbe] = {}
    for p in probes:
        assert isinstance(p.spec, HttpSpec)
        checks[p.key] = HttpProbe(p.spec, client or clients.client_for(p.spec))

    async def run(probe: ProbeConfig) -> None:
        result = await checks[probe.key].check()
        verdicts[probe.key] = result
        tally.result(result.state, result.reason)

    scheduler = ProbeScheduler(probes, run, time.time, on_lag=lambda _, s: tally.lag(s))
    scheduler.start()
    try:
        figures = await _window(tally, args)
    finally:
        await scheduler.shutdown(grace_s=2)
        await clients.aclose()
        if client is not None:
            await client.aclose()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Run one prober, print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("daemon", "bare"), default="daemon")
    parser.add_argument("--transport", choices=("httpx", "aiohttp"), default="httpx")
    parser.add_argument("--topology", type=Path, required=True)
    parser.add_argument("--status-url", required=True, help="nginx stub_status URL")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=12.0)
    args = parser.parse_args(argv)
    # Transitions and the like are logged as warnings: not wanted here.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    runner = run_daemon if args.mode == "daemon" else run_bare
    figures = asyncio.run(runner(args))
    json.dump(figures, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
