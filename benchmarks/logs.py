"""Benchmark of log templates and log anomalies (watchdog.logmine,
watchdog.anomalies).

1. Template grouping accuracy on Loghub's HDFS_2k and BGL_2k, mining the
   `Content` column (the message without Loghub's header), scored against
   the corrected ground truth (loghub-2.0) and the original one, with the
   Loghub definition: a line is correct when the lines of its predicted
   group are exactly the lines of its true group. Rows: the configuration
   the daemon ships (MinerConfig defaults), a few generic variants, and
   Loghub's own Drain benchmark setting (its per-dataset regexes replaced by
   <*>, depth 4, st 0.5) run with drain3. Published Drain: 0.998 / 0.963.
2. BGL_2k replayed as a stream through LogAnalyzer: the raw lines without
   their label (first token), 10 lines per poll, polls 10 s apart (synthetic
   time: the 2k sample spans 213 days), interval 60 s, learning the first
   60 s (60 lines), silence off. A line is flagged when it is error-level
   and, at its poll, a spike is active, or a watched pattern, or a new
   error template whose template is the line's. Precision and recall of
   flagged lines vs the Label column ("-" = normal).
3. Throughput on one core: the whole log probe (a file on disk read by the
   follower, decoded, judged, its state saved in a SQLite store after every
   poll) and LogAnalyzer.feed alone, over generated service log lines
   (1.5% error lines), 1,000 lines per poll for the latter, vs bare drain3
   TemplateMiner.add_log_message (default config) on the same lines; and
   the miner with each mask alone on the same lines.
4. Memory: peak RSS (getrusage) at 1M, 5M and 10M lines of generated lines,
   10% of them errors from ever new templates, so that max_clusters is hit;
   run in a child process so that the other parts do not weigh on it.

Figures, never assertions.

    .venv/bin/python benchmarks/logs.py --data DIR [--lines 10000000]
        [--throughput-lines 1000000]

DIR holds Loghub's 2k samples (https://github.com/logpai/loghub:
HDFS/HDFS_2k.log_structured_corrected.csv and BGL/BGL_2k...csv); the
tests never need it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig
from report import table, verdict

from watchdog.anomalies import LogAnalyzer, LogRules
from watchdog.logmine import MASKS, Miner, MinerConfig
from watchdog.probe_state import ProbeState
from watchdog.probes.log import LogProbe, LogSpec
from watchdog.store import Store

# Loghub's Drain benchmark settings (logparser, Drain/benchmark.py).
LOGHUB = {
    "HDFS": ([r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"], 0.5, 4),
    "BGL": ([r"core\.\d+"], 0.5, 4),
}
PUBLISHED = {"HDFS": 0.998, "BGL": 0.963}
TARGET_LPS = 50_000


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[int]) -> float:
    """Loghub's grouping accuracy."""
    true_size = Counter(truth)
    groups: dict[int, list[str]] = defaultdict(list)
    for t, p in zip(truth, predicted, strict=True):
        groups[p].append(t)
    correct = 0
    for members in groups.values():
        ids = set(members)
        if len(ids) == 1 and true_size[members[0]] == len(members):
            correct += len(members)
    return correct / len(truth)


def mine_ours(config: MinerConfig, lines: Sequence[str]) -> list[int]:
    miner = Miner(config)
    return [miner.add(line).id for line in lines]


def mine_loghub(regexes: Sequence[str], st: float, depth: int, lines: Sequence[str]) -> list[int]:
    tmc = TemplateMinerConfig()
    tmc.drain_sim_th, tmc.drain_depth = st, depth
    # Loghub's Drain replaces its regexes with "<*>", which Drain then
    # treats as a parameter, unlike a named mask.
    tmc.masking_instructions = [MaskingInstruction(r, "*") for r in regexes]
    tm = TemplateMiner(config=tmc)
    return [int(tm.add_log_message(line)["cluster_id"]) for line in lines]


def part_accuracy(data: Path) -> None:
    print("1. Template grouping accuracy (Content column, Loghub definition)")
    variants: list[tuple[str, Callable[[str, list[str]], list[int]]]] = [
        ("shipped: MinerConfig() defaults", lambda _d, ls: mine_ours(MinerConfig(), ls)),
        ("  sim_th 0.5", lambda _d, ls: mine_ours(MinerConfig(sim_th=0.5), ls)),
        ("  depth 5", lambda _d, ls: mine_ours(MinerConfig(depth=5), ls)),
        ("  no masks", lambda _d, ls: mine_ours(MinerConfig(masks=()), ls)),
        ("drain3 bare (no masks, st 0.4, depth 4)", lambda _d, ls: mine_loghub([], 0.4, 4, ls)),
        ("Loghub Drain setting (see below)", lambda d, ls: mine_loghub(*LOGHUB[d], ls)),
    ]
    rows = [["configuration", "HDFS corr.", "HDFS orig.", "BGL corr.", "BGL orig."]]
    sets = {}
    for name in ("HDFS", "BGL"):
        corrected = read_csv(data / name / f"{name}_2k.log_structured_corrected.csv")
        original = read_csv(data / name / f"{name}_2k.log_structured.csv")
        lines = [r["Content"] for r in corrected]
        assert lines == [r["Content"] for r in original]
        sets[name] = (lines, [r["EventId"] for r in corrected], [r["EventId"] for r in original])
    for label, mine in variants:
        row = [label]
        for name, (lines, corr, orig) in sets.items():
            predicted = mine(name, lines)
            row += [f"{grouping_accuracy(corr, predicted):.3f}"]
            row += [f"{grouping_accuracy(orig, predicted):.3f}"]
        rows.append(row)
    rows.append(["published Drain (original truth)", "", "0.998", "", "0.963"])
    print(table(rows))
    for name, (regexes, st, depth) in LOGHUB.items():
        print(f"   Loghub {name}: regexes {regexes} -> <*>, depth {depth}, st {st}")
    print()


def part_stream(data: Path) -> None:
    print("2. BGL_2k as a stream: flagged lines vs labels")
    rows_csv = read_csv(data / "BGL" / "BGL_2k.log_structured_corrected.csv")
    raw = (data / "BGL" / "BGL_2k.log").read_text(encoding="utf-8").splitlines()
    lines = [line.split(" ", 1)[1] for line in raw]  # without the label
    labels = [r["Label"] != "-" for r in rows_csv]
    per_poll, poll_s = 10, 10.0
    rules = LogRules(interval_s=60.0, learning_s=60.0, silence_s=0)
    analyzer = LogAnalyzer(rules, started_at=0.0)
    # A mirror of the analyzer's miner (same config, same error lines in the
    # same order, so the same ids) tells which template each line got.
    mirror = Miner(rules.miner)
    error = re.compile(rules.error_pattern)
    flagged = [False] * len(lines)
    kinds: Counter[str] = Counter()
    for start in range(0, len(lines), per_poll):
        now = (start // per_poll) * poll_s
        batch = lines[start : start + per_poll]
        analyzer.feed(batch, now)
        ids = {i: mirror.add(line).id for i, line in enumerate(batch) if error.search(line)}
        active = analyzer.active(now)
        spike = any(a.kind in ("error_spike", "watched_pattern") for a in active)
        new = {a.template for a in active if a.kind == "new_error_template"}
        for i, tid in ids.items():
            if spike or mirror.template(tid) in new:
                flagged[start + i] = True
        kinds.update(a.kind for a in active)
    tp = sum(f and lab for f, lab in zip(flagged, labels, strict=True))
    fp = sum(f and not lab for f, lab in zip(flagged, labels, strict=True))
    fn = sum(lab and not f for f, lab in zip(flagged, labels, strict=True))
    errors = sum(1 for line in lines if error.search(line))
    in_learning = sum(labels[: int(rules.learning_s / poll_s) * per_poll])
    print(
        table(
            [
                [
                    "lines",
                    "error-level",
                    "alerts",
                    "flagged",
                    "TP",
                    "FP",
                    "FN",
                    "precision",
                    "recall",
                ],
                [
                    str(len(lines)),
                    str(errors),
                    str(sum(labels)),
                    str(sum(flagged)),
                    str(tp),
                    str(fp),
                    str(fn),
                    f"{tp / max(1, tp + fp):.3f}",
                    f"{tp / max(1, sum(labels)):.3f}",
                ],
            ]
        )
    )
    print(f"   alert lines inside the 60-line learning period: {in_learning}")
    print(f"   poll-anomalies seen: {dict(kinds)}")
    print()


WORDS = [
    "order",
    "payment",
    "user",
    "session",
    "cart",
    "invoice",
    "shipment",
    "token",
    "account",
    "profile",
    "report",
    "inventory",
    "catalog",
    "search",
    "index",
    "cache",
    "queue",
    "worker",
    "scheduler",
    "gateway",
]


def service_lines(n: int, seed: int = 1, error_share: float = 0.015) -> list[str]:
    """A typical service log: timestamps, levels, loggers, ids, 1.5% errors."""
    rng = random.Random(seed)
    infos = [
        "INFO  [http-nio-8080-exec-{t}] c.e.api.RequestLog - GET /api/{w}/{n} 200 in {ms}ms",
        "INFO  [http-nio-8080-exec-{t}] c.e.api.RequestLog - POST /api/{w} 201 in {ms}ms",
        "DEBUG [pool-2-thread-{t}] c.e.db.Pool - borrowed connection {n} from pool {w}",
        "INFO  [scheduler-{t}] c.e.jobs.Runner - job {w}-sync finished in {ms}ms, {n} items",
        "WARN  [http-nio-8080-exec-{t}] c.e.api.RateLimit - client 10.1.{t}.{n8} near limit",
        "INFO  [kafka-consumer-{t}] c.e.events.Consumer - consumed {n} records from {w}-events",
    ]
    errors = [
        "ERROR [http-nio-8080-exec-{t}] c.e.api.Errors - request {uuid} failed: timeout "
        "after {ms}ms calling {w}-service at 10.2.{t}.{n8}:8443",
        "ERROR [pool-2-thread-{t}] c.e.db.Pool - connection to db-{t}.internal:5432 refused",
        "ERROR [kafka-consumer-{t}] c.e.events.Consumer - failed to process record {n} of "
        "{w}-events: NullPointerException",
    ]
    out = []
    for i in range(n):
        pool = errors if rng.random() < error_share else infos
        tmpl = pool[rng.randrange(len(pool))]
        ts = f"2024-05-01T{(i // 3600000) % 24:02d}:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}"
        out.append(
            f"{ts}.{i % 1000:03d}Z "
            + tmpl.format(
                t=rng.randrange(32),
                w=WORDS[rng.randrange(len(WORDS))],
                n=rng.randrange(100000),
                n8=rng.randrange(256),
                ms=rng.randrange(2000),
                uuid=f"{rng.getrandbits(128):032x}",
            )
        )
    return out


def part_throughput(n: int) -> None:
    print(f"3. Throughput on one core ({n:,} generated service lines, 1.5% errors)")
    lines = service_lines(n)
    rows = [["pipeline", "lines/s", "vs drain3", "target"]]
    analyzer = LogAnalyzer(LogRules(), started_at=0.0)
    t0 = time.perf_counter()
    for k, start in enumerate(range(0, n, 1000)):
        analyzer.feed(lines[start : start + 1000], k * 10.0)
        analyzer.active(k * 10.0)
    ours = n / (time.perf_counter() - t0)
    whole, polls = whole_probe(lines)
    tmc = TemplateMinerConfig()
    tm = TemplateMiner(config=tmc)
    m = min(n, 200_000)
    t0 = time.perf_counter()
    for line in lines[:m]:
        tm.add_log_message(line)
    bare = m / (time.perf_counter() - t0)
    rows.append(
        [
            f"whole log probe: file, follower, rules, state saved ({polls} polls)",
            f"{whole:,.0f}",
            f"{whole / bare:.1f}x",
            verdict(whole >= TARGET_LPS),
        ]
    )
    rows.append(
        [
            "LogAnalyzer.feed + active",
            f"{ours:,.0f}",
            f"{ours / bare:.1f}x",
            verdict(ours >= TARGET_LPS),
        ]
    )
    rows.append([f"drain3 add_log_message (first {m:,})", f"{bare:,.0f}", "1.0x", ""])
    print(table(rows))
    m = min(n, 100_000)
    rows = [["miner masks (every line mined)", "lines/s", "us/line vs no mask"]]
    base = 0.0
    for masks in [(), *((name,) for name in MASKS), tuple(MASKS)]:
        miner = Miner(MinerConfig(masks=masks))
        t0 = time.perf_counter()
        for line in lines[:m]:
            miner.add(line)
        dt = time.perf_counter() - t0
        base = base or dt
        label = "none" if not masks else "all (defaults)" if len(masks) > 1 else str(masks[0])
        rows.append([label, f"{m / dt:,.0f}", f"+{(dt - base) / m * 1e6:.2f}"])
    print(table(rows))
    print()


def whole_probe(lines: Sequence[str]) -> tuple[float, int]:
    """Lines per second through a `LogProbe` as the daemon runs it: the
    lines written to a file first, then polled until all are read, each
    poll saving offsets and baselines in a store on disk."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "app.log"
        with path.open("w") as f:
            f.writelines(line + "\n" for line in lines)
        store = Store.open(Path(folder) / "state.db", clock=time.time)
        probe = LogProbe(
            LogSpec(str(path), from_start=True),
            "bench#0",
            state=ProbeState(store),
            interval_s=3600.0,
        )
        polls = 0
        t0 = time.perf_counter()
        while probe.counters.lines < len(lines) and polls < 10_000:
            asyncio.run(probe.check())
            polls += 1
        elapsed = time.perf_counter() - t0
        probe.close()
        store.close()
    return probe.counters.lines / elapsed, polls


def memory_lines(n: int, seed: int = 2) -> Iterator[list[str]]:
    """Polls of 1,000 lines; 10% errors from templates that keep changing."""
    rng = random.Random(seed)
    infos = service_lines(10_000, seed=seed, error_share=0.0)
    words = [f"{a}{b}" for a in WORDS for b in WORDS]
    for start in range(0, n, 1000):
        batch = []
        for i in range(start, min(n, start + 1000)):
            if i % 10 == 0:
                # 3 to 10 random words: under Drain's similarity threshold
                # with each other, so nearly every error line is a template.
                w = [words[rng.randrange(len(words))] for _ in range(3 + i % 8)]
                batch.append(f"{w[0]}: ERROR " + " ".join(w[1:]))
            else:
                batch.append(infos[i % len(infos)])
        yield batch


def part_memory(n: int) -> None:
    marks = sorted({m for m in (1_000_000, 5_000_000, 10_000_000, n) if m <= n})
    analyzer = LogAnalyzer(LogRules(learning_s=600.0), started_at=0.0)
    rows = [["lines", "peak RSS MiB", "templates", "lines/s"]]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(["0", f"{rss:.1f}", "0", ""])
    t0 = time.perf_counter()
    done = 0
    for k, batch in enumerate(memory_lines(n)):
        analyzer.feed(batch, k * 10.0)
        analyzer.active(k * 10.0)
        done += len(batch)
        if done in marks:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            templates = len(analyzer._miner)
            rate = done / (time.perf_counter() - t0)
            rows.append([f"{done:,}", f"{rss:.1f}", str(templates), f"{rate:,.0f}"])
    state = len(analyzer.miner_state())
    print(table(rows))
    print(f"   miner state at the end: {state:,} bytes (zlib JSON)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=10_000_000, help="memory run length")
    parser.add_argument("--throughput-lines", type=int, default=1_000_000)
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="Loghub's 2k samples: DIR/HDFS/HDFS_2k.log_structured_corrected.csv and DIR/BGL/...",
    )
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_only:
        part_memory(args.lines)
        return 0
    if args.data is None:
        parser.error("--data DIR is required: a copy of Loghub's 2k samples (see --help)")
    needed = [args.data / d / f"{d}_2k.log_structured_corrected.csv" for d in ("HDFS", "BGL")]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        print(
            f"Loghub 2k dataset not found ({', '.join(missing)}): expected HDFS/ and BGL/ "
            f"under {args.data}; pass --data DIR.",
            file=sys.stderr,
        )
        return 2
    # The memory run goes first: a child inherits its parent's peak RSS
    # (Linux keeps ru_maxrss across fork and exec), so the parent must still
    # be small when it starts.
    print("4. Memory: running first, reported last", flush=True)
    child = [sys.executable, __file__, "--memory-only", "--lines", str(args.lines)]
    memory = subprocess.run(child, check=False, capture_output=True, text=True)
    part_accuracy(args.data)
    part_stream(args.data)
    part_throughput(args.throughput_lines)
    print(f"4. Memory over {args.lines:,} lines (10% errors, ever new templates; child process)")
    print(memory.stdout + memory.stderr, end="")
    return memory.returncode


if __name__ == "__main__":
    sys.exit(main())
