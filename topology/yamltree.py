"""A light YAML node tree with line numbers, composed from the parser's events.

PyYAML's composer builds a `Node` with two `Mark` objects for every scalar:
at 100k topology nodes that is millions of objects and most of the memory
and time of a load. We keep only what checking needs (value, resolved tag,
line) and let the C parser (libyaml, when available) do the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

import yaml
import yaml.events as ev
from yaml.resolver import Resolver

__all__ = [
    "BOOL",
    "INT",
    "MERGE",
    "NULL",
    "STR",
    "ComposeError",
    "MappingNode",
    "ScalarNode",
    "SequenceNode",
    "YamlNode",
    "compose",
]

_Loader: type[yaml.CSafeLoader | yaml.SafeLoader]
try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml: same results, slower
    _Loader = yaml.SafeLoader

# The tags that checking looks at, as PyYAML's resolver names them.
STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"


class ScalarNode:
    """A scalar: its text, its resolved tag (str, int, bool, null...), its line."""

    __slots__ = ("line", "tag", "value")

    def __init__(self, value: str, tag: str, line: int) -> None:
        self.value = value
        self.tag = tag
        self.line = line


class SequenceNode:
    """A list of nodes."""

    __slots__ = ("line", "value")
    tag: ClassVar[str] = "tag:yaml.org,2002:seq"

    def __init__(self, line: int) -> None:
        self.value: list[YamlNode] = []
        self.line = line


class MappingNode:
    """Key and value pairs in file order, duplicates kept (checking reports
    them); `anchored` when an alias may refer to it from elsewhere."""

    __slots__ = ("anchored", "line", "value")
    tag: ClassVar[str] = "tag:yaml.org,2002:map"

    def __init__(self, line: int, *, anchored: bool) -> None:
        self.value: list[tuple[YamlNode, YamlNode]] = []
        self.line = line
        self.anchored = anchored


YamlNode = ScalarNode | SequenceNode | MappingNode


class ComposeError(Exception):
    """The events do not make one document: `line` and `message` say why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def compose(text: str) -> YamlNode | None:
    """The single document in `text` as a node tree, or None when it holds
    no document. Syntax errors raise PyYAML's `MarkedYAMLError`; several
    documents, a duplicate anchor or an undefined alias raise `ComposeError`."""
    loader = _Loader(text)
    try:
        return _compose(loader)
    finally:
        loader.dispose()


def _compose(loader: yaml.CSafeLoader | yaml.SafeLoader) -> YamlNode | None:
    get = loader.get_event
    get()  # stream start
    # The stubs type events loosely; each branch below reads only its own fields.
    event: Any = get()
    if type(event) is ev.StreamEndEvent:
        return None
    resolved: dict[str, str] = {}
    texts: dict[str, str] = {}
    # PyYAML's resolver is untyped; it maps a plain scalar to its tag.
    resolve: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = Resolver().resolve
    anchors: dict[str, YamlNode] = {}
    # Each frame: the open container and, for a mapping, its pending key.
    stack: list[list[object]] = []
    root: YamlNode | None = None
    while True:
        event = get()
        kind = type(event)
        node: YamlNode
        if kind is ev.ScalarEvent:
            # One copy of each distinct text: node names recur in every
            # reference to them, keys in every node.
            value = texts.setdefault(event.value, event.value)
            tag = event.tag
            if tag is None or tag == "!":
                if event.implicit[0]:
                    tag = resolved.get(value)
                    if tag is None:
                        tag = resolved[value] = resolve(yaml.ScalarNode, value, (True, False))
                else:
                    tag = STR
            node = ScalarNode(value, tag, event.start_mark.line + 1)
        elif kind is ev.MappingStartEvent:
            node = MappingNode(event.start_mark.line + 1, anchored=event.anchor is not None)
        elif kind is ev.SequenceStartEvent:
            node = SequenceNode(event.start_mark.line + 1)
        elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
            stack.pop()
            continue
        elif kind is ev.AliasEvent:
            found = anchors.get(event.anchor)
            if found is None:
                raise ComposeError(
                    event.start_mark.line + 1, f"found undefined alias {event.anchor!r}"
                )
            node = found
        else:  # the document's end
            break
        anchor = getattr(event, "anchor", None)
        if anchor is not None and kind is not ev.AliasEvent:
            if anchor in anchors:
                raise ComposeError(
                    node.line, f"found duplicate anchor: first at line {anchors[anchor].line}"
                )
            anchors[anchor] = node
        if stack:
            frame = stack[-1]
            container = frame[0]
            if isinstance(container, SequenceNode):
                container.value.append(node)
            elif frame[1] is None:
                frame[1] = node
            else:
                cast("MappingNode", container).value.append((cast("YamlNode", frame[1]), node))
                frame[1] = None
        else:
            root = node
        if kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
            stack.append([node, None])
    event = get()
    if type(event) is not ev.StreamEndEvent:
        first = root.line if root is not None else 1
        raise ComposeError(
            event.start_mark.line + 1,
            f"expected a single document in the stream (line {first}), but found another document",
        )
    return root
