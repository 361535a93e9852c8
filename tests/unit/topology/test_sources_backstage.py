"""The Backstage importer: components, resources and systems become nodes,
their dependsOn (spec or relations) depends_on, the critical annotation
critical; dangling refs are findings, bad entities refused. Every result
loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from imported import as_topology

from topology import InvalidInput
from topology.sources import Imported
from topology.sources.backstage import convert

DATA = Path(__file__).resolve().parents[2] / "data" / "sources" / "backstage"
CATALOG = DATA / "catalog-info.yaml"
API = DATA / "entities.json"


def catalog_files() -> list[tuple[str, Any]]:
    return [(str(CATALOG), d) for d in yaml.safe_load_all(CATALOG.read_text())]


def imported(*documents: tuple[str, Any], **options: str) -> Imported:
    result = convert(list(documents), **options)
    as_topology(result)
    return result


def entity(kind: str, name: str, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {"type": "service", "owner": "team-a", "lifecycle": "production", **spec},
    }


EXPECTED = {
    "checkout": {
        "kind": "component",
        "critical": True,
        "description": "component (website)",
        "labels": {"owner": "team-web", "system": "shop"},
        "depends_on": ["order-workflow"],
    },
    "order-workflow": {
        "kind": "component",
        "critical": True,
        "description": "component (service): Moves every order to antifraud and the ERPs",
        "labels": {"owner": "team-orders", "system": "shop"},
        "depends_on": ["orders-db", "payments/antifraud"],
    },
    "orders-db": {
        "kind": "resource",
        "description": "resource (database): PostgreSQL cluster of the orders",
        "labels": {"owner": "team-orders", "system": "shop"},
    },
    "payments/antifraud": {
        "kind": "component",
        "critical": True,
        "description": "component (service)",
        "labels": {"owner": "group:payments/team-risk"},
    },
    "search": {
        "kind": "component",
        "description": "component (service): Order look-up for the call centre",
        "labels": {"owner": "team-search", "system": "shop"},
        "depends_on": ["search-index"],
    },
    "search-index": {
        "kind": "resource",
        "description": "resource (opensearch-index)",
        "labels": {"owner": "team-search", "system": "shop"},
    },
    "shop": {
        "kind": "system",
        "description": "system: Everything a customer touches to buy something",
        "labels": {"owner": "group:default/team-web"},
    },
}
DANGLING = (
    "warning: unknown-entity: checkout depends on {}, which is not a Component, "
    "Resource or System of the catalog: left out"
)


def test_catalog_info_documents_become_components_resources_and_systems() -> None:
    result = imported(*catalog_files())

    assert result.nodes == EXPECTED
    assert list(result.nodes) == sorted(EXPECTED)
    assert [str(f) for f in result.findings] == [DANGLING.format("resource:payment-gateway")]
    assert result.origin == f"backstage {CATALOG}"


def test_the_api_answer_gives_the_same_nodes_through_its_relations() -> None:
    # entities.json is the catalog API's answer for the same entities; two
    # of them say what they depend on only in `relations` (one with the
    # older `target` form).
    result = imported((str(API), json.loads(API.read_text())))

    assert result.nodes == EXPECTED
    assert [str(f) for f in result.findings] == [
        DANGLING.format("resource:default/payment-gateway")
    ]


def test_the_by_query_answer_holds_its_entities_under_items() -> None:
    entities = json.loads(API.read_text())
    page = {"items": entities, "totalItems": len(entities), "pageInfo": {}}
    assert imported(("by-query", page)).nodes == EXPECTED


def test_spec_depends_on_and_relations_are_merged_once_each() -> None:
    web = entity("Component", "web", dependsOn=["resource:db", "component:api"])
    web["relations"] = [
        {"type": "dependsOn", "targetRef": "resource:default/db"},
        {
            "type": "dependsOn",
            "target": {"kind": "Component", "namespace": "default", "name": "auth"},
        },
        {"type": "ownedBy", "targetRef": "group:default/team-a"},
        {"type": "partOf", "targetRef": "system:default/shop"},
    ]
    result = imported(
        ("c.yaml", web),
        ("c.yaml", entity("Resource", "db")),
        ("c.yaml", entity("Component", "api")),
        ("c.yaml", entity("Component", "auth")),
    )
    assert result.nodes["web"]["depends_on"] == ["db", "api", "auth"]


def test_a_ref_without_a_kind_resolves_only_when_one_entity_fits() -> None:
    result = imported(
        ("c.yaml", entity("Component", "web", dependsOn=["db", "ledger"])),
        ("c.yaml", entity("Resource", "db")),
        ("c.yaml", entity("Resource", "ledger")),
        ("c.yaml", entity("Component", "ledger")),
    )
    assert result.nodes["web"]["depends_on"] == ["db"]
    assert [(f.rule, f.severity, f.nodes) for f in result.findings] == [
        ("ref-without-kind", "warning", ("web",)),
        ("unknown-entity", "warning", ("web",)),
    ]
    assert result.findings[0].message == (
        "web: spec.dependsOn 'db' names no kind, which Backstage refuses: taken as "
        "resource:db; write the kind"
    )


def test_names_are_short_unless_a_namespace_or_a_clash_asks_for_more() -> None:
    result = imported(
        ("c.yaml", entity("Component", "web", dependsOn=["component:ledger", "resource:ledger"])),
        ("c.yaml", entity("Component", "ledger")),
        ("c.yaml", entity("Resource", "ledger")),
        ("c.yaml", entity("Component", "web", namespace="payments")),
    )
    assert list(result.nodes) == [
        "component:default/ledger",
        "payments/web",
        "resource:default/ledger",
        "web",
    ]
    assert result.nodes["web"]["depends_on"] == [
        "component:default/ledger",
        "resource:default/ledger",
    ]


def test_refs_are_compared_without_case_as_backstage_compares_them() -> None:
    result = imported(
        ("c.yaml", entity("Component", "web", dependsOn=["Resource:Default/Orders-DB"])),
        ("c.yaml", entity("Resource", "orders-db")),
    )
    assert result.nodes["web"]["depends_on"] == ["orders-db"]


def test_the_critical_annotation_can_be_renamed_and_must_say_true() -> None:
    web = entity("Component", "web")
    web["metadata"]["annotations"] = {"example.com/tier": "true", "watchdog.io/critical": "yes"}
    assert "critical" not in imported(("c.yaml", web)).nodes["web"]

    renamed = imported(("c.yaml", web), critical_annotation="example.com/tier")
    assert renamed.nodes["web"]["critical"] is True

    result = imported(("c.yaml", web))
    assert [str(f) for f in result.findings] == [
        "warning: critical-annotation: web: watchdog.io/critical is 'yes': only 'true' marks "
        "a node critical, so it is not"
    ]


def test_systems_group_and_do_not_depend() -> None:
    result = imported(
        ("c.yaml", entity("System", "shop")),
        ("c.yaml", entity("Component", "web", system="shop")),
    )
    assert result.nodes["web"]["labels"] == {"owner": "team-a", "system": "shop"}
    assert "depends_on" not in result.nodes["web"]
    assert "depends_on" not in result.nodes["shop"]


def test_other_kinds_and_other_api_versions_are_ignored() -> None:
    result = imported(
        ("c.yaml", entity("API", "orders-api")),
        ("c.yaml", entity("Group", "team-a")),
        ("c.yaml", entity("Location", "root")),
        ("c.yaml", dict(entity("Component", "x"), apiVersion="example.com/v1")),
        ("c.yaml", None),  # an empty document after a trailing ---
        ("c.yaml", entity("Component", "web", dependsOn=["api:orders-api"])),
    )
    assert list(result.nodes) == ["web"]
    assert [f.rule for f in result.findings] == ["unknown-entity"]


def test_the_same_entity_twice_is_an_error_finding_and_the_first_is_kept() -> None:
    result = imported(
        ("a.yaml", entity("Component", "web", type="website")),
        ("b.yaml", entity("component", "Web")),
    )
    assert result.nodes["web"]["description"] == "component (website)"
    assert [str(f) for f in result.findings] == [
        "error: duplicate-entity: component:default/Web is defined twice (a.yaml and b.yaml): "
        "the first is kept"
    ]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("web", [("", "expected an entity or a list of entities, got the text 'web'")]),
        ({"items": "x"}, [("items", "expected a list, got the text 'x'")]),
        (
            [{"kind": "Component", "metadata": {"name": "web"}}],
            [("[0].apiVersion", "missing")],
        ),
        (
            {"apiVersion": "backstage.io/v1alpha1", "kind": "Component", "metadata": {}},
            [("metadata.name", "missing")],
        ),
        (
            {"apiVersion": "backstage.io/v1alpha1", "metadata": {"name": "web"}},
            [("kind", "missing")],
        ),
        ([3], [("[0]", "expected a mapping, got the number 3")]),
        (
            [dict(entity("Component", "web"), relations=[{"type": "dependsOn", "target": 7}])],
            [("[0].relations[0].target", "expected a mapping, got the number 7")],
        ),
        (
            [entity("Component", "web", dependsOn="resource:db")],
            [("[0].spec.dependsOn", "expected a list, got the text 'resource:db'")],
        ),
        (
            [entity("Component", "web server")],
            [
                (
                    "[0].metadata.name",
                    "Component 'web server' is not a valid node name: start with a letter "
                    "or digit, then use letters, digits and - _ . : / @",
                )
            ],
        ),
    ],
)
def test_bad_entities_are_refused_naming_the_source_and_the_path(
    document: Any, expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        convert([("catalog.json", document)])
    assert [(p.source, p.path, p.message) for p in caught.value.problems] == [
        ("catalog.json", path, message) for path, message in expected
    ]
