"""Benchmark of the topology engine on generated estates of 1k, 10k and 100k nodes.

For each size it generates a topology file (benchmarks/generate.py, seed 1)
and measures, with time.perf_counter and the median of --repeat runs:

- the file size, and that the file is valid with no hard cycles;
- `topology.load` (parse, check, build the indexes) beside a bare
  `yaml.load(f, Loader=yaml.CSafeLoader)` of the same file, and beside the
  same with the cycle collector paused (as `topology.load` pauses it);
- one what-if: shutting down the farm with the most transitive dependents
  (`networkx.descendants` on a DiGraph with edges member -> dependent),
  beside `networkx.descendants` from that farm on the same graph: the
  verdict with the impacted set, then with every impacted record and its
  reason chain built too;
- the peak memory (ru_maxrss) of a fresh process that loads the file and
  runs the what-if, beside one that only does the bare `yaml.load`;
- end to end on the 10k file: `watchdog blast-radius FILE --shutdown FARM
  --format json` as a subprocess beside `python -c "yaml.load(...)"`.

It prints a table with the targets and whether each is met. Figures, never
assertions: tests never time anything.

    .venv/bin/python benchmarks/topology_engine.py [--sizes 1000,10000,100000]
        [--repeat 5] [--seed 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import networkx as nx
import yaml
from generate import write
from report import sizes, table, verdict

import topology

T = TypeVar("T")

DEFAULT_SIZES = (1_000, 10_000, 100_000)
TARGET_SIZE = 100_000  # the size the what-if and memory targets apply to
E2E_SIZE = 10_000  # the size of the end-to-end comparison
TARGET_WHAT_IF_RATIO = 2.0  # what-if / networkx.descendants
TARGET_PEAK_MB = 500.0
TARGET_E2E_RATIO = 1.5  # watchdog blast-radius / python -c yaml.load

# Run in fresh processes, so the parent's networkx graph and earlier sizes
# do not count; networkx is not imported by either.
_MEASURE_ENGINE = """\
import resource, sys
import topology
topo = topology.load(sys.argv[1])
impact = topology.what_if(topo, {}, [topology.Action("shutdown", sys.argv[2])])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(impact.impacted))
"""
_MEASURE_YAML = """\
import resource, sys, yaml
with open(sys.argv[1]) as f:
    data = yaml.load(f, Loader=yaml.CSafeLoader)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
# Linux hands a new process the peak RSS of the process that forked it (the
# forked copy of the address space keeps its high-water mark), so a child of
# this big process would report our peak instead of its own. A small
# launcher process in between gives the measured process a small parent.
_LAUNCHER = """\
import subprocess, sys
sys.stdout.write(subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout)
"""
_BARE_YAML = "import sys, yaml; yaml.load(open(sys.argv[1]), Loader=yaml.CSafeLoader)"


@dataclass(frozen=True, slots=True)
class SizeResult:
    """Every figure measured on one generated file."""

    nodes: int
    path: Path
    file_bytes: int
    requirements: int
    hard_acyclic: bool
    yaml_s: float
    load_s: float
    farm: str
    dependents: int  # transitive dependents of the farm (networkx.descendants)
    impacted: int  # nodes in the what-if answer, the farm included
    verdict: str
    what_if_s: float  # the verdict and the impacted set (what a gating script needs)
    answer_s: float  # the same, plus every impacted record with its reason chain
    descendants_s: float
    yaml_paused_s: float  # bare yaml.load with the cycle collector paused, as load does
    peak_mb: float  # load + what-if in a fresh process
    yaml_peak_mb: float  # bare yaml.load in a fresh process


@dataclass(frozen=True, slots=True)
class EndToEnd:
    """The CLI beside a bare YAML load, each a fresh process."""

    nodes: int
    farm: str
    watchdog_s: float
    yaml_s: float
    exit_code: int
    impacted: int


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median_time(fn: Callable[[], T], runs: int) -> tuple[float, T]:
    """Median wall time of `runs` calls, and the last call's result. Each
    call starts after a full collection, so that garbage left by the previous
    one is not charged to it."""
    times = []
    result = None
    for _ in range(runs):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(times), result


def _bare_yaml(path: Path, *, paused: bool = False) -> object:
    """`yaml.load` as anyone would call it; `paused` also pauses the cycle
    collector, as topology.load does, to show what that alone is worth."""
    if paused:
        gc.disable()
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.load(f, Loader=yaml.CSafeLoader)
    finally:
        gc.enable()


def _graphs(topo: topology.Topology) -> tuple[nx.DiGraph[str], nx.DiGraph[str]]:
    """The whole graph (member -> dependent) and its non-soft part."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(topo.nodes)
    hard: nx.DiGraph[str] = nx.DiGraph()
    for name, member, group in topo.edges():
        graph.add_edge(member, name)
        if not group.soft:
            hard.add_edge(member, name)
    return graph, hard


def _worst_farm(topo: topology.Topology, graph: nx.DiGraph[str]) -> tuple[str, int]:
    """The farm with the most transitive dependents (ties: first by name)."""
    best, most = "", -1
    for name, node in topo.nodes.items():
        if node.kind == "farm":
            count = len(nx.descendants(graph, name))
            if count > most:
                best, most = name, count
    return best, most


def _peak_mb(rss: int) -> float:
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _measure(code: str, *args: str) -> list[str]:
    """The words `code` prints, run in a fresh process with a small parent."""
    command = [sys.executable, "-c", _LAUNCHER, sys.executable, "-c", code, *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()


@dataclass(frozen=True, slots=True)
class _Engine:
    hard_acyclic: bool
    farm: str
    dependents: int
    impacted: int
    verdict: str
    what_if_s: float
    answer_s: float
    descendants_s: float


def _engine_figures(nodes: int, topo: topology.Topology, repeat: int) -> _Engine:
    """The what-if from the worst farm beside networkx.descendants. The
    graphs are dropped on return, before the next size."""
    _progress(f"[{nodes}] picking the farm with the most transitive dependents")
    graph, hard = _graphs(topo)
    hard_acyclic = nx.is_directed_acyclic_graph(hard)
    del hard
    farm, dependents = _worst_farm(topo, graph)

    _progress(f"[{nodes}] what-if and descendants from {farm} x{repeat}")
    actions = [topology.Action("shutdown", farm)]
    impact = topology.what_if(topo, {}, actions)  # also a warm-up
    nx.descendants(graph, farm)
    what_if_s, _ = _median_time(lambda: topology.what_if(topo, {}, actions).verdict, repeat)
    answer_s, _ = _median_time(lambda: topology.what_if(topo, {}, actions).impacted, repeat)
    descendants_s, _ = _median_time(lambda: nx.descendants(graph, farm), repeat)
    return _Engine(
        hard_acyclic=hard_acyclic,
        farm=farm,
        dependents=dependents,
        impacted=len(impact.impacted),
        verdict=str(impact.verdict),
        what_if_s=what_if_s,
        answer_s=answer_s,
        descendants_s=descendants_s,
    )


def measure_size(nodes: int, directory: Path, seed: int, repeat: int) -> SizeResult:
    """Generate a file of `nodes` nodes and measure everything on it."""
    path = directory / f"topology-{nodes}.yaml"
    _progress(f"[{nodes}] generating {path}")
    stats = write(path, nodes, seed)
    gc.collect()

    _progress(f"[{nodes}] yaml.load x{repeat}")
    yaml_s, _ = _median_time(lambda: _bare_yaml(path), repeat)
    yaml_paused_s, _ = _median_time(lambda: _bare_yaml(path, paused=True), repeat)
    _progress(f"[{nodes}] topology.load x{repeat}")
    load_s, topo = _median_time(lambda: topology.load(path), repeat)
    engine = _engine_figures(nodes, topo, repeat)
    del topo
    gc.collect()

    _progress(f"[{nodes}] peak memory in fresh processes")
    rss, impacted = _measure(_MEASURE_ENGINE, str(path), engine.farm)
    if int(impacted) != engine.impacted:
        raise RuntimeError(f"the fresh process impacted {impacted}, not {engine.impacted}")
    (yaml_rss,) = _measure(_MEASURE_YAML, str(path))
    return SizeResult(
        nodes=nodes,
        path=path,
        file_bytes=path.stat().st_size,
        requirements=stats.requirements,
        hard_acyclic=engine.hard_acyclic,
        yaml_s=yaml_s,
        load_s=load_s,
        farm=engine.farm,
        dependents=engine.dependents,
        impacted=engine.impacted,
        verdict=engine.verdict,
        what_if_s=engine.what_if_s,
        answer_s=engine.answer_s,
        descendants_s=engine.descendants_s,
        yaml_paused_s=yaml_paused_s,
        peak_mb=_peak_mb(int(rss)),
        yaml_peak_mb=_peak_mb(int(yaml_rss)),
    )


def measure_end_to_end(result: SizeResult, repeat: int) -> EndToEnd:
    """The CLI and a bare YAML load as subprocesses, alternated, after one
    warm-up run of each (which also checks the CLI's answer)."""
    watchdog = Path(sys.executable).with_name("watchdog")
    cli = [str(watchdog), "blast-radius", str(result.path), "--shutdown", result.farm]
    cli += ["--format", "json"]
    bare = [sys.executable, "-c", _BARE_YAML, str(result.path)]
    _progress(f"[{result.nodes}] end to end x{repeat}")
    first = subprocess.run(cli, capture_output=True, text=True, check=False)
    answer = json.loads(first.stdout)
    if first.returncode not in (0, 1, 2) or len(answer["impacted"]) != result.impacted:
        raise RuntimeError(f"unexpected answer from {' '.join(cli)}: exit {first.returncode}")
    subprocess.run(bare, check=True)
    cli_times, bare_times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cli, stdout=subprocess.DEVNULL, check=False)
        cli_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(bare, check=True)
        bare_times.append(time.perf_counter() - start)
    return EndToEnd(
        nodes=result.nodes,
        farm=result.farm,
        watchdog_s=statistics.median(cli_times),
        yaml_s=statistics.median(bare_times),
        exit_code=first.returncode,
        impacted=len(answer["impacted"]),
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.2f} s"


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def report(results: list[SizeResult], e2e: EndToEnd | None, repeat: int, seed: int) -> str:
    """The printed table: figures per size, then the targets."""
    header = ["", *(f"{r.nodes:,} nodes" for r in results)]
    per_size: list[tuple[str, Callable[[SizeResult], str]]] = [
        ("file size", lambda r: f"{r.file_bytes / 1e6:.2f} MB"),
        ("requirements per node", lambda r: f"{r.requirements / r.nodes:.2f}"),
        ("hard cycles", lambda r: "none" if r.hard_acyclic else "SOME"),
        ("yaml.load (CSafeLoader)", lambda r: _ms(r.yaml_s)),
        ("topology.load", lambda r: _ms(r.load_s)),
        ("  load / yaml.load", lambda r: _ratio(r.load_s / r.yaml_s)),
        ("yaml.load, collector paused", lambda r: _ms(r.yaml_paused_s)),
        ("  load / that", lambda r: _ratio(r.load_s / r.yaml_paused_s)),
        ("farm shut down", lambda r: r.farm),
        ("  transitive dependents", lambda r: f"{r.dependents:,}"),
        ("  impacted (farm included)", lambda r: f"{r.impacted:,}"),
        ("  verdict", lambda r: r.verdict),
        ("what-if: verdict, impacted set", lambda r: _ms(r.what_if_s)),
        ("what-if: + records and reasons", lambda r: _ms(r.answer_s)),
        ("networkx.descendants", lambda r: _ms(r.descendants_s)),
        ("  verdict / descendants", lambda r: _ratio(r.what_if_s / r.descendants_s)),
        ("  records / descendants", lambda r: _ratio(r.answer_s / r.descendants_s)),
        ("peak RSS, load + what-if", lambda r: f"{r.peak_mb:,.0f} MB"),
        ("peak RSS, bare yaml.load", lambda r: f"{r.yaml_peak_mb:,.0f} MB"),
    ]
    rows = [header] + [[label, *(show(r) for r in results)] for label, show in per_size]
    out = [
        f"Topology engine benchmark (generate.py seed {seed}; medians of {repeat} runs)",
        "",
        table(rows),
        "",
    ]
    targets = [["target", "wanted", "measured", ""]]
    at_target = next((r for r in results if r.nodes == TARGET_SIZE), None)
    if at_target is None:
        for what in ("what-if verdict / descendants", "peak RSS, load + what-if"):
            targets.append([f"{what} at {TARGET_SIZE:,}", "", "", "not run"])
    else:
        ratio = at_target.what_if_s / at_target.descendants_s
        targets.append(
            [
                f"what-if verdict / descendants at {TARGET_SIZE:,}",
                f"<= {_ratio(TARGET_WHAT_IF_RATIO)}",
                _ratio(ratio),
                verdict(ratio <= TARGET_WHAT_IF_RATIO),
            ]
        )
        targets.append(
            [
                f"peak RSS, load + what-if at {TARGET_SIZE:,}",
                f"< {TARGET_PEAK_MB:.0f} MB",
                f"{at_target.peak_mb:,.0f} MB",
                verdict(at_target.peak_mb < TARGET_PEAK_MB),
            ]
        )
    if e2e is None:
        targets.append([f"end to end at {E2E_SIZE:,}", "", "", "not run"])
    else:
        ratio = e2e.watchdog_s / e2e.yaml_s
        targets.append(
            [
                f"end to end at {E2E_SIZE:,}: CLI / yaml.load",
                f"<= {_ratio(TARGET_E2E_RATIO)}",
                _ratio(ratio),
                verdict(ratio <= TARGET_E2E_RATIO),
            ]
        )
        cli = f"watchdog blast-radius FILE --shutdown {e2e.farm} --format json"
        out += [
            f"End to end on {e2e.nodes:,} nodes (fresh processes, medians of {repeat} runs)",
            "",
            table(
                [
                    [cli, _ms(e2e.watchdog_s), f"exit {e2e.exit_code}, {e2e.impacted:,} impacted"],
                    ['python -c "yaml.load(open(FILE), Loader=CSafeLoader)"', _ms(e2e.yaml_s), ""],
                    ["ratio", _ratio(e2e.watchdog_s / e2e.yaml_s), ""],
                ]
            ),
            "",
        ]
    out += ["Targets", "", table(targets)]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description="Benchmark the topology engine.")
    parser.add_argument(
        "--sizes",
        type=sizes(20, "sizes"),
        default=DEFAULT_SIZES,
        help="comma-separated node counts (default 1000,10000,100000)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per median (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--out", metavar="DIR", help="keep the generated files in DIR (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="topology-bench-") as scratch:
        directory = Path(args.out or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        results = [measure_size(n, directory, args.seed, args.repeat) for n in args.sizes]
        at_e2e = next((r for r in results if r.nodes == E2E_SIZE), None)
        e2e = measure_end_to_end(at_e2e, args.repeat) if at_e2e is not None else None
        sys.stdout.write(report(results, e2e, args.repeat, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
