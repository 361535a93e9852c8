"""The overlay: what a person knows and no system does, merged over what
the sources say.

An overlay is an ordinary topology file. Its node entries are merged over
the imported nodes of the same name, key by key:

- `labels` are merged, the overlay's value winning for a key in both;
- `depends_on` items are added to the imported ones (extra requirements);
- `runs_on: {min: N}` (a group without `any_of`) keeps the imported
  members with that `min`: a disruption budget the source does not know;
- any other key (`critical`, `recovery_target`, `kind`, `description`,
  `probes`, and `runs_on` in full: a placement the source cannot see)
  replaces the imported value.

An overlay entry that names no imported node and has no `kind` of its own is
a finding (`overlay-orphan`): the node was renamed or removed at the
source, and the entry no longer says anything about the estate. An entry
with a `kind` declares a node the sources do not know (a farm, a SaaS) and
is kept silently.

The merge works on the file's YAML tree, so problems in the overlay keep
their lines; imported nodes carry the line of the source that gave them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from topology.document import Document, Problem
from topology.findings import Finding
from topology.sources import Imported
from topology.yamltree import (
    BOOL,
    INT,
    MERGE,
    NULL,
    STR,
    MappingNode,
    ScalarNode,
    SequenceNode,
    YamlNode,
)

__all__ = ["merge", "to_python", "to_yaml_node"]

FLOAT = "tag:yaml.org,2002:float"
# A problem names this many nodes, then counts the rest.
_SHOWN = 8
# Keys whose overlay value adds to the imported one instead of replacing it.
_MERGED_KEYS = ("labels", "depends_on")


def merge(
    document: Document, imports: Sequence[tuple[Imported, int]]
) -> tuple[Document, list[Finding], list[Problem]]:
    """`document` with the nodes of `imports` (each with the line of the
    file that named its source) under its own: the merged document, the
    findings (the sources' own, then overlay entries that match nothing) and
    the problems (a node two sources both give)."""
    root = document.root
    findings: list[Finding] = []
    problems: list[Problem] = []
    imported: dict[str, tuple[Mapping[str, Any], Imported, int]] = {}
    for result, line in imports:
        findings.extend(result.findings)
        # Names another source gave already, by that source: one problem each.
        twice: dict[str, list[str]] = {}
        for name, body in result.nodes.items():
            first = imported.get(name)
            if first is not None:
                twice.setdefault(first[1].origin, []).append(name)
                continue
            imported[name] = (body, result, line)
        for origin, names in twice.items():
            shown = ", ".join(names[:_SHOWN]) + (
                f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            )
            problems.append(
                Problem(
                    document.source,
                    line,
                    "sources",
                    f"{len(names)} node{'s come' if len(names) != 1 else ' comes'} from both "
                    f"{origin} and {result.origin} ({shown}): drop one of the sources, "
                    "or rename them in one",
                )
            )
    if not isinstance(root, MappingNode):
        return document, findings, problems  # the loader says what is wrong

    nodes_at = next(
        (i for i, (key, _) in enumerate(root.value) if _is(key, "nodes")),
        None,
    )
    own = root.value[nodes_at][1] if nodes_at is not None else None
    merged = MappingNode(own.line if own is not None else 1, anchored=False)
    seen: set[str] = set()
    if isinstance(own, MappingNode):
        for key, entry in own.value:
            own_name = key.value if isinstance(key, ScalarNode) and key.tag != MERGE else None
            if own_name is None or own_name in seen:
                merged.value.append((key, entry))  # the loader reports it
                continue
            seen.add(own_name)
            source = imported.get(own_name)
            if source is None:
                if not _has_key(entry, "kind"):
                    findings.append(_orphan(own_name, imports))
                merged.value.append((key, entry))
            else:
                merged.value.append((key, _merge_node(to_yaml_node(source[0], source[2]), entry)))
    elif own is not None and not (isinstance(own, ScalarNode) and own.tag == NULL):
        return document, findings, problems  # not a mapping: the loader says so
    for name, (body, _, line) in sorted(imported.items()):
        if name not in seen:
            merged.value.append((ScalarNode(name, STR, line), to_yaml_node(body, line)))

    new_root = MappingNode(root.line, anchored=root.anchored)
    new_root.value = [pair for pair in root.value if not _is(pair[0], "sources")]
    if nodes_at is not None:
        new_root.value = [
            (key, merged) if _is(key, "nodes") else (key, value) for key, value in new_root.value
        ]
    else:
        new_root.value.append((ScalarNode("nodes", STR, merged.line), merged))
    return Document(document.source, new_root), findings, problems


def _orphan(name: str, imports: Sequence[tuple[Imported, int]]) -> Finding:
    origins = ", ".join(result.origin for result, _ in imports) or "the sources"
    return Finding(
        "overlay-orphan",
        "warning",
        (name,),
        f"{name} is in the overlay but not in {origins}: it was renamed or removed "
        "there; delete the entry, or give it a kind to declare a node of its own",
    )


def _is(key: YamlNode, name: str) -> bool:
    return isinstance(key, ScalarNode) and key.tag == STR and key.value == name


def _has_key(body: YamlNode, name: str) -> bool:
    return isinstance(body, MappingNode) and any(_is(key, name) for key, _ in body.value)


def _merge_node(imported: YamlNode, own: YamlNode) -> YamlNode:
    """The overlay entry `own` over the imported body (see the module's
    rules); an entry that is not a mapping is left for the loader to refuse,
    an empty one (`name:`) keeps the import as it is."""
    if isinstance(own, ScalarNode) and own.tag == NULL:
        return imported
    if not isinstance(own, MappingNode) or not isinstance(imported, MappingNode):
        return own
    own_keys = {key.value: value for key, value in own.value if isinstance(key, ScalarNode)}
    out = MappingNode(own.line, anchored=False)
    for key, value in imported.value:
        name = key.value if isinstance(key, ScalarNode) else None
        if name not in own_keys:
            out.value.append((key, value))
        elif name in _MERGED_KEYS:
            out.value.append((key, _combine(value, own_keys[name])))
        elif name == "runs_on" and isinstance(bare := own_keys[name], MappingNode):
            if _has_key(bare, "any_of"):
                continue  # a group in full replaces the import's
            out.value.append((key, _regroup(value, bare)))
    # The overlay's entries after, in its order: replaced and merged keys
    # already placed keep their spot.
    placed = {key.value for key, _ in out.value if isinstance(key, ScalarNode)}
    out.value.extend(pair for pair in own.value if _key(pair[0]) not in placed)
    return out


def _key(node: YamlNode) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _combine(imported: YamlNode, own: YamlNode) -> YamlNode:
    """Labels merged (the overlay winning) or requirement lists joined; a
    value of another shape is the overlay's, for the loader to judge."""
    if isinstance(imported, MappingNode) and isinstance(own, MappingNode):
        out = MappingNode(own.line, anchored=False)
        mine = {_key(key) for key, _ in own.value}
        out.value = [pair for pair in imported.value if _key(pair[0]) not in mine]
        out.value.extend(own.value)
        return out
    if isinstance(imported, SequenceNode) and isinstance(own, SequenceNode):
        # The overlay's first, so that a problem's path (`depends_on[0]`)
        # counts the items as the overlay's file has them.
        joined = SequenceNode(own.line)
        joined.value = [*own.value, *imported.value]
        return joined
    return own


def _regroup(imported: YamlNode, own: MappingNode) -> YamlNode:
    """The imported placement's members with the overlay's `min` (and
    `soft`): a budget the source does not know, set without restating
    where the workload runs."""
    members: YamlNode | None = imported
    if isinstance(imported, MappingNode):
        members = next((v for k, v in imported.value if _is(k, "any_of")), None)
    elif isinstance(imported, ScalarNode):
        members = SequenceNode(imported.line)
        members.value = [imported]
    if members is None:
        return own
    out = MappingNode(own.line, anchored=False)
    out.value = [(ScalarNode("any_of", STR, own.line), members), *own.value]
    return out


def to_yaml_node(value: Any, line: int) -> YamlNode:
    """A plain value (str, bool, int, float, None, list, dict) as a YAML
    tree whose every node is at `line`."""
    if isinstance(value, Mapping):
        mapping = MappingNode(line, anchored=False)
        mapping.value = [
            (ScalarNode(str(k), STR, line), to_yaml_node(v, line)) for k, v in value.items()
        ]
        return mapping
    if isinstance(value, (list, tuple)):
        sequence = SequenceNode(line)
        sequence.value = [to_yaml_node(item, line) for item in value]
        return sequence
    if isinstance(value, bool):
        return ScalarNode("true" if value else "false", BOOL, line)
    if isinstance(value, int):
        return ScalarNode(str(value), INT, line)
    if isinstance(value, float):
        return ScalarNode(repr(value), FLOAT, line)
    if value is None:
        return ScalarNode("null", NULL, line)
    return ScalarNode(str(value), STR, line)


def to_python(node: YamlNode) -> Any:
    """A YAML tree as plain values, for printing a merged file (`<<` merges
    applied, explicit keys winning)."""
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key, value in node.value:
            if key.tag == MERGE:
                for source in value.value if isinstance(value, SequenceNode) else [value]:
                    for k, v in (to_python(source) or {}).items():
                        merged.setdefault(k, v)
                continue
            out[str(to_python(key))] = to_python(value)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out
    if isinstance(node, SequenceNode):
        return [to_python(item) for item in node.value]
    if node.tag == STR:
        return node.value
    # Numbers, booleans and nulls as YAML reads them.
    return yaml.safe_load(node.value) if node.value else None
