"""The topology file (version 1): its schema, checked as a whole into a
`Topology`, every problem reported with file, line and path."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from topology.collector import paused
from topology.document import (
    Document,
    InvalidInput,
    Reader,
    Suggestions,
    describe,
    parse_document,
    quote,
    read_document,
)
from topology.model import (
    DEFAULT_RECOVERY_TARGET_CRITICAL_S,
    DEFAULT_RECOVERY_TARGET_NON_CRITICAL_S,
    Group,
    Node,
    Topology,
)
from topology.sources.declared import Fetch, expand
from topology.yamltree import INT, NULL, MappingNode, ScalarNode, YamlNode

__all__ = ["SECTIONS", "SUPPORTED_VERSION", "load", "loads", "topology_from_document"]

SUPPORTED_VERSION = 1
# Top-level keys. The daemon's settings live beside `nodes` and are read by
# the packages that own them; the topology only checks the names.
SECTIONS = ("version", "defaults", "sources", "nodes", "server", "state", "cluster", "alerts")
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
# Recovery targets: a year is already more than any promise made to people.
MAX_RECOVERY_TARGET_S = 365 * 86400.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]*\Z")


def load(path: str | Path, fetch: Fetch | None = None) -> Topology:
    """The topology in the file at `path`, its `sources:` merged under its
    own nodes (live ones read through `fetch`); `InvalidInput` lists every
    problem."""
    with paused():
        return topology_from_document(read_document(path), fetch)


def loads(text: str, source: str = "<string>", fetch: Fetch | None = None) -> Topology:
    """The topology in YAML `text`; `InvalidInput` lists every problem."""
    with paused():
        return topology_from_document(parse_document(text, source), fetch)


def topology_from_document(document: Document, fetch: Fetch | None = None) -> Topology:
    """Check the topology part of a parsed document and build it, the nodes
    of its `sources:` merged under its own (see `topology.sources`); the
    sources' findings go with it (`Topology.source_findings`).

    Raises `InvalidInput` listing every problem found, never just the first.
    """
    document, source_findings, _ = expand(document, fetch)
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
        if version.tag != INT:
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

    nodes: list[Node] = []
    if "nodes" not in root:
        reader.problem(None, "nodes", "missing: describe the estate under 'nodes:'")
    else:
        key, value = root["nodes"]
        entries = reader.mapping(value, "nodes")
        if entries == {}:
            reader.problem(key, "nodes", "no nodes: describe at least one node")
        # Every name first, so that references are checked as they are read.
        checker = _NodeChecker(reader, set(entries or ()))
        for name, (name_node, body) in (entries or {}).items():
            if not _NAME.match(name):
                reader.problem(
                    name_node,
                    "nodes",
                    f"bad node name {quote(name)}: start with a letter or digit, "
                    "then use letters, digits and - _ . : / @",
                )
                continue
            node = checker.node(name, name_node, body)
            if node is not None:
                nodes.append(node)

    if reader.problems:
        raise InvalidInput(reader.problems)
    return Topology(
        nodes,
        recovery_target_critical_s=critical_s,
        recovery_target_non_critical_s=non_critical_s,
        source=document.source,
        source_findings=source_findings,
    )


def _defaults(reader: Reader, root: dict[str, tuple[YamlNode, YamlNode]]) -> tuple[float, float]:
    critical_s = DEFAULT_RECOVERY_TARGET_CRITICAL_S
    non_critical_s = DEFAULT_RECOVERY_TARGET_NON_CRITICAL_S
    if "defaults" not in root:
        return critical_s, non_critical_s
    # `prometheus` (the default server of prometheus probes) is the daemon's
    # to read: only its name is checked here.
    allowed = ("recovery_target", "prometheus")
    defaults = reader.mapping(root["defaults"][1], "defaults", allowed) or {}
    if "recovery_target" in defaults:
        path = "defaults.recovery_target"
        targets = reader.mapping(defaults["recovery_target"][1], path, ("critical", "non_critical"))
        for key, value in reader.items(targets or {}):
            seconds = reader.duration(value, f"{path}.{key}", maximum=MAX_RECOVERY_TARGET_S)
            if seconds is not None and key == "critical":
                critical_s = seconds
            elif seconds is not None:
                non_critical_s = seconds
    return critical_s, non_critical_s


_NO_LABELS: MappingProxyType[str, str] = MappingProxyType({})


class _NodeChecker:
    """Checks one node body after another against the names declared under
    `nodes`, recording problems; returns `None` for what is unusable."""

    def __init__(self, reader: Reader, declared: set[str]) -> None:
        self.reader = reader
        self.declared = declared
        self.name = ""
        self._suggestions: Suggestions | None = None

    def suggest(self, name: str) -> str:
        """A "did you mean" among the declared nodes, never the node itself
        (that advice leads to "requires itself"). Built on first use: a valid
        file pays nothing."""
        if self._suggestions is None:
            self._suggestions = Suggestions(self.declared)
        return self._suggestions(name, exclude=self.name)

    def node(self, name: str, name_node: YamlNode, body: YamlNode) -> Node | None:
        reader = self.reader
        self.name = name
        path = f"nodes.{name}"
        fields = reader.mapping(body, path, NODE_KEYS)
        if fields is None:
            return None
        kind, critical, target, description, probed = "service", False, None, "", False
        labels: dict[str, str] = {}
        groups: list[Group] = []
        for key, value in reader.items(fields):
            where = f"{path}.{key}"
            if key == "kind":
                kind = reader.string(value, where) or kind
                if not value.value:
                    reader.problem(value, where, "expected a kind such as service or farm, got ''")
            elif key == "critical":
                critical = bool(reader.boolean(value, where))
            elif key == "recovery_target":
                target = reader.duration(value, where, maximum=MAX_RECOVERY_TARGET_S)
            elif key == "runs_on":
                group = self._runs_on(value, where)
                if group is not None:
                    groups.append(group)
            elif key == "depends_on":
                groups.extend(self._depends_on(value, where))
            elif key == "labels":
                for label, text in reader.items(reader.mapping(value, where) or {}):
                    got = reader.string(text, f"{where}.{label}")
                    if got is not None:
                        labels[label] = got
            elif key == "description":
                description = reader.string(value, where) or ""
            elif key == "probes":
                # Probes belong to the daemon, which checks their contents;
                # lint only needs to know that the node is watched.
                probes = reader.sequence(value, where, "a list of probes")
                probed = bool(probes)
        return Node(
            name=name,
            kind=kind,
            critical=critical,
            recovery_target_s=target,
            groups=tuple(groups),
            labels=MappingProxyType(labels) if labels else _NO_LABELS,
            description=description,
            probed=probed,
            line=name_node.line,
        )

    def _runs_on(self, value: YamlNode, path: str) -> Group | None:
        """`runs_on` is one group: a list of replicas (min 1), one name, or
        the full form with `any_of`."""
        if isinstance(value, MappingNode):
            return self._full_group(value, path, "runs_on")
        if isinstance(value, ScalarNode) and value.tag != NULL:
            return self._simple_group([value], path, "runs_on", single=True)
        items = self.reader.sequence(value, path, "a list of node names or a mapping with 'any_of'")
        if items is None:
            return None
        if not items:
            self.reader.problem(value, path, "empty group: name at least one node")
            return None
        return self._simple_group(items, path, "runs_on")

    def _depends_on(self, value: YamlNode, path: str) -> list[Group]:
        """`depends_on` is one group per item: a name, or the full form; a
        lone name or group stands for a list of one."""
        if isinstance(value, MappingNode):
            group = self._full_group(value, path, "depends_on")
            return [group] if group is not None else []
        if isinstance(value, ScalarNode) and value.tag != NULL:
            group = self._simple_group([value], path, "depends_on", single=True)
            return [group] if group is not None else []
        reader = self.reader
        items = reader.sequence(value, path, "a list of node names or groups")
        if items is None:
            return []
        if not items:
            reader.problem(value, path, "empty list: name at least one node, or remove the key")
        groups = []
        named: set[str] = set()
        for i, item in enumerate(items):
            where = f"{path}[{i}]"
            if isinstance(item, MappingNode):
                group = self._full_group(item, where, "depends_on")
            else:
                group = self._simple_group([item], where, "depends_on", single=True)
                if group is not None:
                    name = group.members[0]
                    if name in named:
                        reader.problem(item, where, f"{quote(name)} is listed twice in depends_on")
                        continue
                    named.add(name)
            if group is not None:
                groups.append(group)
        return groups

    def _simple_group(
        self, items: list[YamlNode], path: str, via: str, *, single: bool = False
    ) -> Group | None:
        members = self._members(items, path, single=single)
        return None if members is None else Group(members, 1, False, via)

    def _members(
        self, items: list[YamlNode], path: str, *, single: bool = False
    ) -> tuple[str, ...] | None:
        """The names in `items`, each declared, none twice, none the node
        itself; paths are only spelled out for a problem."""
        reader, declared, own = self.reader, self.declared, self.name
        members: list[str] = []
        ok = True
        for i, item in enumerate(items):
            name = item.value if isinstance(item, ScalarNode) and item.tag != NULL else None
            if name is not None and name in declared and name != own and name not in members:
                members.append(name)
                continue
            ok = False
            where = path if single else f"{path}[{i}]"
            if name is None:
                reader.string(item, where, "a node name")  # records the problem
            elif name == own:
                reader.problem(item, where, f"node {quote(own)} requires itself")
            elif name in members:
                reader.problem(item, where, f"{quote(name)} is listed twice in this group")
            else:
                reader.problem(item, where, f"unknown node {quote(name)}{self.suggest(name)}")
        return tuple(members) if ok else None

    def _full_group(self, value: YamlNode, path: str, via: str) -> Group | None:
        reader = self.reader
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
        members = self._members(items, f"{path}.any_of") if items is not None else None
        # A member that is unusable still counts for the size check of `min`.
        size = len(items) if items is not None else None
        minimum: int | None = 1
        if "min" in fields:
            min_node = fields["min"][1]
            minimum = reader.integer(min_node, f"{path}.min")
            if minimum is not None and minimum < 1:
                reader.problem(min_node, f"{path}.min", f"min must be at least 1, got {minimum}")
                minimum = None
            elif minimum is not None and size is not None and minimum > size:
                reader.problem(
                    min_node,
                    f"{path}.min",
                    f"min {minimum} is larger than the group's {size} "
                    f"member{'s' if size != 1 else ''}",
                )
                minimum = None
        soft: bool | None = False
        if "soft" in fields:
            soft = reader.boolean(fields["soft"][1], f"{path}.soft")
        if members is None or minimum is None or soft is None:
            return None
        return Group(members, minimum, soft, via)
