"""Benchmark of the Kubernetes importer on a generated cluster export.

It generates, in memory and from --seed, the `List` that `kubectl get -A -o
json nodes,pods,replicasets,deployments,statefulsets,daemonsets,
poddisruptionbudgets` would print for a cluster of --nodes nodes in three
zones and about --pods pods: two DaemonSets on every node, then
Deployments (through a ReplicaSet each) and StatefulSets of 1 to 20
replicas over 20 namespaces, placed at random, a PodDisruptionBudget for
half of them (minAvailable or maxUnavailable, numbers or percentages). It
serialises the export to JSON and parses it back (what reading a file
costs), then measures, with time.perf_counter and the median of --repeat
runs:

- `topology.sources.kubernetes.convert` (zones as farms);
- building the `Topology`: the nodes written as a topology file
  (`yaml.dump`, C dumper where there is one) and `topology.loads`;
- `topology.lint.lint` on it;

and prints each in seconds with the pods per second of the whole. Figures,
never assertions: tests never time anything.

    .venv/bin/python benchmarks/import_k8s.py [--pods 5000] [--nodes 300]
        [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import yaml
from report import table

import topology
from topology.lint import lint
from topology.sources import Imported
from topology.sources.kubernetes import convert

T = TypeVar("T")

ZONE = "topology.kubernetes.io/zone"
ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
NAMESPACES = 20
DAEMONSETS = ("node-exporter", "fluent-bit")
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _meta(kind: str, ns: str | None, name: str, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"{kind}-{ns}-{name}",
        "resourceVersion": "1",
        "creationTimestamp": "2026-11-18T07:41:52Z",
        "labels": labels,
    }
    if ns is not None:
        meta["namespace"] = ns
    return meta


def _owner(kind: str, name: str, ns: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": kind,
            "name": name,
            "uid": f"{kind}-{ns}-{name}",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _pod(
    ns: str, name: str, node: str, labels: dict[str, str], owner: list[dict[str, Any]]
) -> dict[str, Any]:
    meta = _meta("Pod", ns, name, labels)
    meta["ownerReferences"] = owner
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": f"registry.example.com/{ns}/app:1.0"}],
        },
        "status": {"phase": "Running", "podIP": "10.244.0.10", "hostIP": "10.0.0.10"},
    }


def _controller(kind: str, ns: str, name: str, replicas: int | None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": ns}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main"}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": _meta(kind, ns, name, labels),
        "spec": spec,
        "status": {},
    }


def _budget(ns: str, name: str, rng: random.Random, replicas: int) -> dict[str, Any]:
    choice = rng.randrange(4)
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app.kubernetes.io/name": name}}}
    if choice == 0:
        spec["minAvailable"] = max(1, replicas // 2)
    elif choice == 1:
        spec["minAvailable"] = f"{rng.choice((50, 66, 75, 90))}%"
    elif choice == 2:
        spec["maxUnavailable"] = 1
    else:
        spec["maxUnavailable"] = f"{rng.choice((10, 25, 33))}%"
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta("PodDisruptionBudget", ns, name, {}),
        "spec": spec,
    }


def generate(pods: int, nodes: int, seed: int) -> dict[str, Any]:
    """A cluster export with about `pods` pods on `nodes` nodes."""
    rng = random.Random(seed)
    hosts = [f"node-{i:04d}" for i in range(nodes)]
    items: list[dict[str, Any]] = []
    for i, host in enumerate(hosts):
        labels = {"kubernetes.io/hostname": host, ZONE: ZONES[i % len(ZONES)]}
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": _meta("Node", None, host, labels),
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
    count = 0
    for name in DAEMONSETS:
        ds = _controller("DaemonSet", "monitoring", name, None)
        ds["status"] = {"desiredNumberScheduled": nodes}
        items.append(ds)
        labels = {"app.kubernetes.io/name": name, "controller-revision-hash": "7f9c"}
        owner = _owner("DaemonSet", name, "monitoring")
        for host in hosts:
            items.append(_pod("monitoring", f"{name}-{host}", host, labels, owner))
            count += 1
    workload = 0
    while count < pods:
        ns = f"team-{workload % NAMESPACES:02d}"
        name = f"app-{workload:04d}"
        replicas = min(rng.randint(1, 20), pods - count)
        workload += 1
        if rng.random() < 0.8:
            items.append(_controller("Deployment", ns, name, replicas))
            rs = f"{name}-6c9f8d7b5"
            replica_set = _controller("ReplicaSet", ns, rs, replicas)
            replica_set["metadata"]["ownerReferences"] = _owner("Deployment", name, ns)
            items.append(replica_set)
            labels = {"app.kubernetes.io/name": name, "pod-template-hash": "6c9f8d7b5"}
            owner, names = _owner("ReplicaSet", rs, ns), [f"{rs}-{i:05d}" for i in range(replicas)]
        else:
            items.append(_controller("StatefulSet", ns, name, replicas))
            labels = {"app.kubernetes.io/name": name, "controller-revision-hash": f"{name}-5b8"}
            owner, names = _owner("StatefulSet", name, ns), [f"{name}-{i}" for i in range(replicas)]
        for pod_name in names:
            items.append(_pod(ns, pod_name, rng.choice(hosts), labels, owner))
            count += 1
        if workload % 2 == 0:
            items.append(_budget(ns, name, rng, replicas))
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def _median_time(fn: Callable[[], T], runs: int) -> tuple[float, T]:
    """Median wall time of `runs` calls, and the last call's result; each
    after a full collection, so no call pays for the garbage of another."""
    times = []
    result: T | None = None
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(times), result


def _build(imported: Imported) -> topology.Topology:
    text = yaml.dump({"version": 1, "nodes": dict(imported.nodes)}, Dumper=_Dumper, sort_keys=False)
    return topology.loads(text, imported.origin)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the export, time each step, print the table."""
    parser = argparse.ArgumentParser(description="Benchmark the Kubernetes importer.")
    parser.add_argument("--pods", type=int, default=5000, help="pods (default 5000)")
    parser.add_argument("--nodes", type=int, default=300, help="Kubernetes nodes (default 300)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per median (default 3)")
    args = parser.parse_args(argv)
    if args.pods < 1 or args.nodes < 1 or args.repeat < 1:
        parser.error("--pods, --nodes and --repeat must be at least 1")

    export = generate(args.pods, args.nodes, args.seed)
    text = json.dumps(export)
    parse_s, document = _median_time(lambda: json.loads(text), args.repeat)
    documents = [("generated.json", document)]
    convert_s, imported = _median_time(lambda: convert(documents, farm_label=ZONE), args.repeat)
    build_s, built = _median_time(lambda: _build(imported), args.repeat)
    lint_s, findings = _median_time(lambda: lint(built), args.repeat)

    kinds = [item["kind"] for item in export["items"]]
    pods = kinds.count("Pod")
    total = convert_s + build_s + lint_s
    print(
        f"generated: {pods:,} pods on {args.nodes:,} nodes, "
        f"{kinds.count('Deployment') + kinds.count('StatefulSet') + kinds.count('DaemonSet'):,} "
        f"workloads, {kinds.count('PodDisruptionBudget'):,} budgets; {len(text) / 1e6:.1f} MB "
        f"of JSON; {len(imported.nodes):,} topology nodes, {len(imported.findings):,} import "
        f"findings, {len(findings):,} lint findings (median of {args.repeat})"
    )
    rows = [
        ["step", "seconds", "pods/s"],
        ["json.loads (reading the file)", f"{parse_s:.3f}", f"{pods / parse_s:,.0f}"],
        ["convert", f"{convert_s:.3f}", f"{pods / convert_s:,.0f}"],
        ["build the Topology (dump + loads)", f"{build_s:.3f}", f"{pods / build_s:,.0f}"],
        ["lint", f"{lint_s:.3f}", f"{pods / lint_s:,.0f}"],
        ["convert + build + lint", f"{total:.3f}", f"{pods / total:,.0f}"],
    ]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
