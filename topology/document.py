"""Reading YAML with positions: the parsed document, and the checks that turn
its nodes into values while collecting every problem with file, line and path.

PyYAML's constructors drop positions and silently keep the last of two equal
keys, so we compose the node tree (in C where libyaml is available) and read
values from the nodes ourselves.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from topology.durations import parse_duration
from topology.yamltree import (
    BOOL,
    INT,
    MERGE,
    NULL,
    STR,
    ComposeError,
    MappingNode,
    ScalarNode,
    SequenceNode,
    YamlNode,
    compose,
)

__all__ = [
    "MASK",
    "Document",
    "InvalidInput",
    "Problem",
    "Reader",
    "describe",
    "read_document",
    "redact_url",
    "redact_urls",
    "suggest",
]

# What replaces a secret in text for people.
MASK = "***"
# A URL inside free text (an error message, a command line): a scheme, `://`
# and everything up to a space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`url` as people may read it in an error or a log line: the password
    of its user info, every query value and the fragment replaced by `***`
    (`http://user:***@host:8080/path?token=***`); a lone user name is
    masked too (`https://***@host`: often a token). Scheme, host, port and
    path are kept. Never raises, whatever the text."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # The authority ends where the path, the query or the fragment starts.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user, colon, password = userinfo.partition(":")
        # Without a password, the user name itself is often the token.
        shown = (password and MASK) if colon else (user and MASK)
        userinfo = f"{user}:{shown}" if colon else shown
        authority = f"{userinfo}@{host}"
    tail, hashmark, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    if query:
        query = "&".join(_mask_parameter(p) for p in query.split("&"))
    out = f"{scheme}{sep}{authority}{path}{question}{query}"
    return f"{out}#{MASK}" if hashmark and fragment else f"{out}{hashmark}"


def _mask_parameter(parameter: str) -> str:
    name, equals, value = parameter.partition("=")
    if not equals:
        # A bare word in a query can be a key by itself (`?s3cr3t`).
        return MASK if name else ""
    return f"{name}={MASK}" if value else f"{name}="


def redact_urls(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`: for messages
    that may quote one (a library's error, a command line)."""
    return _URL_IN_TEXT.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    # Punctuation that ends a sentence is the sentence's, not the URL's.
    url = match.group(0)
    kept = url.rstrip(".,;:!)]")
    return redact_url(kept) + url[len(kept) :]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, located for people."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InvalidInput(Exception):
    """The input was refused as a whole; `problems` lists every reason."""

    def __init__(self, problems: Collection[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: p.line or 0)
        self.problems: tuple[Problem, ...] = tuple(ordered)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed YAML document: its source name and its root node."""

    source: str
    root: YamlNode


def read_document(path: str | Path) -> Document:
    """Parse the YAML file at `path`; raise `InvalidInput` if it cannot be
    read, is not UTF-8, is not YAML, or is empty."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InvalidInput([Problem(source, None, "", f"cannot read: {err.strerror}")]) from None
    return parse_document(data, source)


def parse_document(data: bytes | str, source: str) -> Document:
    """Parse YAML text; raise `InvalidInput` if it is not one non-empty document."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            bad = data[err.start]
            raise InvalidInput(
                [
                    Problem(
                        source, line, "", f"not UTF-8 text: byte 0x{bad:02x} at offset {err.start}"
                    )
                ]
            ) from None
    else:
        text = data
    try:
        root = compose(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        detail = _yaml_error(err, text)
        raise InvalidInput([Problem(source, line, "", f"not valid YAML: {detail}")]) from None
    except ComposeError as err:
        raise InvalidInput(
            [Problem(source, err.line, "", f"not valid YAML: {err.message}")]
        ) from None
    except yaml.YAMLError as err:
        raise InvalidInput([Problem(source, 1, "", f"not valid YAML: {err}")]) from None
    if root is None or (isinstance(root, ScalarNode) and root.tag == NULL):
        raise InvalidInput(
            [Problem(source, 1, "", "empty file: expected a mapping with 'version: 1' and 'nodes'")]
        )
    return Document(source, root)


def _yaml_error(err: yaml.MarkedYAMLError, text: str) -> str:
    """PyYAML's message in reading order: the context (where a construct
    started) before the problem, and a plain word for tabs."""
    mark = err.problem_mark
    if mark is not None and "cannot start any token" in (err.problem or ""):
        lines = text.splitlines()
        if mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t":
            return "found a tab character: indent with spaces, not tabs"
    problem = err.problem or "unreadable"
    if not err.context:
        return problem
    start = err.context_mark
    on_another_line = start is not None and (mark is None or start.line != mark.line)
    where = f" (line {start.line + 1})" if start is not None and on_another_line else ""
    joint = ", " if problem.startswith("but ") else ": "
    return f"{err.context}{where}{joint}{problem}"


def describe(node: YamlNode) -> str:
    """How a value reads in an error message: quoted text, or what it is."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "nothing"
    if node.tag == STR:
        return repr(node.value)
    return str(node.value)


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice (ties go to the first
    name in sort order, so the answer never depends on input order), or nothing."""
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(word)
    best: tuple[float, str] | None = None
    for choice in choices:
        matcher.set_seq1(choice)
        # The quick upper bounds first, as difflib.get_close_matches does.
        if matcher.real_quick_ratio() < 0.6 or matcher.quick_ratio() < 0.6:
            continue
        score = matcher.ratio()
        if score >= 0.6 and (best is None or (-score, choice) < (-best[0], best[1])):
            best = (score, choice)
    return f" (did you mean {best[1]!r}?)" if best else ""


# A mapping entry: key node, value node, and the `<<` key it was merged
# through (None when written in the mapping itself).
_Entry = tuple[YamlNode, YamlNode, YamlNode | None]


class Reader:
    """Reads values out of YAML nodes, collecting a `Problem` for each thing
    wrong instead of stopping at the first. Each method returns `None` when
    the value is unusable (its problem already recorded)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        # Mappings already read, by node identity: an anchor merged many
        # times is read once (its problems reported once, and a chain of
        # merges costs linear time), and one being read cannot merge itself.
        self._read: dict[int, dict[str, _Entry]] = {}
        self._open: set[int] = set()

    def problem(self, node: YamlNode | None, path: str, message: str) -> None:
        """Record a problem at `node`'s line."""
        line = node.line if node is not None else 1
        self.problems.append(Problem(self.source, line, path, message))

    def mapping(
        self,
        node: YamlNode,
        path: str,
        allowed: Collection[str] | None = None,
        *,
        expected: str = "a mapping",
    ) -> dict[str, tuple[YamlNode, YamlNode]] | None:
        """The entries of a mapping as {key: (key node, value node)}, in file
        order. Duplicate keys, unknown keys (when `allowed` is given) and
        non-scalar keys are problems; `<<` merge keys are expanded, explicit
        keys winning; nothing (`key:` with no value) reads as an empty mapping."""
        if isinstance(node, ScalarNode) and node.tag == NULL:
            return {}
        if not isinstance(node, MappingNode):
            self.problem(node, path, f"expected {expected}, got {describe(node)}")
            return None
        entries: dict[str, tuple[YamlNode, YamlNode]] = {}
        for name, (key, value, merge) in self._entries(node, path).items():
            if allowed is None or name in allowed:
                entries[name] = (key, value)
            elif merge is None:
                self.problem(key, path, f"unknown key {name!r}{suggest(name, allowed)}")
            else:
                first = key.line
                self.problem(
                    merge,
                    path,
                    f"unknown key {name!r} (merged from line {first}){suggest(name, allowed)}",
                )
        return entries

    def _entries(self, node: MappingNode, path: str) -> dict[str, _Entry]:
        """Every key of a mapping with its `<<` merges applied, each problem
        of the mapping itself recorded once however often it is merged."""
        known = self._read.get(id(node))
        if known is not None:
            return known
        self._open.add(id(node))
        entries: dict[str, _Entry] = {}
        merged: dict[str, _Entry] = {}
        for key, value in node.value:
            if key.tag == MERGE:
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for source in sources:
                    if id(source) in self._open:
                        self.problem(key, path, "'<<' merges a mapping into itself")
                        continue
                    if not isinstance(source, MappingNode):
                        self.problem(
                            source, path, f"expected a mapping to merge, got {describe(source)}"
                        )
                        continue
                    for name, (k, v, _) in self._entries(source, path).items():
                        merged.setdefault(name, (k, v, key))
                continue
            if not isinstance(key, ScalarNode) or key.tag == NULL:
                self.problem(key, path, f"expected a name as key, got {describe(key)}")
                continue
            name = key.value
            if name in entries:
                first = entries[name][0].line
                self.problem(key, path, f"duplicate key {name!r} (first at line {first})")
                continue
            entries[name] = (key, value, None)
        for name, entry in merged.items():
            entries.setdefault(name, entry)
        self._open.discard(id(node))
        if node.anchored:  # only an anchored mapping can be read twice
            self._read[id(node)] = entries
        return entries

    def sequence(self, node: YamlNode, path: str, expected: str) -> list[YamlNode] | None:
        """The items of a list."""
        if not isinstance(node, SequenceNode):
            self.problem(node, path, f"expected {expected}, got {describe(node)}")
            return None
        return list(node.value)

    def string(self, node: YamlNode, path: str, expected: str = "a string") -> str | None:
        """A scalar as text. Numbers and booleans read as they are written,
        so `kind: 404` is the text '404'; nothing and collections are refused."""
        if not isinstance(node, ScalarNode) or node.tag == NULL:
            self.problem(node, path, f"expected {expected}, got {describe(node)}")
            return None
        value: str = node.value
        return value

    def boolean(self, node: YamlNode, path: str) -> bool | None:
        """`true` or `false`."""
        if isinstance(node, ScalarNode) and node.tag == BOOL:
            return node.value.lower() in {"true", "yes", "on", "y"}
        self.problem(node, path, f"expected true or false, got {describe(node)}")
        return None

    def integer(self, node: YamlNode, path: str, *, minimum: int | None = None) -> int | None:
        """A whole number written in decimal (at least `minimum`, if given)."""
        if isinstance(node, ScalarNode) and node.tag == INT:
            try:
                value = int(node.value.replace("_", ""), 10)
            except ValueError:
                pass
            else:
                if minimum is None or value >= minimum:
                    return value
                self.problem(node, path, f"must be at least {minimum}, got {value}")
                return None
        self.problem(node, path, f"expected a whole number, got {describe(node)}")
        return None

    def regex(self, node: YamlNode, path: str) -> re.Pattern[str] | None:
        """A regular expression, compiled."""
        text = self.string(node, path, "a regular expression")
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as err:
            self.problem(node, path, f"bad regular expression {text!r}: {err}")
            return None

    def url(self, node: YamlNode, path: str) -> str | None:
        """An http:// or https:// URL. A problem quotes it redacted (see
        `redact_url`): URLs carry passwords and tokens."""
        text = self.string(node, path, "a URL")
        if text is not None and not text.startswith(("http://", "https://")):
            shown = redact_url(text)
            self.problem(node, path, f"expected an http:// or https:// URL, got {shown!r}")
            return None
        return text

    def duration(self, node: YamlNode, path: str, *, positive: bool = True) -> float | None:
        """Seconds from a duration string such as `10m` (see `parse_duration`)."""
        text = node.value if isinstance(node, ScalarNode) and node.tag != NULL else None
        try:
            if text is None:
                raise ValueError
            seconds = parse_duration(text)
        except ValueError:
            self.problem(
                node,
                path,
                f"bad duration {describe(node)}: expected a number and a unit "
                "(ms, s, m, h, d, w), e.g. '10m' or '1h30m'",
            )
            return None
        if positive and seconds <= 0:
            self.problem(node, path, f"duration {describe(node)} must be more than zero")
            return None
        return seconds

    def items(
        self, entries: dict[str, tuple[YamlNode, YamlNode]]
    ) -> Iterator[tuple[str, YamlNode]]:
        """(key, value node) pairs of a mapping read by `mapping`."""
        for name, (_, value) in entries.items():
            yield name, value
