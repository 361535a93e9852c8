"""The estate of benchmarks/storm.py: a file of benchmarks/generate.py
rewritten so that every node has exactly one `tcp:` probe to the loopback
listener of its farm, with the daemon's settings beside it.

A node's farm is found by following `runs_on` down to a farm, taking the
first member at each step; a node with no `runs_on` path to a farm takes
the farm of its first requirement (`depends_on`, in order) that has one,
else the first farm. The generated `http:` probes are dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["PROBE", "Estate", "parse", "render"]

# Every node's probe, beside its target.
PROBE: Mapping[str, Any] = {
    "interval": "10s",
    "timeout": "2s",
    "failure_threshold": 3,
    "success_threshold": 2,
}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True, slots=True)
class Estate:
    """A generated topology document and the farm each node's probe goes to."""

    document: dict[str, Any]
    farm_of: Mapping[str, str]
    farms: tuple[str, ...]

    def nodes_per_farm(self) -> Counter[str]:
        """How many nodes probe each farm's listener (the farms themselves
        included)."""
        return Counter(self.farm_of.values())

    def biggest_farm(self) -> str:
        """The farm with the most nodes (the first by name on a tie)."""
        counts = self.nodes_per_farm()
        return min(self.farms, key=lambda farm: (-counts[farm], farm))


def _first_members(value: Any) -> list[str]:
    """The first member of each requirement group in a `runs_on` or
    `depends_on` value (a name, a list of names or groups, or a group)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        members = value.get("any_of") or []
        return [members[0]] if members else []
    firsts: list[str] = []
    for item in value:
        firsts.extend(_first_members(item))
    return firsts


def parse(text: str) -> Estate:
    """The estate of a generated topology text: every node assigned a farm."""
    document: dict[str, Any] = yaml.load(text, Loader=_Loader)
    nodes: dict[str, dict[str, Any]] = {
        name: body or {} for name, body in document["nodes"].items()
    }
    document["nodes"] = nodes
    farms = tuple(name for name, body in nodes.items() if body.get("kind") == "farm")
    if not farms:
        raise ValueError("the estate has no farm")
    found: dict[str, str | None] = {}

    def farm(name: str, visiting: set[str]) -> str | None:
        if name in found:
            return found[name]
        if name in visiting or name not in nodes:
            return None  # a cycle (soft dependencies close some): no farm this way
        body = nodes[name]
        if body.get("kind") == "farm":
            found[name] = name
            return name
        visiting.add(name)
        result = None
        runs_on = _first_members(body.get("runs_on"))
        # runs_on is one group: its first member; depends_on: each group's
        # first member, in order, until one leads to a farm.
        for member in runs_on[:1] + _first_members(body.get("depends_on")):
            result = farm(member, visiting)
            if result is not None:
                break
        visiting.discard(name)
        found[name] = result
        return result

    farm_of = {name: farm(name, set()) or farms[0] for name in nodes}
    return Estate(document, farm_of, farms)


def render(
    estate: Estate,
    ports: Mapping[str, int],
    *,
    listen: str,
    state_path: str,
    webhook_url: str,
    settle: str,
) -> str:
    """The topology file the daemon runs: the estate, one tcp probe per
    node to its farm's port, and the server, state and alerts settings."""
    nodes = {}
    for name, body in estate.document["nodes"].items():
        rewritten = {key: value for key, value in body.items() if key != "probes"}
        target = f"127.0.0.1:{ports[estate.farm_of[name]]}"
        rewritten["probes"] = [{"tcp": target, **PROBE}]
        nodes[name] = rewritten
    head = {key: value for key, value in estate.document.items() if key != "nodes"}
    document = {
        **head,
        "server": {"listen": listen},
        "state": {"path": state_path},
        "alerts": {"settle": settle, "webhook": {"url": webhook_url}},
        "nodes": nodes,
    }
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=None)
    return text
