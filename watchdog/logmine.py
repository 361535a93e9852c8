"""Log templates: lines grouped by the message they print, with the variable
parts (numbers, addresses, ids) masked, by drain3's Drain miner; and the
miner's state as bytes, so that a restart does not relearn.

Masks are applied in order before mining. The built-in ones (`MASKS`):

- ``uuid``: 8-4-4-4-12 hex UUIDs -> ``<UUID>``
- ``ip``: IPv4 addresses, with an optional ``:port`` -> ``<IP>``
- ``hex``: ``0x``-prefixed hex, and runs of 8+ hex digits holding both a
  digit and a letter (hashes, trace ids) -> ``<HEX>``
- ``duration``: a number with a time unit, ``120ms``, ``1.5s``, ``1m30s``
  -> ``<DURATION>``
- ``number``: an integer or decimal standing on its own (not inside a word
  like ``md5`` or ``v2``) -> ``<NUMBER>``

Drain itself also treats any token holding a digit as variable when it
generalises a template, so masks chiefly make templates readable and group
lines whose first tokens vary.

Before any of them, secrets are masked, always (`redact_secrets`): the value
of a `password=`, `passwd`, `secret`, `token`, `api_key`/`apikey` or
`access_key` field, an `Authorization` header's credentials, a bearer token,
and the password and query values of a URL become ``***``. A template, and
so the reason of an anomaly that quotes it, never holds a secret a line
carried.
"""

from __future__ import annotations

import copy
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from drain3 import TemplateMiner
from drain3.drain import LogCluster, Node
from drain3.masking import AbstractMaskingInstruction, MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from topology.document import MASK, redact_urls

__all__ = ["DEFAULT_MASKS", "MASKS", "Miner", "MinerConfig", "Template", "redact_secrets"]

MASKS: Mapping[str, str] = MappingProxyType(
    {
        "uuid": r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
        "ip": r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\.?\w)",
        "hex": (
            r"\b0[xX][0-9a-fA-F]+\b"
            r"|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"
        ),
        "duration": r"(?<![\w.])(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+(?![\w.])",
        "number": r"(?<![A-Za-z0-9.])[-+]?\d+(?:\.\d+)?(?![A-Za-z0-9])",
    }
)
"""The built-in masks: name -> regex. A match is replaced by ``<NAME>``."""

DEFAULT_MASKS: tuple[str, ...] = ("uuid", "ip", "hex", "duration", "number")
"""The masks a miner applies unless told otherwise, in the order applied."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STATE_VERSION = 1

# Secrets in a log line. A cheap look first: most lines hold none of these
# words, and skip the rest.
_SECRET_HINT = re.compile(
    r"(?i)passw|pwd|secret|token|api.?key|access.?key|bearer|authorization|://"
)
# `Authorization: Bearer abc`, `Proxy-Authorization: Basic abc`: the
# credentials, whatever the scheme.
_AUTHORIZATION = re.compile(
    r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(bearer|basic|digest|token|negotiate|ntlm)\s+)?[^\s\"',;]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
# A field whose name holds one of the words (`db_password=`, `X-Auth-Token:`,
# `"client_secret": "..."`): its value, quoted or not.
_FIELD = re.compile(
    r"(?i)\b([\w.-]*?(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|apikey|access[_-]?key)"
    r"[\w.-]*[\"']?\s*[:=]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s\"',;&]+)"
)


def redact_secrets(text: str) -> str:
    """`text` with the secrets it may hold replaced by ``***``: field values
    named like secrets (password, passwd, pwd, secret, token, api_key,
    apikey, access_key, in any case, within a longer name too),
    Authorization credentials, bearer tokens, and a URL's password and
    query values. Errs on the side of masking."""
    if not _SECRET_HINT.search(text):
        return text
    text = _AUTHORIZATION.sub(_credentials, text)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    text = _FIELD.sub(_field, text)
    return redact_urls(text)


def _credentials(match: re.Match[str]) -> str:
    scheme = match.group(2)
    return f"{match.group(1)}{scheme} {MASK}" if scheme else f"{match.group(1)}{MASK}"


def _field(match: re.Match[str]) -> str:
    value = match.group(0)[len(match.group(1)) :]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{quote}{MASK}{quote}"


class _SecretMask(AbstractMaskingInstruction):
    """`redact_secrets` as the miner's first mask."""

    def __init__(self) -> None:
        super().__init__("SECRET")

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        return redact_secrets(content)


@dataclass(frozen=True, slots=True)
class MinerConfig:
    """How lines are grouped into templates.

    `masks` holds, in the order applied, names of built-in masks (keys of
    `MASKS`) and user masks given as ``(name, regex)`` pairs; a user mask's
    matches read ``<NAME>`` in templates. A plain string is always a built-in
    name, so a user regex can never be mistaken for one. `sim_th` is the
    share of a template's fixed tokens a line must repeat to join it;
    `depth` is Drain's tree depth (>= 3); at most `max_clusters` templates
    are kept, the least recently seen one being forgotten for a new one;
    `extra_delimiters` split tokens besides whitespace. Invalid settings
    raise ValueError on construction.
    """

    masks: tuple[str | tuple[str, str], ...] = DEFAULT_MASKS
    sim_th: float = 0.4
    depth: int = 4
    max_clusters: int = 1000
    extra_delimiters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _instructions(self.masks)  # raises on unknown names and bad regexes
        if not 0.0 <= self.sim_th <= 1.0:
            raise ValueError(f"sim_th must be within [0, 1], not {self.sim_th}")
        if self.depth < 3:
            raise ValueError(f"depth must be at least 3, not {self.depth}")
        if self.max_clusters < 1:
            raise ValueError(f"max_clusters must be at least 1, not {self.max_clusters}")


@dataclass(frozen=True, slots=True)
class Template:
    """The template a line was grouped into: its id (stable for the
    template's life, across state restores), its current text, and whether
    this line created it."""

    id: int
    text: str
    new: bool


def _instructions(
    masks: tuple[str | tuple[str, str], ...],
) -> list[AbstractMaskingInstruction]:
    out: list[AbstractMaskingInstruction] = [_SecretMask()]
    for mask in masks:
        if isinstance(mask, str):
            if mask not in MASKS:
                raise ValueError(f"unknown mask {mask!r}; built-in masks: {', '.join(MASKS)}")
            name, pattern = mask, MASKS[mask]
        else:
            if len(mask) != 2:
                raise ValueError(f"a user mask is a (name, regex) pair, not {mask!r}")
            name, pattern = mask
            if not _NAME.match(name):
                raise ValueError(f"mask name {name!r} is not an identifier")
        try:
            out.append(MaskingInstruction(pattern, name.upper()))
        except re.error as e:
            raise ValueError(f"mask {name!r}: bad regex {pattern!r}: {e}") from None
    return out


class Miner:
    """Groups lines into templates, forgetting the least recently seen
    template beyond `config.max_clusters`.

    `state` is the bytes of an earlier `state()`: templates, their ids, and
    their recency are restored, so the same lines map to the same ids after
    a restart. Bytes that are not such a state raise ValueError.
    """

    __slots__ = ("_config", "_tm", "version")

    def __init__(self, config: MinerConfig = MinerConfig(), state: bytes | None = None) -> None:
        self._config = config
        # Goes up whenever a template is created or changes: when `state()`
        # is worth saving again (hit counts and recency alone are not).
        self.version = 0
        tmc = TemplateMinerConfig()
        tmc.drain_sim_th = config.sim_th
        tmc.drain_depth = config.depth
        tmc.drain_max_clusters = config.max_clusters
        tmc.drain_extra_delimiters = list(config.extra_delimiters)
        tmc.masking_instructions = _instructions(config.masks)
        tmc.mask_prefix, tmc.mask_suffix = "<", ">"
        # No persistence handler: the daemon stores `state()` in its own
        # database, and drain3's handlers would snapshot on every change.
        self._tm = TemplateMiner(persistence_handler=None, config=tmc)
        if state is not None:
            self._restore(state)

    def add(self, line: str) -> Template:
        """Group one line; return its template."""
        cluster, change = self._tm.drain.add_log_message(self._tm.masker.mask(line))
        if change != "none":
            self.version += 1
        return Template(cluster.cluster_id, cluster.get_template(), change == "cluster_created")

    def mask(self, line: str) -> str:
        """`line` as the miner sees it: secrets, then the configured masks,
        masked."""
        masked: str = self._tm.masker.mask(line)
        return masked

    def template(self, template_id: int) -> str | None:
        """The current text of a template still kept, else None."""
        cluster = self._tm.drain.id_to_cluster.get(template_id)
        return None if cluster is None else cluster.get_template()

    def __len__(self) -> int:
        """The number of templates kept."""
        return len(self._tm.drain.id_to_cluster)

    def state(self) -> bytes:
        """Everything learnt, as compact bytes for `Miner(config, state)`."""
        drain = self._tm.drain
        # A copy popped empty gives the clusters least recently used first,
        # through cachetools' public API; reinserted in that order they keep
        # their eviction order.
        lru = copy.copy(drain.id_to_cluster)
        clusters = []
        while len(lru):
            _, cluster = lru.popitem()
            if cluster is not None:
                clusters.append(
                    [cluster.cluster_id, cluster.size, list(cluster.log_template_tokens)]
                )
        data = {
            "v": _STATE_VERSION,
            "depth": drain.log_cluster_depth,
            "counter": drain.clusters_counter,
            "clusters": clusters,
            "tree": _dump_node(drain.root_node, set(drain.id_to_cluster)),
        }
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 6)

    def _restore(self, state: bytes) -> None:
        try:
            data = json.loads(zlib.decompress(state))
            if data["v"] != _STATE_VERSION:
                raise ValueError(f"unknown version {data['v']!r}")
            counter = int(data["counter"])
            clusters = []
            for cid, size, tokens in data["clusters"]:
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise ValueError("template tokens are not strings")
                cluster = LogCluster(tokens, int(cid))
                cluster.size = int(size)
                clusters.append(cluster)
            same_depth = data["depth"] == self._config.depth
            root = _load_node(data["tree"]) if same_depth else None
        except (ValueError, TypeError, KeyError, zlib.error, RecursionError) as e:
            raise ValueError(f"not a template miner state: {e}") from None
        drain = self._tm.drain
        drain.clusters_counter = counter
        for cluster in clusters[-self._config.max_clusters :]:
            drain.id_to_cluster[cluster.cluster_id] = cluster
        if root is not None:
            drain.root_node = root
        else:
            # Saved with another depth: the tree's shape depends on it, so it
            # is rebuilt from the templates.
            for cluster in clusters:
                drain.add_seq_to_prefix_tree(drain.root_node, cluster)


def _dump_node(node: Node, alive: set[int]) -> list[Any]:
    return [
        [c for c in node.cluster_ids if c in alive],
        {key: _dump_node(child, alive) for key, child in node.key_to_child_node.items()},
    ]


def _load_node(data: Any) -> Node:
    ids, children = data
    if not isinstance(children, dict):
        raise ValueError("tree node children are not a mapping")
    node = Node()
    node.cluster_ids = [int(c) for c in ids]
    node.key_to_child_node = {str(k): _load_node(v) for k, v in children.items()}
    return node
