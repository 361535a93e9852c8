"""The `sources:` of a topology file: which systems the estate is imported
from, read and merged under the file's own nodes (the overlay).

    sources:
      - kubernetes: cluster.json          # kubectl get ... -A -o json
        farm_label: topology.kubernetes.io/zone
      - kubernetes: {kubeconfig: ~/.kube/config, context: prod}   # live
        refresh: 5m
      - compose: [docker-compose.yml, docker-compose.prod.yml]
        project: shop
      - backstage: catalog/               # catalog-info.yaml files
      - backstage: {url: https://backstage.example.com, token_env: BACKSTAGE_TOKEN}

A path (or a list of them) is read from disk, relative to the topology
file. A mapping names a live source, read through the `fetch` function the
caller gives (the daemon and the command line do: the network is theirs);
`refresh` says how often the daemon reads a live source again (default
5m). Files are read whenever the topology is (every reload).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from topology.document import Document, InvalidInput, Problem, Reader, quote, read_bytes
from topology.findings import Finding
from topology.sources import Imported
from topology.sources.merge import merge
from topology.yamltree import MappingNode, ScalarNode, YamlNode

__all__ = [
    "DEFAULT_REFRESH_S",
    "KINDS",
    "Fetch",
    "SourceSpec",
    "expand",
    "import_source",
    "read_sources",
]

_Loader: type[yaml.CSafeLoader | yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_REFRESH_S = 300.0
REFRESH_S = (10.0, 86400.0)


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of source: the options it takes, what a live source names,
    and how its files are parsed."""

    options: tuple[str, ...]
    live_keys: tuple[str, ...]
    parse: Callable[[str, bytes], list[tuple[str, Any]]]
    hint: str


def _json(source: str, data: bytes) -> list[tuple[str, Any]]:
    try:
        return [(source, json.loads(data))]
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(
            [
                Problem(
                    source,
                    None,
                    "",
                    f"not JSON ({err}): export it with kubectl get nodes,pods,replicasets,"
                    "deployments,statefulsets,daemonsets,poddisruptionbudgets -A -o json",
                )
            ]
        ) from None


def _yaml_documents(source: str, data: bytes) -> list[tuple[str, Any]]:
    try:
        return [(source, d) for d in yaml.load_all(data, Loader=_Loader) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise InvalidInput([Problem(source, line, "", f"not YAML: {problem}")]) from None


KINDS: Mapping[str, _Kind] = MappingProxyType(
    {
        "kubernetes": _Kind(
            ("farm_label",), ("kubeconfig", "context"), _json, "a kubectl -o json export"
        ),
        "compose": _Kind(("project",), (), _yaml_documents, "docker-compose files"),
        "backstage": _Kind(
            ("critical_annotation",),
            ("url", "token_env"),
            _yaml_documents,
            "catalog-info.yaml files or folders",
        ),
    }
)
_COMMON = ("refresh",)

# A live source's documents: (kind, what the file says of it) -> documents.
Fetch = Callable[[str, Mapping[str, str]], list[tuple[str, Any]]]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One entry of `sources:`: its kind, its files (resolved) or its live
    settings, its options, and the line it was written at."""

    kind: str
    paths: tuple[str, ...] = ()
    live: Mapping[str, str] | None = None
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    refresh_s: float = DEFAULT_REFRESH_S
    line: int = 0

    @property
    def origin(self) -> str:
        """How messages name it: `kubernetes cluster.json`, `kubernetes (live)`."""
        where = " ".join(Path(p).name or p for p in self.paths) if self.paths else "(live)"
        return f"{self.kind} {where}"


def read_sources(reader: Reader, node: YamlNode, base: Path) -> list[SourceSpec]:
    """The entries of a `sources:` list, problems recorded in `reader`;
    paths are made absolute against `base` (the topology file's folder)."""
    items = reader.sequence(node, "sources", "a list such as [{kubernetes: cluster.json}]")
    out = []
    for i, item in enumerate(items or ()):
        path = f"sources[{i}]"
        spec = _read_one(reader, item, path, base)
        if spec is not None:
            out.append(spec)
    return out


def _read_one(reader: Reader, item: YamlNode, path: str, base: Path) -> SourceSpec | None:
    first = item.value[0][0] if isinstance(item, MappingNode) and item.value else None
    kind = first.value if isinstance(first, ScalarNode) else ""
    if kind not in KINDS:
        reader.problem(
            first or item,
            path,
            f"unknown source {quote(kind)}: one of {', '.join(KINDS)} first, "
            "e.g. {kubernetes: cluster.json}",
        )
        return None
    spec = KINDS[kind]
    fields = reader.mapping(item, path, (kind, *spec.options, *_COMMON))
    if fields is None:
        return None
    ok = True
    options: dict[str, str] = {}
    for key in spec.options:
        if key in fields:
            text = reader.string(fields[key][1], f"{path}.{key}")
            ok = ok and text is not None
            if text is not None:
                options[key] = text
    refresh = DEFAULT_REFRESH_S
    if "refresh" in fields:
        got = reader.duration(
            fields["refresh"][1], f"{path}.refresh", minimum=REFRESH_S[0], maximum=REFRESH_S[1]
        )
        ok = ok and got is not None
        refresh = got or refresh
    value = fields[kind][1]
    paths: list[str] = []
    live: dict[str, str] | None = None
    if isinstance(value, MappingNode) or (
        isinstance(value, ScalarNode) and value.tag.endswith("null")
    ):
        if not spec.live_keys:
            reader.problem(
                value, f"{path}.{kind}", f"a {kind} source is read from files: name them"
            )
            return None
        live = {}
        for key, node in reader.items(
            reader.mapping(value, f"{path}.{kind}", spec.live_keys) or {}
        ):
            text = reader.string(node, f"{path}.{kind}.{key}")
            ok = ok and text is not None
            if text is not None:
                live[key] = text
        if kind == "backstage" and "url" not in live:
            reader.problem(value, f"{path}.{kind}", "a live backstage source needs its url")
            ok = False
    else:
        names = value.value if not isinstance(value, ScalarNode) else [value]
        for name_node in names:
            text = reader.string(name_node, f"{path}.{kind}", f"a path to {spec.hint}")
            ok = ok and text is not None
            if text is not None:
                paths.append(str(base / Path(text).expanduser()))
        if not paths and ok:
            reader.problem(value, f"{path}.{kind}", f"name {spec.hint}")
            ok = False
    if not ok:
        return None
    return SourceSpec(
        kind,
        tuple(paths),
        MappingProxyType(live) if live is not None else None,
        MappingProxyType(options),
        refresh,
        item.line,
    )


def import_source(
    spec: SourceSpec, fetch: Fetch | None = None, read: Callable[[str], bytes] = read_bytes
) -> Imported:
    """What the source says: its files read (by `read`) and parsed (a
    folder: its `.yaml`/`.yml`/`.json` files, sorted), or its live documents
    fetched, then converted. Raises `InvalidInput` naming the file or the
    source."""
    kind = KINDS[spec.kind]
    documents: list[tuple[str, Any]] = []
    if spec.live is not None:
        if fetch is None:
            raise InvalidInput(
                [Problem(spec.origin, spec.line or None, "", "a live source needs the network")]
            )
        documents = fetch(spec.kind, spec.live)
    for name in spec.paths:
        for file in _files(name):
            documents.extend(kind.parse(file if file != "-" else "<stdin>", read(file)))
    convert = importlib.import_module(f"topology.sources.{spec.kind}").convert
    result: Imported = convert(documents, **dict(spec.options))
    return result


def _files(name: str) -> list[str]:
    path = Path(name)
    if name != "-" and path.is_dir():
        found = sorted(
            str(p)
            for p in path.rglob("*")
            if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
        )
        if not found:
            raise InvalidInput([Problem(name, None, "", "a folder with no .yaml or .json file")])
        return found
    return [name]


def expand(
    document: Document, fetch: Fetch | None = None
) -> tuple[Document, tuple[Finding, ...], tuple[SourceSpec, ...]]:
    """`document` with the nodes of its `sources:` merged under its own (see
    `topology.sources.merge`): the merged document, the findings and the
    sources read. A document without `sources:` is returned as it is.
    Raises `InvalidInput` with every problem: of the list itself, of each
    source's files, of nodes given twice."""
    root = document.root
    node = None
    if isinstance(root, MappingNode):
        node = next(
            (v for k, v in root.value if isinstance(k, ScalarNode) and k.value == "sources"), None
        )
    if node is None:
        return document, (), ()
    reader = Reader(document.source)
    base = Path(document.source).resolve().parent if not document.source.startswith("<") else Path()
    specs = read_sources(reader, node, base)
    problems = list(reader.problems)
    imports: list[tuple[Imported, int]] = []
    for spec in specs:
        try:
            imports.append((import_source(spec, fetch), spec.line))
        except InvalidInput as err:
            # Where the file names the source, then what is wrong with it.
            problems.extend(
                Problem(document.source, spec.line, f"sources ({spec.origin})", str(p))
                for p in err.problems
            )
    if problems:
        raise InvalidInput(problems)
    merged, findings, twice = merge(document, imports)
    if twice:
        raise InvalidInput(twice)
    return merged, tuple(findings), tuple(specs)
