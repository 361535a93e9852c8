"""Reading YAML with positions: the parsed document, and the checks that turn
its nodes into values while collecting every problem with file, line and path.

PyYAML's constructors drop positions and silently keep the last of two equal
keys, so we compose the node tree (in C where libyaml is available) and read
values from the nodes ourselves.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import yaml

from topology.durations import MAX_DURATION_S, DurationTooLong, format_duration, parse_duration
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
    "MAX_FILE_BYTES",
    "QUOTE_LIMIT",
    "Document",
    "InvalidInput",
    "Problem",
    "Reader",
    "Suggestions",
    "describe",
    "parse_document",
    "printable",
    "quote",
    "read_bytes",
    "read_document",
    "read_stream",
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


# How much of a text a message quotes: enough to recognise it, little enough
# that a 10 MB key does not flood a terminal or a log.
QUOTE_LIMIT = 80
# A path in a problem keeps each of its parts to this many characters.
_PATH_PART_LIMIT = 80
_LONG_PATH_PART = re.compile(rf"[^.\[\]]{{{_PATH_PART_LIMIT + 1},}}")
# Whatever else a message holds (lists of choices, a library's words).
_MESSAGE_LIMIT = 1000


def printable(text: str) -> str:
    """`text` with every character a terminal would act on or hide (C0 and
    C1 controls, DEL, bidirectional and other format characters) written as
    an escape (`\\x1b`, `\\u202e`); everything else as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` quoted for a message that people read in a terminal, the one
    way every problem quotes what the user wrote: as Python writes a string
    (`'farm-oms1'`, control characters escaped as `'\\x1b[31m'`), and cut to
    `limit` characters with `…` inside the quotes (`'aaaa…'`)."""
    if len(text) <= limit:
        return repr(text)
    shown = repr(text[:limit])
    return f"{shown[:-1]}…{shown[-1]}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, located for people.

    Whatever it is built from, it is safe to print: control characters in
    the source, the path and the message are escaped, each part of the path
    is cut to 80 characters and the message to 1,000."""

    source: str
    line: int | None
    path: str
    message: str

    def __post_init__(self) -> None:
        # Text from the file reaches all three (a key in the path, a value
        # in the message, a file name); the readers quote it, this is the net.
        path = printable(self.path)
        if len(path) > _PATH_PART_LIMIT:
            path = _LONG_PATH_PART.sub(lambda m: m.group(0)[: _PATH_PART_LIMIT - 1] + "…", path)
        object.__setattr__(self, "source", printable(self.source))
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "message", _cut(printable(self.message), _MESSAGE_LIMIT))

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


# A topology file of 100,000 nodes with probes is about 20 MiB; a file larger
# than this is a mistake (a log, a dump, /dev/zero), refused before it is read.
MAX_FILE_BYTES = 64 * 1024 * 1024
_MiB = 1024 * 1024
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(source: str, mode: int) -> InvalidInput:
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
    return InvalidInput([Problem(source, None, "", f"cannot read: {kind}, not a regular file")])


def _too_large(source: str, size: int | None) -> InvalidInput:
    got = f"{size:,} bytes is" if size is not None else "it holds"
    message = f"cannot read: {got} more than the {MAX_FILE_BYTES // _MiB} MiB a file may hold"
    return InvalidInput([Problem(source, None, "", message)])


def read_document(path: str | Path) -> Document:
    """Parse the YAML file at `path`; raise `InvalidInput` if it cannot be
    read, is not a regular file (a directory, a pipe, a device), is larger
    than `MAX_FILE_BYTES`, is not UTF-8, is not YAML, or is empty."""
    return parse_document(read_bytes(path), str(path))


def read_bytes(path: str | Path) -> bytes:
    """The bytes of the regular file at `path`, at most `MAX_FILE_BYTES`;
    `InvalidInput` naming the file otherwise. Nothing but a regular file is
    ever opened, so a FIFO never blocks the reader."""
    source = str(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(source, info.st_mode)
        if info.st_size > MAX_FILE_BYTES:
            raise _too_large(source, info.st_size)
        # O_NONBLOCK: were the file swapped for a FIFO since the stat, the
        # open would not wait for a writer; fstat then tells what it is.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise _not_regular(source, mode)
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise InvalidInput([Problem(source, None, "", f"cannot read: {err.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(source, None)
    return data


def read_stream(stream: BinaryIO, source: str) -> Document:
    """Parse the YAML document read from `stream` (standard input, named
    `source` in problems, e.g. `<stdin>`), refused past `MAX_FILE_BYTES`
    like a file."""
    try:
        data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise InvalidInput([Problem(source, None, "", f"cannot read: {err.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(source, None)
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
        raise InvalidInput([Problem(source, line, "", _yaml_error(err, text))]) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        message = (
            f"a control character ({err.character:#04x}) is not allowed in YAML text: "
            "remove it, or write it as an escape inside double quotes"
        )
        raise InvalidInput([Problem(source, line, "", message)]) from None
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
    """What a YAML syntax error usually means, in words, then PyYAML's own
    (libyaml's and pure PyYAML's words differ; both are recognised):
    `a key is indented differently ... (YAML: did not find expected key)`.
    An error it does not know reads `not valid YAML: CONTEXT (line N): PROBLEM`."""
    mark, start = err.problem_mark, err.context_mark
    problem = err.problem or "unreadable"
    context = err.context or ""
    on_another_line = start is not None and (mark is None or start.line != mark.line)
    since = f" (line {start.line + 1})" if start is not None and on_another_line else ""
    at = f" at line {start.line + 1}" if start is not None and on_another_line else ""
    meaning = None
    if "cannot start any token" in problem and mark is not None:
        lines = text.splitlines()
        char = lines[mark.line][mark.column : mark.column + 1] if mark.line < len(lines) else ""
        if char == "\t":
            meaning = "indented with a tab: YAML takes spaces only"
        elif char:
            meaning = (
                f"a value starts with {quote(char)}, which YAML reserves: put the value in quotes"
            )
    elif "block mapping" in context:
        keys = f"the keys of the mapping that starts{at}" if at else "the keys before it"
        meaning = (
            f"a key or a '- ' item is indented differently from {keys}, "
            "or a value is missing after a colon"
        )
    elif "block collection" in context:
        meaning = (
            f"a list item is indented differently from the ones before it{since}, "
            "or a 'key: value' line sits among the '- ' items"
        )
    elif problem.startswith("mapping values are not allowed"):
        meaning = (
            "this line is indented deeper than the key above it, the line above lacks "
            "its ':', or a value holds ': ' and needs quotes"
        )
    elif "simple key" in context or "could not find expected ':'" in problem:
        meaning = f"the key{at} lacks its ':', or a quote or bracket opened before it is not closed"
    elif "flow sequence" in context:
        meaning = (
            f"a list opened with '['{at} is not closed with ']', or two of its items lack "
            "a ',' between them"
        )
    elif "flow mapping" in context:
        meaning = (
            f"a mapping opened with '{{'{at} is not closed with '}}', or two of its entries "
            "lack a ',' between them"
        )
    elif "unknown escape character" in problem:
        meaning = (
            "a backslash in double quotes starts an escape YAML does not know: "
            "write regular expressions and Windows paths in single quotes"
        )
    elif "quoted scalar" in context and "end of stream" in problem:
        meaning = f"a quote opened{at} is never closed"
    if meaning is not None:
        return f"{meaning} (YAML: {problem})"
    if not context:
        return f"not valid YAML: {problem}"
    joint = ", " if problem.startswith("but ") else ": "
    return f"not valid YAML: {context}{since}{joint}{problem}"


def describe(node: YamlNode) -> str:
    """How a value reads in an error message: quoted text (see `quote`), or
    what it is."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "nothing"
    if node.tag == STR:
        return quote(node.value)
    return _cut(printable(node.value), QUOTE_LIMIT)


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice (ties go to the first
    name in sort order, so the answer never depends on input order), or
    nothing. For many words against the same choices, use `Suggestions`."""
    return Suggestions(choices)(word)


# Choices up to this many are all compared with each word, as difflib does;
# beyond, candidates come from indexes (see `Suggestions`).
_EXHAUSTIVE = 100
# difflib's cut-off for a close match.
_CLOSE = 0.6
# At most this many candidates of the index search are scored with difflib.
_SCORED = 24
# Candidates the bigram search may look at per word, and per `Suggestions`:
# what keeps a file of thousands of hopeless references fast (they simply
# get no suggestion once it is spent).
_LOOKS_PER_WORD = 20_000
_LOOKS_IN_ALL = 1_000_000
# Words longer than this get no suggestion.
_LONGEST = 200


class Suggestions:
    """ "Did you mean" for many words against one set of choices (the nodes
    of a file), each answer the closest choice by difflib's ratio (at least
    0.6; ties to the first name in sort order).

    Up to 100 choices, every one is scored, exactly as `difflib` would. Beyond,
    scoring each would make a file with thousands of broken references
    quadratic (4,000 took minutes), so candidates come from two indexes built
    on first use: the names one deletion away from the word (a typo, a
    missing or extra character, two swapped), then names sharing at least
    half of the word's bigrams. Each word is answered once (a stale farm name
    referenced a thousand times costs one search), and the bigram search has
    a budget per word and in all."""

    def __init__(self, choices: Iterable[str]) -> None:
        self._choices = sorted(set(choices))
        self._answers: dict[str, tuple[str, ...]] = {}
        self._deletions: dict[str, list[str]] | None = None
        self._bigrams: dict[str, list[str]] | None = None
        # The bigrams of the choices the bigram search looked at, kept: the
        # same few (the farms a stale name resembles) come up word after word.
        self._grams: dict[str, frozenset[str]] = {}
        self._looks_left = _LOOKS_IN_ALL

    def __call__(self, word: str, exclude: str | None = None) -> str:
        """` (did you mean 'x'?)` for the closest choice other than
        `exclude`, or nothing."""
        if len(word) > _LONGEST:
            return ""  # not a misspelt name, and costly to compare
        ranked = self._answers.get(word)
        if ranked is None:
            ranked = self._answers[word] = self._rank(word)
        for choice in ranked:
            if choice != exclude:
                return f" (did you mean {quote(choice)}?)"
        return ""

    def _rank(self, word: str) -> tuple[str, ...]:
        """The two closest choices, best first (one may be excluded later)."""
        if len(self._choices) <= _EXHAUSTIVE:
            return _closest(word, self._choices)
        ranked = _closest(word, self._near(word))
        if ranked:
            return ranked
        return _closest(word, self._alike(word))

    def _near(self, word: str) -> list[str]:
        """Choices one deletion away from the word, or the word one deletion
        away from them (both ways: a substitution or a swap is one each)."""
        if self._deletions is None:
            index: dict[str, list[str]] = {}
            for name in self._choices:
                for variant in _deleted(name):
                    index.setdefault(variant, []).append(name)
            self._deletions = index
        found: set[str] = set()
        for variant in _deleted(word):
            found.update(self._deletions.get(variant, ()))
        return sorted(found)[: _SCORED * 8]

    def _alike(self, word: str) -> list[str]:
        """Choices sharing at least half of the word's bigrams, most first.
        Any such choice appears in one of the shortest posting lists (all
        but `need - 1` of them), so only those are read."""
        if self._bigrams is None:
            index: dict[str, list[str]] = {}
            for name in self._choices:
                for gram in _grams(name):
                    index.setdefault(gram, []).append(name)
            self._bigrams = index
        grams = _grams(word)
        need = max(1, math.ceil(len(grams) / 2))
        postings = sorted((self._bigrams.get(g, []) for g in grams), key=len)
        pool = set[str]().union(*postings[: len(grams) - need + 1])
        looks = min(_LOOKS_PER_WORD, self._looks_left)
        if len(pool) > looks:
            pool = set(sorted(pool)[:looks])  # a cut that does not depend on hashing
        self._looks_left -= len(pool)
        known = self._grams
        shared: list[tuple[int, str]] = []
        for name in pool:
            theirs = known.get(name)
            if theirs is None:
                theirs = known[name] = _grams(name)
            common = len(grams & theirs)
            if common >= need:
                shared.append((-common, name))
        shared.sort()
        return [name for _, name in shared[:_SCORED]]


def _closest(word: str, choices: Iterable[str]) -> tuple[str, ...]:
    """The two choices closest to `word` by difflib's ratio (at least 0.6),
    best first, ties in name order."""
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(word)
    scored: list[tuple[float, str]] = []
    for choice in choices:
        matcher.set_seq1(choice)
        # The quick upper bounds first, as difflib.get_close_matches does.
        if matcher.real_quick_ratio() < _CLOSE or matcher.quick_ratio() < _CLOSE:
            continue
        score = matcher.ratio()
        if score >= _CLOSE:
            scored.append((-score, choice))
    scored.sort()
    return tuple(choice for _, choice in scored[:2])


def _deleted(word: str) -> list[str]:
    return [word, *(word[:i] + word[i + 1 :] for i in range(len(word)))]


def _grams(word: str) -> frozenset[str]:
    if len(word) < 2:
        return frozenset((word,))
    return frozenset(word[i : i + 2] for i in range(len(word) - 1))


_DECIMAL = re.compile(r"[-+]?[0-9]+")
# Longer numbers than this are refused without being parsed (Python refuses
# more than 4,300 digits anyway, and no setting needs 30).
_LONGEST_NUMBER = 30
# What no URL holds: an HTTP client refuses it, or it would end a header.
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PORT = re.compile(r"[0-9]{1,5}")


def _url_trouble(text: str) -> str | None:
    """What is plainly wrong with `text` as an http(s) URL, or None: another
    scheme, a control character, no host, a port that is no port. An IPv6
    address in brackets is left to the probe, which reports an invalid one
    as unknown. (topology may not import urllib: these few checks are done
    by hand.)"""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("http", "https"):
        return "expected an http:// or https:// URL"
    if _URL_CONTROL.search(text):
        return "a URL holds no control characters: percent-encode them"
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    hostport = rest[:end].rpartition("@")[2]
    if hostport.startswith("["):
        return None
    host, colon, port = hostport.partition(":")
    if not host:
        return "expected a host after '://'"
    if colon and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
        return "expected a port from 1 to 65535 after the host"
    return None


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
                self.problem(key, path, f"unknown key {quote(name)}{suggest(name, allowed)}")
            else:
                first = key.line
                self.problem(
                    merge,
                    path,
                    f"unknown key {quote(name)} (merged from line {first}){suggest(name, allowed)}",
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
                self.problem(key, path, f"duplicate key {quote(name)} (first at line {first})")
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

    def integer(
        self,
        node: YamlNode,
        path: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """A whole number written in decimal, at least `minimum` and at most
        `maximum` when given (a number of any length is refused as too large,
        never parsed at length)."""
        if isinstance(node, ScalarNode) and node.tag == INT:
            digits = node.value.replace("_", "")
            if _DECIMAL.fullmatch(digits):
                if len(digits) > _LONGEST_NUMBER:
                    value = -math.inf if digits.startswith("-") else math.inf
                else:
                    value = int(digits, 10)
                shown = describe(node)
                if minimum is not None and value < minimum:
                    self.problem(node, path, f"must be at least {minimum}, got {shown}")
                    return None
                if maximum is not None and value > maximum:
                    self.problem(node, path, f"must be at most {maximum}, got {shown}")
                    return None
                if isinstance(value, int):
                    return value
                self.problem(node, path, f"{shown} is too large a number")
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
            self.problem(node, path, f"bad regular expression {quote(text)}: {err}")
            return None

    def url(self, node: YamlNode, path: str) -> str | None:
        """An http:// or https:// URL with a host (and a port from 1 to
        65535 if it names one), free of control characters. A problem quotes
        it redacted (see `redact_url`): URLs carry passwords and tokens."""
        text = self.string(node, path, "a URL")
        if text is None:
            return None
        shown = quote(redact_url(text))
        trouble = _url_trouble(text)
        if trouble is not None:
            self.problem(node, path, f"{trouble}, got {shown}")
            return None
        return text

    def duration(
        self,
        node: YamlNode,
        path: str,
        *,
        positive: bool = True,
        minimum: float | None = None,
        maximum: float = MAX_DURATION_S,
    ) -> float | None:
        """Seconds from a duration string such as `10m` (see `parse_duration`):
        more than zero when `positive`, and between `minimum` and `maximum`
        (by default, at most `MAX_DURATION_S`)."""
        text = node.value if isinstance(node, ScalarNode) and node.tag != NULL else None
        try:
            if text is None:
                raise ValueError
            seconds = parse_duration(text)
        except DurationTooLong:
            seconds = math.inf
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
        if minimum is not None and seconds < minimum:
            self.problem(
                node,
                path,
                f"duration {describe(node)} is too short: at least {format_duration(minimum)}",
            )
            return None
        if seconds > maximum:
            self.problem(
                node,
                path,
                f"duration {describe(node)} is too long: at most {format_duration(maximum)}",
            )
            return None
        return seconds

    def items(
        self, entries: dict[str, tuple[YamlNode, YamlNode]]
    ) -> Iterator[tuple[str, YamlNode]]:
        """(key, value node) pairs of a mapping read by `mapping`."""
        for name, (_, value) in entries.items():
            yield name, value
