"""Benchmark of the HTTP prober against nginx on loopback, beside Prometheus'
blackbox_exporter on the same targets, and the daemon's detection time.

Everything runs on 127.0.0.1 and is started and stopped here: one nginx
(Debian's; worker_processes 1, access_log off, `return 200 "ok\\n"` for every
URL) on a few ports, serving N distinct URLs /ep/0 .. /ep/N-1 spread over the
ports; its stub_status counts the TCP connections it accepted. Configs go
to a temp dir. For each N of --probes (1,000 and 10,000 by default), at a
10 s interval, each run in a window of --seconds after a warm-up of one
interval and a bit:

- ours, `daemon`: a real `watchdog.daemon.Daemon` on a generated topology
  file (N nodes, one http probe each, interval 10s, state in memory, API on
  port 0), in a subprocess of its own (probes_support/prober.py) so that
  nginx's CPU and ours never mix: probes completed per second, process CPU
  seconds per 1,000 probes (time.process_time), p50/p99 scheduling lag (the
  scheduler's on_lag), peak RSS (VmHWM), failures, and the new TCP
  connections nginx accepted (reused connections: close to 0);
- ours, `bare` (unless --skip-bare): the ProbeScheduler running
  HttpProbe.check() and keeping the verdict in a dict, nothing else, with
  our HttpClients (on httpx-aiohttp's transport since it was chosen by this
  measurement) and with a bare httpx.AsyncClient on that transport built
  beside it;
- theirs (unless --skip-blackbox): Debian's prometheus-blackbox-exporter
  with an http_2xx module, asked GET /probe?target=URL&module=http_2xx for
  the same URLs at the same rate by a small asyncio client in this process
  (keep-alive connections to the exporter; not measured): its CPU seconds
  per 1,000 probes from /proc/PID/stat (utime + stime), peak RSS, failures
  (probe_success not 1) and new connections to nginx.

Then the detection time, over --trials trials: a Daemon in this process
watches a farm (http probe, interval 1s, failure_threshold 3) and a critical
service running on it; nginx starts answering 503 for the farm's URL (a
flag file its config tests) and the time until the service's effective
state leaves `up` is taken, by polling the live state every 10 ms.

It prints a table with the targets and whether each is met. Figures, never
assertions: tests never time anything.

    .venv/bin/python benchmarks/probes.py [--probes 1000,10000] [--seconds 60]
        [--warmup 12] [--trials 5] [--skip-blackbox] [--skip-bare]

Needs nginx (`apt-get install nginx-light`) and, unless --skip-blackbox,
prometheus-blackbox-exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from probes_support.prober import stub_accepts
from report import sizes, table, verdict

from topology import State
from watchdog.daemon import Daemon

INTERVAL_S = 10.0  # the probes' interval in the throughput runs
NGINX_PORTS = 8  # blackbox_exporter opens a connection per probe: spread the 4-tuples
DETECT_INTERVAL_S = 1.0
DETECT_THRESHOLD = 3
TARGET_RATE_SHARE = 0.99  # of N / interval, to count as sustained
TARGET_LAG_P99_S = 1.0
TARGET_DETECT_S = DETECT_INTERVAL_S * DETECT_THRESHOLD + 1.0
DRIVER_CONNECTIONS = 64  # keep-alive connections of the driver to blackbox_exporter
PROBER = Path(__file__).with_name("probes_support") / "prober.py"

_NGINX_CONF = """\
worker_processes 1;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    default_type text/plain;
    # nginx closes a keep-alive connection after 1,000 requests by default:
    # raised, so that the new connections counted are the client's doing.
    keepalive_requests 10000000;
    keepalive_timeout 75s;
{servers}
    server {{
        listen 127.0.0.1:{status_port};
        location = /stub {{ stub_status; }}
    }}
}}
"""
_NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
        location = /det {{
            if (-f {dir}/det-down) {{ return 503 "down\\n"; }}
            return 200 "ok\\n";
        }}
    }}
"""
_BLACKBOX_CONF = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held together, so all distinct)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _wait_listening(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class Nginx:
    """The running nginx: where it listens and how to read its counter."""

    directory: Path
    ports: tuple[int, ...]
    status_port: int

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}/stub"

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i % len(self.ports)]}/ep/{i}"

    @property
    def detect_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}/det"

    @property
    def detect_flag(self) -> Path:
        return self.directory / "det-down"


@contextlib.contextmanager
def nginx(binary: str, directory: Path) -> Iterator[Nginx]:
    """nginx in the foreground on fresh loopback ports; stopped on exit."""
    *ports, status_port = _free_ports(NGINX_PORTS + 1)
    (directory / "tmp").mkdir()
    # Workers run as nobody and stat the flag file: let them into the dir.
    directory.chmod(0o755)
    servers = "".join(_NGINX_SERVER.format(port=p, dir=directory) for p in ports)
    conf = directory / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(dir=directory, servers=servers, status_port=status_port))
    command = [binary, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"]
    process = subprocess.Popen(command)
    try:
        _wait_listening(status_port)
        for port in ports:
            _wait_listening(port)
        yield Nginx(directory, tuple(ports), status_port)
    finally:
        _stop(process, signal.SIGQUIT)  # graceful shutdown


# --- our prober ---------------------------------------------------------------


def write_topology(path: Path, urls: Sequence[str], interval_s: float) -> None:
    """A topology of one node per URL, one http probe each."""
    lines = ["version: 1", "state: {path: ':memory:'}", "nodes:"]
    for i, url in enumerate(urls):
        lines.append(f"  ep-{i}:")
        lines.append(f"    probes: [{{http: '{url}', interval: {interval_s:g}s}}]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Run:
    """One prober's figures over the window."""

    label: str
    probes: int
    completed: int
    failures: int
    cpu_s: float
    wall_s: float
    lag_p50_s: float | None
    lag_p99_s: float | None
    peak_rss_mb: float
    new_connections: int
    note: str = ""

    @property
    def rate(self) -> float:
        return self.completed / self.wall_s

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu_s / self.completed * 1000 if self.completed else float("nan")


def run_ours(
    mode: str, transport: str, n: int, *, server: Nginx, directory: Path, args: argparse.Namespace
) -> Run:
    """Our prober in a subprocess of its own; its figures."""
    label = "ours, daemon" if mode == "daemon" else f"ours, bare {transport}"
    _progress(f"[{n}] {label}: {args.warmup:g} s warm-up, {args.seconds:g} s window")
    topo = directory / f"topology-{n}.yaml"
    if not topo.exists():
        write_topology(topo, [server.url(i) for i in range(n)], INTERVAL_S)
    command = [sys.executable, str(PROBER), "--mode", mode, "--transport", transport]
    command += ["--topology", str(topo), "--status-url", server.status_url]
    command += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    limit = args.warmup + args.seconds + 60
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        _progress(f"[{n}] {label}: no answer within {limit:g} s, killed")
        return Run(label, n, 0, 0, float("nan"), 1.0, None, None, float("nan"), 0, "killed")
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        _progress(f"[{n}] {label}: exit {done.returncode}")
        return Run(label, n, 0, 0, float("nan"), 1.0, None, None, float("nan"), 0, "failed")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["failure_reasons"]:
        _progress(f"[{n}] {label}: failures {figures['failure_reasons']}")
    return Run(
        label=label,
        probes=n,
        completed=figures["completed"],
        failures=figures["failures"],
        cpu_s=figures["cpu_s"],
        wall_s=figures["wall_s"],
        lag_p50_s=figures["lag_p50_s"],
        lag_p99_s=figures["lag_p99_s"],
        peak_rss_mb=figures["peak_rss_mb"],
        new_connections=figures["new_connections"],
    )


# --- blackbox_exporter --------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Driver:
    """A minimal HTTP/1.1 keep-alive client to blackbox_exporter: cheap, so
    that it does not starve the exporter of CPU on a small machine."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.writers: list[asyncio.StreamWriter] = []

    async def open(self, count: int) -> None:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writers.append(writer)
            self.pool.put_nowait((reader, writer))

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def probe(self, url: str) -> bool:
        """One /probe request; whether blackbox_exporter said probe_success 1."""
        reader, writer = await self.pool.get()
        try:
            path = f"/probe?module=http_2xx&target={quote(url, safe='')}"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            headers = head.decode("latin-1").lower()
            if "transfer-encoding: chunked" in headers:
                body = b""
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    chunk = await reader.readexactly(size + 2)
                    if size == 0:
                        break
                    body += chunk[:-2]
            else:
                length = int(headers.split("content-length:", 1)[1].split("\r\n", 1)[0])
                body = await reader.readexactly(length)
        finally:
            self.pool.put_nowait((reader, writer))
        return b"\nprobe_success 1" in body


async def _drive(
    driver: _Driver, urls: Sequence[str], pid: int, server: Nginx, args: argparse.Namespace
) -> dict[str, float]:
    """Ask for every URL once per interval, evenly spread, through the
    warm-up and the window; the exporter's figures over the window."""
    n = len(urls)
    step = INTERVAL_S / n
    counts = {"completed": 0, "failures": 0}
    measuring = False
    tasks: set[asyncio.Task[None]] = set()

    async def one(url: str) -> None:
        try:
            ok = await driver.probe(url)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            ok = False
        if measuring:
            counts["completed"] += 1
            counts["failures"] += not ok

    start = time.perf_counter()
    window_start = start + args.warmup
    end = window_start + args.seconds
    sent = 0
    figures: dict[str, float] = {}
    while True:
        now = time.perf_counter()
        if not measuring and now >= window_start:
            measuring = True
            figures["accepts0"] = stub_accepts(server.status_url)
            figures["cpu0"] = _proc_cpu_s(pid)
            figures["wall0"] = time.perf_counter()
        if now >= end:
            break
        due = min(int((now - start) / step) + 1, int((end - start) / step))
        while sent < due:
            task = asyncio.create_task(one(urls[sent % n]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.005)
    measuring = False
    figures["cpu1"] = _proc_cpu_s(pid)
    figures["wall1"] = time.perf_counter()
    figures["accepts1"] = stub_accepts(server.status_url)
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    figures.update(counts)
    return figures


def run_blackbox(
    binary: str, n: int, server: Nginx, directory: Path, args: argparse.Namespace
) -> Run:
    """blackbox_exporter asked for the same URLs at the same rate."""
    _progress(f"[{n}] blackbox_exporter: {args.warmup:g} s warm-up, {args.seconds:g} s window")
    conf = directory / "blackbox.yml"
    conf.write_text(_BLACKBOX_CONF)
    (port,) = _free_ports(1)
    command = [binary, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}"]
    command += ["--log.level=warn"]
    process = subprocess.Popen(command)
    try:
        _wait_listening(port)

        async def drive() -> dict[str, float]:
            driver = _Driver(port)
            await driver.open(DRIVER_CONNECTIONS)
            try:
                return await _drive(
                    driver, [server.url(i) for i in range(n)], process.pid, server, args
                )
            finally:
                await driver.close()

        figures = asyncio.run(drive())
        peak = _proc_peak_mb(process.pid)
    finally:
        _stop(process)
    return Run(
        label="blackbox_exporter",
        probes=n,
        completed=int(figures["completed"]),
        failures=int(figures["failures"]),
        cpu_s=figures["cpu1"] - figures["cpu0"],
        wall_s=figures["wall1"] - figures["wall0"],
        lag_p50_s=None,
        lag_p99_s=None,
        peak_rss_mb=peak,
        new_connections=int(figures["accepts1"] - figures["accepts0"] - 1),
    )


# --- detection time -----------------------------------------------------------


def _write_detection_topology(path: Path, url: str) -> None:
    path.write_text(
        "version: 1\n"
        "state: {path: ':memory:'}\n"
        "nodes:\n"
        "  det-farm:\n"
        "    kind: farm\n"
        f"    probes: [{{http: '{url}', interval: {DETECT_INTERVAL_S:g}s,"
        f" failure_threshold: {DETECT_THRESHOLD}, timeout: 1s}}]\n"
        "  det-app:\n"
        "    critical: true\n"
        "    runs_on: [det-farm]\n",
        encoding="utf-8",
    )


async def _detect(path: Path, flag: Path, trials: int) -> list[float]:
    daemon = Daemon(path, listen=("127.0.0.1", 0))
    running = asyncio.create_task(daemon.run())
    times: list[float] = []

    async def until(wanted: bool, limit_s: float) -> bool:
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            if (daemon.live.states["det-app"] == State.UP) == wanted:
                return True
            await asyncio.sleep(0.01)
        return False

    try:
        for trial in range(trials):
            flag.unlink(missing_ok=True)
            # Up again (success_threshold 2), and settled for a moment.
            if not daemon.ready() and not await until(True, 15):
                raise RuntimeError("the detection daemon never saw det-app up")
            if not await until(True, 15):
                raise RuntimeError("det-app did not recover between trials")
            await asyncio.sleep(1.0 + random.uniform(0, DETECT_INTERVAL_S))
            flag.touch()
            failed_at = time.perf_counter()
            if not await until(False, 15):
                raise RuntimeError(f"trial {trial}: det-app stayed up 15 s after its farm failed")
            times.append(time.perf_counter() - failed_at)
            _progress(f"detection trial {trial + 1}/{trials}: {times[-1]:.2f} s")
    finally:
        flag.unlink(missing_ok=True)
        daemon.stop()
        await running
    return times


def measure_detection(server: Nginx, directory: Path, trials: int) -> list[float]:
    """Seconds from the farm's URL failing to det-app's effective change."""
    _progress(f"detection time: {trials} trials")
    path = directory / "detection.yaml"
    _write_detection_topology(path, server.detect_url)
    return asyncio.run(_detect(path, server.detect_flag, trials))


# --- report -------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def report(
    runs: list[Run], detection: list[float] | None, args: argparse.Namespace, note: str
) -> str:
    """The printed tables: figures per run, the ratios, then the targets."""
    rows = [
        [
            "prober",
            "probes",
            "expected/s",
            "done/s",
            "CPU s/1k",
            "lag p50",
            "lag p99",
            "peak RSS",
            "failures",
            "new conns",
        ]
    ]
    for r in runs:
        if r.note:
            rows.append([r.label, f"{r.probes:,}", f"{r.probes / INTERVAL_S:,.0f}", r.note])
            rows[-1] += [""] * (len(rows[0]) - len(rows[-1]))
            continue
        rows.append(
            [
                r.label,
                f"{r.probes:,}",
                f"{r.probes / INTERVAL_S:,.0f}",
                f"{r.rate:,.1f}",
                f"{r.cpu_per_1k:.3f}",
                _ms(r.lag_p50_s),
                _ms(r.lag_p99_s),
                f"{r.peak_rss_mb:,.0f} MB",
                f"{r.failures:,}",
                f"{r.new_connections:,}",
            ]
        )
    out = [
        f"HTTP prober benchmark: nginx on loopback, interval {INTERVAL_S:g} s, "
        f"{args.warmup:g} s warm-up, {args.seconds:g} s window, {os.cpu_count()} CPUs",
        "(CPU s/1k: process CPU seconds per 1,000 probes = ms per probe;"
        " new conns: TCP connections nginx accepted in the window)",
        "",
        table(rows),
        "",
    ]
    if note:
        out += [note, ""]
    by = {(r.label, r.probes): r for r in runs}
    sizes = sorted({r.probes for r in runs})
    ratios = [["CPU per probe, ours / blackbox_exporter", *(f"{n:,}" for n in sizes)]]
    for label in sorted({r.label for r in runs if r.label != "blackbox_exporter"}):
        cells = []
        for n in sizes:
            ours, theirs = by.get((label, n)), by.get(("blackbox_exporter", n))
            cells.append(
                f"{ours.cpu_per_1k / theirs.cpu_per_1k:.2f}x"
                if ours and theirs and not ours.note
                else "-"
            )
        ratios.append([label, *cells])
    if any(r.label == "blackbox_exporter" for r in runs):
        out += [table(ratios), ""]

    targets = [["target", "wanted", "measured", ""]]
    for n in sizes:
        ours, theirs = by.get(("ours, daemon", n)), by.get(("blackbox_exporter", n))
        if ours is None or theirs is None or ours.note:
            targets.append(
                [f"CPU per probe at {n:,}, daemon / blackbox", "<= 1.00x", "-", "not run"]
            )
        else:
            ratio = ours.cpu_per_1k / theirs.cpu_per_1k
            targets.append(
                [
                    f"CPU per probe at {n:,}, daemon / blackbox",
                    "<= 1.00x",
                    f"{ratio:.2f}x ({ours.cpu_per_1k:.2f} vs {theirs.cpu_per_1k:.2f} ms)",
                    verdict(ratio <= 1.0),
                ]
            )
    big = by.get(("ours, daemon", 10_000))
    if big is None:
        targets.append(["10k probes per 10 s sustained", "", "", "not run"])
        targets.append(["p99 scheduling lag at 10k", "", "", "not run"])
    elif big.note:
        wanted = big.probes / INTERVAL_S * TARGET_RATE_SHARE
        targets.append(
            ["10k probes per 10 s sustained", f">= {wanted:,.0f}/s", big.note, "NOT MET"]
        )
        targets.append(
            ["p99 scheduling lag at 10k", f"< {_ms(TARGET_LAG_P99_S)}", big.note, "NOT MET"]
        )
    else:
        wanted = big.probes / INTERVAL_S * TARGET_RATE_SHARE
        sustained = big.rate >= wanted and big.failures == 0
        targets.append(
            [
                "10k probes per 10 s sustained, no failure",
                f">= {wanted:,.0f}/s",
                f"{big.rate:,.1f}/s, {big.failures} failures",
                verdict(sustained),
            ]
        )
        p99 = big.lag_p99_s if big.lag_p99_s is not None else float("inf")
        targets.append(
            [
                "p99 scheduling lag at 10k",
                f"< {_ms(TARGET_LAG_P99_S)}",
                _ms(big.lag_p99_s),
                verdict(p99 < TARGET_LAG_P99_S),
            ]
        )
    if detection:
        worst = max(detection)
        targets.append(
            [
                f"detection, interval {DETECT_INTERVAL_S:g}s x threshold {DETECT_THRESHOLD} + 1 s",
                f"<= {TARGET_DETECT_S:.1f} s",
                f"min {min(detection):.2f} / median {statistics.median(detection):.2f}"
                f" / max {worst:.2f} s ({len(detection)} trials)",
                verdict(worst <= TARGET_DETECT_S),
            ]
        )
    else:
        targets.append(["detection time", "", "", "not run"])
    out += ["Targets", "", table(targets)]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description="Benchmark the HTTP prober against nginx.")
    parser.add_argument(
        "--probes",
        type=sizes(1, "probe counts"),
        default=(1_000, 10_000),
        help="probe counts (default 1000,10000)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    parser.add_argument(
        "--warmup", type=float, default=12.0, help="warm-up before each window (default 12)"
    )
    parser.add_argument("--trials", type=int, default=5, help="detection trials (default 5)")
    parser.add_argument("--skip-blackbox", action="store_true", help="do not run blackbox_exporter")
    parser.add_argument("--skip-bare", action="store_true", help="only the daemon, not bare probes")
    args = parser.parse_args(argv)
    if args.warmup < INTERVAL_S:
        parser.error(f"--warmup must be at least the interval, {INTERVAL_S:g} s")
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if binary is None:
        print("nginx is not installed: apt-get install nginx-light (or nginx)", file=sys.stderr)
        return 2
    blackbox = None
    if not args.skip_blackbox:
        blackbox = shutil.which("prometheus-blackbox-exporter")
        if blackbox is None:
            print(
                "prometheus-blackbox-exporter is not installed: apt-get install"
                " prometheus-blackbox-exporter, or pass --skip-blackbox",
                file=sys.stderr,
            )
            return 2
    transports = ["httpx"]
    note = ""
    if importlib.util.find_spec("httpx_aiohttp") is not None:
        transports.append("aiohttp")
    elif not args.skip_bare:
        note = "httpx-aiohttp is not installed: the aiohttp transport was not measured."
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="probes-bench-") as scratch:
        directory = Path(scratch)
        with nginx(binary, directory) as server:
            for n in args.probes:
                runs.append(
                    run_ours("daemon", "httpx", n, server=server, directory=directory, args=args)
                )
                if not args.skip_bare:
                    for transport in transports:
                        runs.append(
                            run_ours(
                                "bare", transport, n, server=server, directory=directory, args=args
                            )
                        )
                if blackbox is not None:
                    runs.append(run_blackbox(blackbox, n, server, directory, args))
            detection = measure_detection(server, directory, args.trials) if args.trials else None
    sys.stdout.write(report(runs, detection, args, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
