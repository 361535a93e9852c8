"""The topology file (version 1): its schema, checked as a whole into a
`Topology`, every problem reported with file, line and path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

from topology.document import (
    Document,
    InvalidInput,
    Reader,
    describe,
    parse_document,
    read_document,
    suggest,
)
from topology.model import (
    DEFAULT_RECOVERY_TARGET_CRITICAL_S,
    DEFAULT_RECOVERY_TARGET_NON_CRITICAL_S,
    Group,
    Node,
    Topology,
)

__all__ = ["SECTIONS", "SUPPORTED_VERSION", "load", "loads", "topology_from_document"]

SUPPORTED_VERSION = 1
# Top-level keys. The daemon's settings live beside `nodes` and are read by
# the packages that own them; the topology only checks the names.
SECTIONS = ("version", "defaults", "nodes", "server", "state", "alerts")
NODE_KEYS = (
    "kind",
    "critical",
    "recovery_target",
    "runs_on",
    "depends_on",
    "labels",
    "description",
    "probes",
)
GROUP_KEYS = ("any_of", "min", "soft")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]*\Z")


def load(path: str | Path) -> Topology:
    """The topology in the file at `path`; `InvalidInput` lists every problem."""
    return topology_from_document(read_document(path))


def loads(text: str, source: str = "<string>") -> Topology:
    """The topology in YAML `text`; `InvalidInput` lists every problem."""
    return topology_from_document(parse_document(text, source))


@dataclass(slots=True)
class _Reference:
    """A member named in a group, kept until every node name is known."""

    name: str
    node: yaml.Node
    path: str


@dataclass(slots=True)
class _PendingGroup:
    members: list[_Reference]
    min: int
    soft: bool
    via: str


def topology_from_document(document: Document) -> Topology:
    """Check the topology part of a parsed document and build it.

    Raises `InvalidInput` listing every problem found, never just the first.
    """
    reader = Reader(document.source)
    root = reader.mapping(
        document.root, "", SECTIONS, expected="a mapping with 'version' and 'nodes'"
    )
    if root is None:
        raise InvalidInput(reader.problems)

    if "version" not in root:
        reader.problem(None, "version", "missing: add 'version: 1' at the top")
    else:
        version = root["version"][1]
        if version.tag != "tag:yaml.org,2002:int":
            reader.problem(
                version,
                "version",
                f"expected the number {SUPPORTED_VERSION}, got {describe(version)}",
            )
        elif version.value != str(SUPPORTED_VERSION):
            reader.problem(
                version,
                "version",
                f"unsupported version {version.value}: "
                f"this watchdog reads version {SUPPORTED_VERSION}",
            )

    critical_s, non_critical_s = _defaults(reader, root)

    pending: dict[str, tuple[Node, list[_PendingGroup]]] = {}
    declared: set[str] = set()
    if "nodes" not in root:
        reader.problem(None, "nodes", "missing: describe the estate under 'nodes:'")
    else:
        key, value = root["nodes"]
        entries = reader.mapping(value, "nodes")
        if entries == {}:
            reader.problem(key, "nodes", "no nodes: describe at least one node")
        for name, (name_node, body) in (entries or {}).items():
            if not _NAME.match(name):
                reader.problem(
                    name_node,
                    "nodes",
                    f"bad node name {name!r}: start with a letter or digit, "
                    "then use letters, digits and - _ . : / @",
                )
                continue
            declared.add(name)
            parsed = _node(reader, name, name_node, body)
            if parsed is not None:
                pending[name] = parsed

    nodes = [_resolve(reader, node, groups, declared) for node, groups in pending.values()]
    if reader.problems:
        raise InvalidInput(reader.problems)
    return Topology(
        nodes,
        recovery_target_critical_s=critical_s,
        recovery_target_non_critical_s=non_critical_s,
        source=document.source,
    )


def _defaults(reader: Reader, root: dict[str, tuple[yaml.Node, yaml.Node]]) -> tuple[float, float]:
    critical_s = DEFAULT_RECOVERY_TARGET_CRITICAL_S
    non_critical_s = DEFAULT_RECOVERY_TARGET_NON_CRITICAL_S
    if "defaults" not in root:
        return critical_s, non_critical_s
    defaults = reader.mapping(root["defaults"][1], "defaults", ("recovery_target",)) or {}
    if "recovery_target" in defaults:
        path = "defaults.recovery_target"
        targets = reader.mapping(defaults["recovery_target"][1], path, ("critical", "non_critical"))
        for key, value in reader.items(targets or {}):
            seconds = reader.duration(value, f"{path}.{key}")
            if seconds is not None and key == "critical":
                critical_s = seconds
            elif seconds is not None:
                non_critical_s = seconds
    return critical_s, non_critical_s


def _node(
    reader: Reader, name: str, name_node: yaml.Node, body: yaml.Node
) -> tuple[Node, list[_PendingGroup]] | None:
    path = f"nodes.{name}"
    fields = reader.mapping(body, path, NODE_KEYS)
    if fields is None:
        return None
    kind, critical, target, description = "service", False, None, ""
    labels: dict[str, str] = {}
    groups: list[_PendingGroup] = []
    for key, value in reader.items(fields):
        where = f"{path}.{key}"
        if key == "kind":
            kind = reader.string(value, where) or kind
            if not value.value:
                reader.problem(value, where, "expected a kind such as service or farm, got ''")
        elif key == "critical":
            critical = bool(reader.boolean(value, where))
        elif key == "recovery_target":
            target = reader.duration(value, where)
        elif key == "runs_on":
            group = _runs_on(reader, value, where)
            if group is not None:
                groups.append(group)
        elif key == "depends_on":
            groups.extend(_depends_on(reader, value, where))
        elif key == "labels":
            for label, text in reader.items(reader.mapping(value, where) or {}):
                got = reader.string(text, f"{where}.{label}")
                if got is not None:
                    labels[label] = got
        elif key == "description":
            description = reader.string(value, where) or ""
        elif key == "probes":
            # Probes belong to the daemon, which checks their contents.
            reader.sequence(value, where, "a list of probes")
    node = Node(
        name=name,
        kind=kind,
        critical=critical,
        recovery_target_s=target,
        labels=MappingProxyType(labels),
        description=description,
        line=name_node.start_mark.line + 1,
    )
    return node, groups


def _runs_on(reader: Reader, value: yaml.Node, path: str) -> _PendingGroup | None:
    """`runs_on` is one group: a list of replicas (min 1), one name, or the
    full form with `any_of`."""
    if isinstance(value, yaml.MappingNode):
        return _full_group(reader, value, path, "runs_on")
    if isinstance(value, yaml.ScalarNode) and value.tag != "tag:yaml.org,2002:null":
        return _simple_group(reader, [value], path, "runs_on", single=True)
    items = reader.sequence(value, path, "a list of node names or a mapping with 'any_of'")
    if items is None:
        return None
    if not items:
        reader.problem(value, path, "empty group: name at least one node")
        return None
    return _simple_group(reader, items, path, "runs_on")


def _depends_on(reader: Reader, value: yaml.Node, path: str) -> list[_PendingGroup]:
    """`depends_on` is one group per item: a name, or the full form; a lone
    name or group stands for a list of one."""
    if isinstance(value, yaml.MappingNode):
        group = _full_group(reader, value, path, "depends_on")
        return [group] if group is not None else []
    if isinstance(value, yaml.ScalarNode) and value.tag != "tag:yaml.org,2002:null":
        group = _simple_group(reader, [value], path, "depends_on", single=True)
        return [group] if group is not None else []
    items = reader.sequence(value, path, "a list of node names or groups")
    if items is None:
        return []
    if not items:
        reader.problem(value, path, "empty list: name at least one node, or remove the key")
    groups = []
    named: set[str] = set()
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if isinstance(item, yaml.MappingNode):
            group = _full_group(reader, item, where, "depends_on")
        else:
            group = _simple_group(reader, [item], where, "depends_on", single=True)
            if group is not None:
                name = group.members[0].name
                if name in named:
                    reader.problem(item, where, f"{name!r} is listed twice in depends_on")
                    continue
                named.add(name)
        if group is not None:
            groups.append(group)
    return groups


def _simple_group(
    reader: Reader,
    items: list[yaml.Node],
    path: str,
    via: str,
    *,
    single: bool = False,
) -> _PendingGroup | None:
    members = _members(reader, items, path, single=single)
    if members is None:
        return None
    return _PendingGroup(members, 1, False, via)


def _members(
    reader: Reader, items: list[yaml.Node], path: str, *, single: bool = False
) -> list[_Reference] | None:
    members: list[_Reference] = []
    ok = True
    for i, item in enumerate(items):
        where = path if single else f"{path}[{i}]"
        name = reader.string(item, where, "a node name")
        if name is None:
            ok = False
        elif any(m.name == name for m in members):
            reader.problem(item, where, f"{name!r} is listed twice in this group")
            ok = False
        else:
            members.append(_Reference(name, item, where))
    return members if ok else None


def _full_group(reader: Reader, value: yaml.Node, path: str, via: str) -> _PendingGroup | None:
    fields = reader.mapping(value, path, GROUP_KEYS)
    if fields is None:
        return None
    if "any_of" not in fields:
        reader.problem(value, path, "missing 'any_of': list the nodes of the group")
        return None
    any_of = fields["any_of"][1]
    items = reader.sequence(any_of, f"{path}.any_of", "a list of node names")
    if items is not None and not items:
        reader.problem(any_of, f"{path}.any_of", "empty group: name at least one node")
        return None
    members = _members(reader, items, f"{path}.any_of") if items is not None else None
    minimum: int | None = 1
    if "min" in fields:
        min_node = fields["min"][1]
        minimum = reader.integer(min_node, f"{path}.min")
        if minimum is not None and minimum < 1:
            reader.problem(min_node, f"{path}.min", f"min must be at least 1, got {minimum}")
            minimum = None
        elif minimum is not None and members is not None and minimum > len(members):
            reader.problem(
                min_node,
                f"{path}.min",
                f"min {minimum} is larger than the group's {len(members)} "
                f"member{'s' if len(members) != 1 else ''}",
            )
            minimum = None
    soft: bool | None = False
    if "soft" in fields:
        soft = reader.boolean(fields["soft"][1], f"{path}.soft")
    if members is None or minimum is None or soft is None:
        return None
    return _PendingGroup(members, minimum, soft, via)


def _resolve(
    reader: Reader,
    node: Node,
    groups: list[_PendingGroup],
    known: set[str],
) -> Node:
    """The node with its groups, once every member is checked to exist."""
    resolved = []
    for group in groups:
        ok = True
        for ref in group.members:
            if ref.name == node.name:
                reader.problem(ref.node, ref.path, f"node {node.name!r} requires itself")
                ok = False
            elif ref.name not in known:
                # Never suggest the node itself: that advice leads to "requires itself".
                others = (name for name in known if name != node.name)
                reader.problem(
                    ref.node,
                    ref.path,
                    f"unknown node {ref.name!r}{suggest(ref.name, others)}",
                )
                ok = False
        if ok:
            members = tuple(ref.name for ref in group.members)
            resolved.append(Group(members, group.min, group.soft, group.via))
    return Node(
        name=node.name,
        kind=node.kind,
        critical=node.critical,
        recovery_target_s=node.recovery_target_s,
        groups=tuple(resolved),
        labels=node.labels,
        description=node.description,
        line=node.line,
    )
