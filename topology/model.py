"""The topology model: nodes, their requirement groups, and node states.

Values here are immutable; a `Topology` also holds the indexes the engine and
lint walk (dependents of each node), built once when it is constructed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from topology.findings import Finding

__all__ = [
    "DEFAULT_RECOVERY_TARGET_CRITICAL_S",
    "DEFAULT_RECOVERY_TARGET_NON_CRITICAL_S",
    "Group",
    "Node",
    "State",
    "Topology",
]

DEFAULT_RECOVERY_TARGET_CRITICAL_S = 600.0
DEFAULT_RECOVERY_TARGET_NON_CRITICAL_S = 4 * 3600.0


class State(enum.IntEnum):
    """A node's state, ordered by severity.

    `unknown` (no data yet) sits between `up` and `degraded`: it counts as up
    when judging the nodes that need it, yet is shown as unknown, and any real
    failure outranks it.
    """

    UP = 0
    UNKNOWN = 1
    DEGRADED = 2
    DOWN = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> State:
        """The state named `text` (`up`, `unknown`, `degraded`, `down`)."""
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown state {text!r}") from None


@dataclass(frozen=True, slots=True)
class Group:
    """A requirement group: at least `min` of `members` must be available.

    `via` is the key the group was written under (`runs_on` or `depends_on`);
    a soft group degrades its node instead of taking it down.
    """

    members: tuple[str, ...]
    min: int = 1
    soft: bool = False
    via: str = "depends_on"

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a group needs at least one member")
        if not 1 <= self.min <= len(self.members):
            raise ValueError(f"min {self.min} out of range for {len(self.members)} members")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"a member is listed twice in {self.members}")

    @property
    def redundant(self) -> bool:
        """True when the group has spares: more members than it needs."""
        return len(self.members) > self.min


@dataclass(frozen=True, slots=True)
class Node:
    """A service or piece of infrastructure and what it needs."""

    name: str
    kind: str = "service"
    critical: bool = False
    recovery_target_s: float | None = None
    groups: tuple[Group, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    description: str = ""
    probed: bool = False  # has probes of its own (the daemon reads them)
    line: int = 0

    @property
    def requirements(self) -> frozenset[str]:
        """Every node this one names in any of its groups."""
        return frozenset(m for g in self.groups for m in g.members)

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (the API runs in a process of its own): the labels'
        # read-only view is not, a dict is.
        return (
            _node,
            (
                self.name,
                self.kind,
                self.critical,
                self.recovery_target_s,
                self.groups,
                dict(self.labels),
                self.description,
                self.probed,
                self.line,
            ),
        )


def _node(*fields: Any) -> Node:
    name, kind, critical, target, groups, labels, description, probed, line = fields
    return Node(
        name, kind, critical, target, groups, MappingProxyType(labels), description, probed, line
    )


@dataclass(frozen=True, slots=True)
class Index:
    """The tables the engine walks: groups numbered globally, their owners,
    and for each node the ids of the groups it is a member of."""

    groups: tuple[Group, ...]
    owner: tuple[str, ...]
    dependents: Mapping[str, tuple[int, ...]]
    # Per group: how many members may fail before it breaks, and softness,
    # kept as flat tuples because the engine reads them once per edge.
    slack: tuple[int, ...]
    soft: tuple[bool, ...]
    # What a verdict needs at a glance: the critical nodes, and the groups
    # with spares that critical nodes have.
    critical: frozenset[str]
    critical_redundant: frozenset[int]
    # For each node with groups: (id of its first group, how many it has).
    own_groups: Mapping[str, tuple[int, int]]


class Topology:
    """A validated set of nodes with its indexes.

    Build it from `Node` values (the loader does this for files); a reference
    to an unknown node or a node that requires itself raises `ValueError`.
    Iteration order is by name, so nothing depends on the order of the file.
    """

    __slots__ = (
        "_defaults",
        "_depths",
        "_nodes",
        "_recovery_targets",
        "index",
        "source",
        "source_findings",
    )

    def __init__(
        self,
        nodes: Iterable[Node],
        *,
        recovery_target_critical_s: float = DEFAULT_RECOVERY_TARGET_CRITICAL_S,
        recovery_target_non_critical_s: float = DEFAULT_RECOVERY_TARGET_NON_CRITICAL_S,
        source: str = "<topology>",
        source_findings: Iterable[Finding] = (),
    ) -> None:
        self.source = source
        # What the sources the nodes were imported from gave rise to (a
        # workload without a disruption budget, an overlay entry that
        # matches nothing): lint reports them with its own.
        self.source_findings: tuple[Finding, ...] = tuple(source_findings)
        self._defaults = (recovery_target_critical_s, recovery_target_non_critical_s)
        self._depths: dict[str, int] = {}  # Topology.depth's answers
        by_name: dict[str, Node] = {}
        for node in nodes:
            if node.name in by_name:
                raise ValueError(f"duplicate node {node.name!r}")
            by_name[node.name] = node
        self._nodes: Mapping[str, Node] = MappingProxyType(dict(sorted(by_name.items())))

        # Groups are numbered globally so the engine can keep per-group
        # counters in flat dicts keyed by int, which is what keeps a what-if
        # close to the cost of a bare graph traversal.
        groups: list[Group] = []
        owner: list[str] = []
        dependents: dict[str, list[int]] = {}
        targets: dict[str, float] = {}
        own_groups: dict[str, tuple[int, int]] = {}
        for node in self._nodes.values():
            if node.groups:
                own_groups[node.name] = (len(groups), len(node.groups))
            if node.recovery_target_s is not None:
                targets[node.name] = node.recovery_target_s
            elif node.critical:
                targets[node.name] = recovery_target_critical_s
            else:
                targets[node.name] = recovery_target_non_critical_s
            for group in node.groups:
                gid = len(groups)
                groups.append(group)
                owner.append(node.name)
                for member in group.members:
                    if member not in by_name:
                        raise ValueError(f"node {node.name!r} requires unknown node {member!r}")
                    if member == node.name:
                        raise ValueError(f"node {node.name!r} requires itself")
                    dependents.setdefault(member, []).append(gid)
        self.index = Index(
            groups=tuple(groups),
            owner=tuple(owner),
            dependents={name: tuple(gids) for name, gids in dependents.items()},
            slack=tuple(len(g.members) - g.min for g in groups),
            soft=tuple(g.soft for g in groups),
            critical=frozenset(n.name for n in self._nodes.values() if n.critical),
            own_groups=own_groups,
            critical_redundant=frozenset(
                gid
                for gid, group in enumerate(groups)
                if group.redundant and self._nodes[owner[gid]].critical
            ),
        )
        self._recovery_targets: Mapping[str, float] = targets

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, built again from its nodes on the other side: the
        # indexes are cheaper to make than to carry.
        critical, non_critical = self._defaults
        return (
            _topology,
            (
                tuple(self._nodes.values()),
                critical,
                non_critical,
                self.source,
                self.source_findings,
            ),
        )

    @property
    def nodes(self) -> Mapping[str, Node]:
        """Every node by name, in name order."""
        return self._nodes

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def node(self, name: str) -> Node:
        """The node called `name`; `KeyError` if there is none."""
        return self._nodes[name]

    def recovery_target_s(self, name: str) -> float:
        """The node's recovery target in seconds, defaults applied."""
        return self._recovery_targets[name]

    def dependents(self, name: str) -> frozenset[str]:
        """The nodes that name `name` in one of their groups."""
        owner = self.index.owner
        return frozenset(owner[gid] for gid in self.index.dependents.get(name, ()))

    def upstream_of(self, names: Iterable[str]) -> set[str]:
        """`names` and every node that requires one of them, through any
        chain of requirements: what their failure can reach."""
        index = self.index
        found = set(names)
        todo = list(found)
        while todo:
            for gid in index.dependents.get(todo.pop(), ()):
                owner = index.owner[gid]
                if owner not in found:
                    found.add(owner)
                    todo.append(owner)
        return found

    def downstream_of(self, name: str) -> set[str]:
        """Every node `name` requires, through any chain of requirements
        (hard or soft, any member of any group), without `name` itself."""
        found: set[str] = set()
        todo = [name]
        while todo:
            for group in self._nodes[todo.pop()].groups:
                for member in group.members:
                    if member not in found and member != name:
                        found.add(member)
                        todo.append(member)
        return found

    def shared_needs(self, names: Iterable[str], limit: int = 2) -> list[tuple[str, int]]:
        """The nodes that most of `names` require (through any chain), as
        (node, how many of `names` need it), most shared first; on a tie the
        more specific node first (a host before the farm it runs on, as it
        needs more). What failures that happened together may have in
        common when the topology does not say they depend on each other."""
        counts: dict[str, int] = {}
        given = set(names)
        for name in given:
            for need in self.downstream_of(name):
                if need not in given:
                    counts[need] = counts.get(need, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: (-item[1], -self.depth(item[0]), item[0]))
        return ranked[:limit]

    def depth(self, name: str) -> int:
        """How many levels of requirements lie below `name` (0 for a node
        that needs nothing): a host above its farm is deeper. Worked out
        once per node; a cycle counts as its way out."""
        return depth(name, self._members, self._depths)

    def _members(self, name: str) -> list[str]:
        return [m for group in self._nodes[name].groups for m in group.members]

    def dependent_groups(self, name: str) -> tuple[tuple[str, Group], ...]:
        """Each (owner, group) pair whose group has `name` as a member."""
        index = self.index
        return tuple(
            (index.owner[gid], index.groups[gid]) for gid in index.dependents.get(name, ())
        )

    def edges(self) -> Iterable[tuple[str, str, Group]]:
        """Every requirement as (node, member, group), in name order."""
        for node in self._nodes.values():
            for group in node.groups:
                for member in group.members:
                    yield node.name, member, group

    def placements(self) -> Mapping[str, frozenset[str]]:
        """For each node that something runs on, the nodes placed on it."""
        hosted: dict[str, set[str]] = {}
        for name, member, group in self.edges():
            if group.via == "runs_on":
                hosted.setdefault(member, set()).add(name)
        return {name: frozenset(nodes) for name, nodes in sorted(hosted.items())}


def _topology(
    nodes: tuple[Node, ...],
    critical: float,
    non_critical: float,
    source: str,
    source_findings: tuple[Finding, ...],
) -> Topology:
    return Topology(
        nodes,
        recovery_target_critical_s=critical,
        recovery_target_non_critical_s=non_critical,
        source=source,
        source_findings=source_findings,
    )


def depth(name: str, members: Callable[[str], Iterable[str]], known: dict[str, int]) -> int:
    """How many levels of requirements lie below `name` in the graph that
    `members` gives (0 for a node that needs nothing), filling `known` with
    the depth of every node visited (pass the same dict again to reuse
    them). An edge that closes a cycle is not followed: a cycle counts as
    its way out. Depth-first without recursion: chains can be thousands
    long."""
    if name in known:
        return known[name]
    stack = [(name, iter(members(name)))]
    on_path = {name}
    best = {name: 0}
    while stack:
        node, pending = stack[-1]
        for member in pending:
            if member in known:
                best[node] = max(best[node], known[member] + 1)
            elif member not in on_path:
                on_path.add(member)
                best[member] = 0
                stack.append((member, iter(members(member))))
                break
        else:
            stack.pop()
            on_path.discard(node)
            known[node] = best[node]
            if stack:
                parent = stack[-1][0]
                best[parent] = max(best[parent], known[node] + 1)
    return known[name]
