"""What the importers share: reading values out of parsed JSON or YAML
(plain dicts and lists) while collecting every problem with its source and
path, and the rule a node name must follow to be written in a topology file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from topology.document import InvalidInput, Problem, quote

__all__ = ["NAME", "Input", "kind_of", "origin", "refuse"]

# The topology file's rule for node names (topology.loader checks it too):
# what an importer names a node must load.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]*\Z")


def kind_of(value: Any) -> str:
    """What a parsed value is, for messages: `a list`, `the number 3`..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {quote(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def origin(kind: str, documents: Sequence[tuple[str, Any]]) -> str:
    """How messages name a source: its kind and its documents' names, each
    once, in order (`kubernetes cluster.json`)."""
    names = list(dict.fromkeys(source for source, _ in documents))
    return f"{kind} {', '.join(names)}" if names else kind


class Input:
    """Reads the values of one document, recording a `Problem` (its source,
    a path such as `items[3].metadata.name`, what is wrong) for everything
    unusable instead of raising at the first; each reader returns `None`
    when the value cannot be used."""

    def __init__(self, problems: list[Problem], source: str) -> None:
        self.problems = problems
        self.source = source

    def problem(self, path: str, message: str) -> None:
        """Record that the value at `path` is wrong."""
        self.problems.append(Problem(self.source, None, path, message))

    def mapping(self, value: Any, path: str, *, required: bool = False) -> Mapping[str, Any] | None:
        """`value` if it is a mapping; absent (None) reads as empty unless
        `required`."""
        if isinstance(value, Mapping):
            return value
        if value is None and not required:
            return {}
        self.problem(
            path, "missing" if value is None else f"expected a mapping, got {kind_of(value)}"
        )
        return None

    def sequence(self, value: Any, path: str) -> Sequence[Any] | None:
        """`value` if it is a list; absent (None) reads as empty."""
        if value is None:
            return ()
        if isinstance(value, list | tuple):
            return value
        self.problem(path, f"expected a list, got {kind_of(value)}")
        return None

    def text(self, value: Any, path: str, *, required: bool = False) -> str | None:
        """`value` if it is text (non-empty when `required`)."""
        if isinstance(value, str) and (value or not required):
            return value
        if value is None and not required:
            return None
        if value is None or value == "":
            self.problem(path, "missing" if value is None else "empty")
        else:
            self.problem(path, f"expected text, got {kind_of(value)}")
        return None

    def integer(self, value: Any, path: str) -> int | None:
        """`value` if it is a whole number of zero or more (absent: None)."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        self.problem(path, f"expected a whole number of 0 or more, got {kind_of(value)}")
        return None

    def name(self, value: str, path: str, what: str) -> str | None:
        """`value` if it can name a topology node, else a problem saying so."""
        if NAME.match(value):
            return value
        self.problem(
            path,
            f"{what} {quote(value)} is not a valid node name: start with a letter or digit, "
            "then use letters, digits and - _ . : / @",
        )
        return None


def refuse(problems: list[Problem]) -> None:
    """Raise `InvalidInput` with `problems`, if there are any: a source is
    refused as a whole, every problem listed."""
    if problems:
        raise InvalidInput(problems)
