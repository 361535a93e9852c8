"""Backstage: the components, resources and systems of a software catalog
and what they depend on, from catalog entities (parsed YAML or JSON): a
catalog-info.yaml's documents, each an entity, or the catalog API's answer
(`/api/catalog/entities`: a list of entities; `/entities/by-query`: a
mapping whose `items` are the entities).

- **What becomes a node.** Entities of `apiVersion: backstage.io/...` and
  kind Component, Resource or System; other kinds (API, Group, User,
  Domain, Location, Template, and other plugins' kinds) are ignored. Its
  `kind` is the entity's kind in lower case; its description says the kind,
  `spec.type` and the entity's own description (`component (service): moves
  every order`); its labels are `owner` and `system` as written in `spec`.
- **Names.** An entity of the `default` namespace is named by its name
  (`artist-web`); one of another namespace `NAMESPACE/NAME`
  (`payments/ledger`); entities that would get one name (two kinds sharing
  a namespace and a name, compared without case as Backstage compares
  refs) are named by their full ref, `KIND:NAMESPACE/NAME`
  (`component:default/ledger`).
- **depends_on.** From `spec.dependsOn` (entity refs; Backstage gives them
  no default kind, so a ref without one is refused by Backstage: here it is
  resolved if exactly one Component or Resource has that name, with a
  finding asking for the kind; the namespace defaults to the entity's own)
  and from `relations` of type `dependsOn` (their `targetRef`, or the older
  `target: {kind, namespace, name}`), which the catalog API adds for every
  `spec.dependsOn`: the two are merged without repeats. Every dependency is
  hard: the catalog does not say which ones a service survives without
  (say so in the overlay with `soft: true`). A dependency on an entity
  that is not a Component, Resource or System of the documents is a
  finding (`unknown-entity`) and is left out: Backstage accepts such a
  dangling ref, so it is a warning.
- **Systems are not dependencies.** `spec.system` groups components and
  resources for people; a component does not stop when another of its
  system does. It is kept as the `system` label (for routing alerts); the
  System itself is a node nothing needs, which an overlay can give
  requirements.
- **critical.** The annotation `critical_annotation` (default
  `watchdog.io/critical`) with the value `"true"` marks a node critical;
  another value than `"true"` or `"false"` is a finding.

The same entity twice (kind, namespace and name, without case) is a finding
(`duplicate-entity`, an error) and the first one is kept. Bad input (an
entity that is not a mapping, without kind or `metadata.name`, values of
the wrong type) raises `InvalidInput` naming the source and the path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from topology.document import Problem, quote
from topology.findings import Finding, Severity
from topology.sources import Imported
from topology.sources._input import Input, kind_of, origin, refuse

__all__ = ["convert"]

_KINDS = frozenset({"component", "resource", "system"})
_DEFAULT_NAMESPACE = "default"
# What a spec.dependsOn without a kind may mean (Backstage's system model:
# components and resources depend on components and resources).
_DEPENDED_ON = ("component", "resource")

_Key = tuple[str, str, str]  # kind, namespace, name; lower case


@dataclass(slots=True)
class _Entity:
    kind: str
    namespace: str
    name: str
    raw: Mapping[str, Any]
    read: Input
    path: str
    node: str = ""

    @property
    def key(self) -> _Key:
        return (self.kind.lower(), self.namespace.lower(), self.name.lower())

    @property
    def at(self) -> str:
        """The prefix of the paths inside the entity (`items[3].`)."""
        return f"{self.path}." if self.path else ""

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}:{self.namespace}/{self.name}"

    def field(self, section: str) -> Mapping[str, Any]:
        value = self.raw.get(section)
        return value if isinstance(value, Mapping) else {}


def convert(
    documents: Sequence[tuple[str, Any]], *, critical_annotation: str = "watchdog.io/critical"
) -> Imported:
    """The components, resources and systems of the catalog entities in
    `documents` ((source name, parsed document) pairs), as the module
    docstring says. Raises `InvalidInput` listing every problem."""
    problems: list[Problem] = []
    findings: list[Finding] = []
    entities: dict[_Key, _Entity] = {}
    for source, document in documents:
        read = Input(problems, source)
        for path, item in _items(read, document):
            entity = _entity(read, item, path)
            if entity is None:
                continue
            first = entities.setdefault(entity.key, entity)
            if first is not entity:
                findings.append(
                    _finding(
                        "duplicate-entity",
                        [entity.ref],
                        f"{entity.ref} is defined twice ({first.read.source} and "
                        f"{entity.read.source}): the first is kept",
                        "error",
                    )
                )
    refuse(problems)
    _name(entities.values())
    nodes: dict[str, dict[str, Any]] = {}
    for entity in entities.values():
        if entity.read.name(entity.node, f"{entity.at}metadata.name", entity.kind) is not None:
            nodes[entity.node] = _body(entity, entities, critical_annotation, findings)
    refuse(problems)
    return Imported(
        nodes={name: nodes[name] for name in sorted(nodes)},
        findings=tuple(sorted(findings, key=lambda f: (f.severity != "error", f.rule, f.nodes))),
        origin=origin("backstage", documents),
    )


def _items(read: Input, document: Any) -> list[tuple[str, Any]]:
    """The entities of one document, each with its path."""
    if document is None:
        return []  # an empty YAML document (a trailing `---`)
    if isinstance(document, list | tuple):
        return [(f"[{i}]", item) for i, item in enumerate(document)]
    if isinstance(document, Mapping) and "items" in document and "kind" not in document:
        items = read.sequence(document["items"], "items") or ()
        return [(f"items[{i}]", item) for i, item in enumerate(items)]
    if isinstance(document, Mapping):
        return [("", document)]
    read.problem("", f"expected an entity or a list of entities, got {kind_of(document)}")
    return []


def _entity(read: Input, item: Any, path: str) -> _Entity | None:
    """The entity at `path` if it is of a kind that becomes a node."""
    at = f"{path}." if path else ""
    body = read.mapping(item, path or "entity", required=True)
    if body is None:
        return None
    api = read.text(body.get("apiVersion"), f"{at}apiVersion", required=True)
    kind = read.text(body.get("kind"), f"{at}kind", required=True)
    meta = read.mapping(body.get("metadata"), f"{at}metadata", required=True)
    name = namespace = None
    if meta is not None:
        name = read.text(meta.get("name"), f"{at}metadata.name", required=True)
        namespace = read.text(meta.get("namespace"), f"{at}metadata.namespace")
        read.mapping(meta.get("annotations"), f"{at}metadata.annotations")
    read.mapping(body.get("spec"), f"{at}spec")
    if api is None or kind is None or name is None:
        return None
    if not api.startswith("backstage.io/") or kind.lower() not in _KINDS:
        return None
    return _Entity(kind, namespace or _DEFAULT_NAMESPACE, name, body, read, path)


def _name(entities: Iterable[_Entity]) -> None:
    """Each entity's node name (the module docstring's rule)."""
    by_place: dict[tuple[str, str], list[_Entity]] = defaultdict(list)
    for entity in entities:
        by_place[entity.namespace.lower(), entity.name.lower()].append(entity)
    for same in by_place.values():
        for entity in same:
            if len(same) > 1:
                entity.node = entity.ref
            elif entity.namespace == _DEFAULT_NAMESPACE:
                entity.node = entity.name
            else:
                entity.node = f"{entity.namespace}/{entity.name}"


def _body(
    entity: _Entity,
    entities: Mapping[_Key, _Entity],
    critical_annotation: str,
    findings: list[Finding],
) -> dict[str, Any]:
    read, at = entity.read, entity.at
    kind, spec, meta = entity.kind.lower(), entity.field("spec"), entity.field("metadata")
    kind_type = read.text(spec.get("type"), f"{at}spec.type")
    about = read.text(meta.get("description"), f"{at}metadata.description")
    description = f"{kind} ({kind_type})" if kind_type else kind
    body: dict[str, Any] = {"kind": kind}
    if _critical(entity, critical_annotation, findings):
        body["critical"] = True
    body["description"] = f"{description}: {about}" if about else description
    labels = {}
    for key in ("owner", "system"):
        value = read.text(spec.get(key), f"{at}spec.{key}")
        if value:
            labels[key] = value
    if labels:
        body["labels"] = labels
    needs = _depends_on(entity, entities, findings)
    if needs:
        body["depends_on"] = needs
    return body


def _critical(entity: _Entity, annotation: str, findings: list[Finding]) -> bool:
    annotations = entity.field("metadata").get("annotations")
    value = annotations.get(annotation) if isinstance(annotations, Mapping) else None
    text = str(value).strip().lower() if value is not None else None
    if text not in (None, "true", "false"):
        findings.append(
            _finding(
                "critical-annotation",
                [entity.node],
                f"{entity.node}: {annotation} is {quote(str(value))}: only 'true' marks a "
                "node critical, so it is not",
            )
        )
    return text == "true"


def _depends_on(
    entity: _Entity, entities: Mapping[_Key, _Entity], findings: list[Finding]
) -> list[str]:
    """The node names `entity` depends on, in the order written, once each."""
    read, at = entity.read, entity.at
    found: dict[str, None] = {}

    def add(key: _Key | None, written: str) -> None:
        target = entities.get(key) if key is not None else None
        if target is entity:
            return  # depending on itself says nothing
        if target is None:
            findings.append(
                _finding(
                    "unknown-entity",
                    [entity.node],
                    f"{entity.node} depends on {written}, which is not a Component, Resource "
                    "or System of the catalog: left out",
                )
            )
            return
        found.setdefault(target.node, None)

    refs = read.sequence(entity.field("spec").get("dependsOn"), f"{at}spec.dependsOn") or ()
    for i, ref in enumerate(refs):
        text = read.text(ref, f"{at}spec.dependsOn[{i}]", required=True)
        if text is not None:
            add(_spec_ref(entity, text, entities, findings), text)
    relations = read.sequence(entity.raw.get("relations"), f"{at}relations") or ()
    for i, relation in enumerate(relations):
        where = f"{at}relations[{i}]"
        fields = read.mapping(relation, where, required=True)
        if fields is None or fields.get("type") != "dependsOn":
            continue
        key, written = _relation_target(read, fields, where)
        if written:
            add(key, written)
    return list(found)


def _parse_ref(text: str, namespace: str) -> tuple[str | None, str, str]:
    """`[kind:][namespace/]name` as (kind or None, namespace, name)."""
    kind, colon, rest = text.partition(":")
    if not colon:
        kind, rest = "", text
    space, slash, name = rest.partition("/")
    if not slash:
        space, name = namespace, rest
    return (kind or None, space, name)


def _spec_ref(
    entity: _Entity, text: str, entities: Mapping[_Key, _Entity], findings: list[Finding]
) -> _Key | None:
    kind, namespace, name = _parse_ref(text, entity.namespace)
    if kind is not None:
        return (kind.lower(), namespace.lower(), name.lower())
    candidates = [
        key
        for key in ((k, namespace.lower(), name.lower()) for k in _DEPENDED_ON)
        if key in entities
    ]
    if len(candidates) != 1:
        return None
    findings.append(
        _finding(
            "ref-without-kind",
            [entity.node],
            f"{entity.node}: spec.dependsOn {quote(text)} names no kind, which Backstage "
            f"refuses: taken as {candidates[0][0]}:{text}; write the kind",
        )
    )
    return candidates[0]


def _relation_target(
    read: Input, fields: Mapping[str, Any], where: str
) -> tuple[_Key | None, str | None]:
    """A relation's target, from `targetRef` or the older `target`."""
    if "targetRef" in fields:
        text = read.text(fields["targetRef"], f"{where}.targetRef", required=True)
        if text is None:
            return None, None
        kind, namespace, name = _parse_ref(text, _DEFAULT_NAMESPACE)
        key = (kind.lower(), namespace.lower(), name.lower()) if kind else None
        return key, text
    target = read.mapping(fields.get("target"), f"{where}.target", required=True)
    if target is None:
        return None, None
    parts = [
        read.text(target.get(part), f"{where}.target.{part}", required=True)
        for part in ("kind", "namespace", "name")
    ]
    if None in parts:
        return None, None
    kind, namespace, name = (str(p) for p in parts)
    return (kind.lower(), namespace.lower(), name.lower()), f"{kind}:{namespace}/{name}"


def _finding(
    rule: str, nodes: Sequence[str], message: str, severity: Severity = "warning"
) -> Finding:
    return Finding(rule, severity, tuple(nodes), message)
