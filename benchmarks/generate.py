"""Generate layered topology files (version 1, docs/semantics.md) for benchmarks.

Layers, bottom to top: farms, hosts (each on one farm), datastores (on hosts,
some replicated, some a 2-of-3 quorum) and services (on hosts or farms, with
requirements on datastores and other services). Services and datastores come
in domains (teams) of about 40 services, each placed on two home farms picked
at random, so every farm carries the fate of teams that never talk to each
other (the outage the README starts from). Domains form business units of 25;
the first domain of a unit is its core, replicated across three farms, that
the unit's other domains lean on. Units only share farms and hosts, so a
farm's blast radius does not grow with the estate.

About 4 requirements (group members) per node, 10% of nodes critical, about
30% of runs_on groups replicated (one replica set in five on a single farm:
illusory redundancy), soft dependencies on any service of the unit. Hard
requirements always point to an earlier node of the same or a lower layer,
so only soft dependencies close cycles: the file has no hard cycles. The
output is a pure function of the node count and the seed.

    .venv/bin/python benchmarks/generate.py --nodes 10000 --seed 1 -o FILE
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Stats", "generate", "main", "write"]

FARM_SHARE = 1 / 400  # a farm is a VM cluster of ~40 hosts
HOST_SHARE = 0.15
DATASTORE_SHARE = 0.10
CRITICAL_SHARE = 0.10
DOMAIN_SIZE = 40  # services per domain (team)
UNIT_SIZE = 25  # domains per business unit; the first is the unit's core
MIN_NODES = 20
DATASTORE_KINDS = ("database", "database", "database", "queue", "cache")


@dataclass(frozen=True, slots=True)
class Stats:
    """What was generated, for people to check the shape of the file."""

    nodes: int
    farms: int
    hosts: int
    datastores: int
    services: int
    domains: int
    critical: int
    groups: int
    requirements: int  # group members, summed over every group
    runs_on_groups: int
    replicated_runs_on: int  # runs_on groups with more than one member
    quorum_groups: int  # min 2 of 3
    soft_groups: int

    def __str__(self) -> str:
        return (
            f"{self.nodes} nodes ({self.farms} farms, {self.hosts} hosts, "
            f"{self.datastores} datastores, {self.services} services in "
            f"{self.domains} domains), {self.critical} critical; "
            f"{self.requirements / self.nodes:.2f} requirements per node; "
            f"{self.replicated_runs_on / max(1, self.runs_on_groups):.0%} of runs_on groups "
            f"replicated, {self.quorum_groups} quorum groups, {self.soft_groups} soft groups"
        )


@dataclass(slots=True)
class _Group:
    members: list[str]
    min: int = 1
    soft: bool = False

    def render(self) -> str:
        names = ", ".join(self.members)
        if self.min == 1 and not self.soft:
            return f"[{names}]"
        extra = (f", min: {self.min}" if self.min != 1 else "") + (
            ", soft: true" if self.soft else ""
        )
        return f"{{any_of: [{names}]{extra}}}"


@dataclass(slots=True)
class _Node:
    name: str
    kind: str
    team: str | None = None
    critical: bool = False
    recovery_target: str | None = None
    runs_on: _Group | None = None
    depends_on: list[_Group] | None = None
    probe: str | None = None


def _names(prefix: str, count: int, width: int) -> list[str]:
    width = max(width, len(str(count - 1)))
    return [f"{prefix}-{i:0{width}d}" for i in range(count)]


def _spread(rng: random.Random, pools: Sequence[Sequence[str]], count: int) -> list[str]:
    """`count` distinct names, one from each of distinct pools where possible
    (anti-affinity: replicas on different farms)."""
    order = rng.sample(range(len(pools)), len(pools))
    chosen: list[str] = []
    for i in range(len(order) * 2):  # bounded: each pool gets at most two tries
        if len(chosen) == count:
            break
        name = rng.choice(pools[order[i % len(order)]])
        if name not in chosen:
            chosen.append(name)
    return chosen


class _Builder:
    """Builds the layers in order; every hard requirement points to a node
    built earlier, which is what keeps the hard graph acyclic."""

    def __init__(self, total: int, seed: int) -> None:
        self.rng = random.Random(seed)
        farms = max(3, round(total * FARM_SHARE))
        hosts = max(farms, round(total * HOST_SHARE))
        datastores = max(1, round(total * DATASTORE_SHARE))
        services = total - farms - hosts - datastores
        self.farms = _names("farm", farms, 4)
        self.hosts = _names("host", hosts, 5)
        self.datastores = _names("db", datastores, 4)
        self.services = _names("svc", services, 5)
        self.domains = max(1, round(services / DOMAIN_SIZE))
        self.nodes: list[_Node] = []
        # hosts of each farm, filled as hosts are placed
        self.on_farm: dict[str, list[str]] = {farm: [] for farm in self.farms}

    def domain_of(self, index: int, count: int) -> int:
        """Domains are contiguous slices of each layer, in the same order."""
        return index * self.domains // count

    def domain_slice(self, names: list[str], domain: int) -> list[str]:
        count = len(names)
        start = -(-domain * count // self.domains)
        end = -(-(domain + 1) * count // self.domains)
        return names[start:end]

    def build(self) -> list[_Node]:
        rng = self.rng
        for farm in self.farms:
            self.nodes.append(_Node(farm, "farm"))
        for i, host in enumerate(self.hosts):
            # The first hosts go one per farm so that no farm is empty.
            farm = self.farms[i] if i < len(self.farms) else rng.choice(self.farms)
            self.on_farm[farm].append(host)
            self.nodes.append(_Node(host, "host", runs_on=_Group([farm])))
        homes = [
            rng.sample(self.farms, min(3 if self.is_core(d) else 2, len(self.farms)))
            for d in range(self.domains)
        ]
        for i, name in enumerate(self.datastores):
            domain = self.domain_of(i, len(self.datastores))
            self.nodes.append(self.datastore(name, domain, homes[domain]))
        for i, name in enumerate(self.services):
            domain = self.domain_of(i, len(self.services))
            self.nodes.append(self.service(name, domain, homes[domain]))
        self.mark_critical()
        return self.nodes

    @staticmethod
    def is_core(domain: int) -> bool:
        return domain % UNIT_SIZE == 0

    def placement(
        self, home: list[str], count: int, *, on_farms: bool = False, careful: bool = False
    ) -> list[str]:
        """`count` replicas on the home farms (or their hosts), on different
        farms unless the team was careless (one time in five)."""
        if on_farms:
            return _spread(self.rng, [[farm] for farm in home], count)
        pools = [self.on_farm[farm] for farm in home]
        if count > 1 and not careful and self.rng.random() < 0.2:
            pools = [pools[0]]
        return _spread(self.rng, pools, count)

    def datastore(self, name: str, domain: int, home: list[str]) -> _Node:
        rng = self.rng
        roll = rng.random()
        core = self.is_core(domain)
        if core or roll < 0.25:
            hosts = self.placement(home, 3, careful=core)
            group = _Group(hosts, min=2 if len(hosts) == 3 else 1)  # quorum
        elif roll < 0.45:
            group = _Group(self.placement(home, rng.choice((2, 3))))
        else:
            group = _Group(self.placement(home, 1))
        node = _Node(name, rng.choice(DATASTORE_KINDS), f"team-{domain:04d}", runs_on=group)
        earlier = self.domain_slice(self.datastores, domain)
        earlier = earlier[: earlier.index(name)]
        if earlier and rng.random() < 0.25:  # fed from another store of the team
            node.depends_on = [_Group([rng.choice(earlier)])]
        return node

    def service(self, name: str, domain: int, home: list[str]) -> _Node:
        rng = self.rng
        core = self.is_core(domain)
        replicas = rng.choice((2, 3)) if core or rng.random() < 0.33 else 1
        on_farms = rng.random() < 0.1
        runs_on = _Group(self.placement(home, replicas, on_farms=on_farms, careful=core))
        node = _Node(name, "service", f"team-{domain:04d}", runs_on=runs_on)
        if rng.random() < 0.3:
            node.probe = f"http://{name}.svc.internal:8080/health"
        team_services = self.domain_slice(self.services, domain)
        earlier = team_services[: team_services.index(name)]
        stores = self.domain_slice(self.datastores, domain)
        unit = domain - domain % UNIT_SIZE
        last = min(unit + UNIT_SIZE, self.domains) - 1
        taken: set[str] = {name}
        groups: list[_Group] = []
        for _ in range(rng.choice((1, 2, 3, 3, 4, 4, 5, 6))):
            roll = rng.random()
            soft = False
            if roll < 0.30 and stores:
                choices = stores
            elif roll < 0.62 and earlier:
                choices = earlier
            elif roll < 0.74 and not core:
                choices = self.domain_slice(self.services, unit)
            elif roll < 0.80 and domain > unit + 1:
                choices = self.domain_slice(self.services, rng.randrange(unit + 1, domain))
            elif roll < 0.92 or not stores:
                # Soft: any service of the unit, later ones included, so
                # soft cycles exist.
                soft = True
                if rng.random() < 0.5:
                    choices = team_services
                else:
                    choices = self.domain_slice(self.services, rng.randint(unit, last))
            else:
                choices = stores
            member = rng.choice(choices)
            if member in taken:
                continue
            taken.add(member)
            groups.append(_Group([member], soft=soft))
        node.depends_on = groups or None
        return node

    def mark_critical(self) -> None:
        rng = self.rng
        total = len(self.farms) + len(self.hosts) + len(self.datastores) + len(self.services)
        candidates = [n for n in self.nodes if n.kind not in ("farm", "host")]
        for node in rng.sample(candidates, min(len(candidates), round(total * CRITICAL_SHARE))):
            node.critical = True
            if rng.random() < 0.1:
                node.recovery_target = rng.choice(("5m", "30m", "1h"))
        for node in candidates:
            if not node.critical and rng.random() < 0.05:
                node.recovery_target = rng.choice(("1h", "8h", "1d"))


def _render(nodes: list[_Node], total: int, seed: int) -> str:
    lines = [
        f"# Generated by benchmarks/generate.py --nodes {total} --seed {seed}",
        "version: 1",
        "defaults:",
        "  recovery_target: {critical: 10m, non_critical: 4h}",
        "nodes:",
    ]
    for node in nodes:
        lines.append(f"  {node.name}:")
        if node.kind != "service":
            lines.append(f"    kind: {node.kind}")
        if node.critical:
            lines.append("    critical: true")
        if node.recovery_target is not None:
            lines.append(f"    recovery_target: {node.recovery_target}")
        if node.runs_on is not None:
            lines.append(f"    runs_on: {node.runs_on.render()}")
        if node.depends_on:
            lines.append("    depends_on:")
            for group in node.depends_on:
                text = group.render()
                lines.append(f"      - {text[1:-1] if text.startswith('[') else text}")
        if node.team is not None:
            lines.append(f"    labels: {{team: {node.team}}}")
        if node.probe is not None:
            lines.append("    probes:")
            lines.append(f"      - http: {node.probe}")
    return "\n".join(lines) + "\n"


def _stats(builder: _Builder, nodes: list[_Node]) -> Stats:
    groups = [g for n in nodes for g in ([n.runs_on] if n.runs_on else []) + (n.depends_on or [])]
    runs_on = [n.runs_on for n in nodes if n.runs_on is not None]
    return Stats(
        nodes=len(nodes),
        farms=len(builder.farms),
        hosts=len(builder.hosts),
        datastores=len(builder.datastores),
        services=len(builder.services),
        domains=builder.domains,
        critical=sum(n.critical for n in nodes),
        groups=len(groups),
        requirements=sum(len(g.members) for g in groups),
        runs_on_groups=len(runs_on),
        replicated_runs_on=sum(len(g.members) > 1 for g in runs_on),
        quorum_groups=sum(g.min == 2 for g in groups),
        soft_groups=sum(g.soft for g in groups),
    )


def generate(nodes: int, seed: int = 1) -> tuple[str, Stats]:
    """The YAML text of a topology of `nodes` nodes, and its shape.

    Deterministic: the same `nodes` and `seed` give the same text.
    """
    if nodes < MIN_NODES:
        raise ValueError(f"at least {MIN_NODES} nodes, got {nodes}")
    builder = _Builder(nodes, seed)
    built = builder.build()
    return _render(built, nodes, seed), _stats(builder, built)


def write(path: str | Path, nodes: int, seed: int = 1) -> Stats:
    """Generate a topology into the file at `path`; return its shape."""
    text, stats = generate(nodes, seed)
    Path(path).write_text(text, encoding="utf-8")
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: write one file and say what is in it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=10_000, help="how many nodes (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("-o", "--output", metavar="FILE", help="where to write (default stdout)")
    args = parser.parse_args(argv)
    try:
        text, stats = generate(args.nodes, args.seed)
    except ValueError as err:
        parser.error(str(err))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(stats, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
