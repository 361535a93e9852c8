"""The overlay merged over imported nodes: what a person wrote wins, adds,
or is reported when it names nothing."""

from __future__ import annotations

import pytest

from topology import InvalidInput, State, evaluate
from topology.document import Document, Problem, parse_document
from topology.findings import Finding
from topology.lint import lint
from topology.loader import topology_from_document
from topology.sources import Imported
from topology.sources.merge import merge, to_python

IMPORTED = Imported(
    nodes={
        "node-a": {"kind": "host", "runs_on": ["zone-1"]},
        "node-b": {"kind": "host", "runs_on": ["zone-1"]},
        "zone-1": {"kind": "farm"},
        "shop/order-workflow": {
            "kind": "deployment",
            "runs_on": {"any_of": ["node-a", "node-b"], "min": 1},
            "labels": {"namespace": "shop", "team": "from-cluster"},
            "description": "deployment shop/order-workflow, 2 replicas",
        },
        "shop/search": {
            "kind": "deployment",
            "runs_on": ["node-a"],
            "depends_on": ["shop/index"],
            "labels": {"namespace": "shop"},
        },
        "shop/index": {"kind": "statefulset", "runs_on": ["node-b"]},
    },
    findings=(Finding("no-disruption-budget", "warning", ("shop/search",), "no budget"),),
    origin="kubernetes cluster.json",
)

OVERLAY = """\
version: 1
defaults:
  recovery_target: {critical: 15m}
nodes:
  shop/order-workflow:
    critical: true
    recovery_target: 5m
    labels: {team: orders}
    depends_on: [payments-saas]
  shop/search:
    description: what customers search with
  payments-saas: {kind: saas}
  shop/old-name:
    critical: true
"""


def merged(
    overlay: str = OVERLAY, imports: tuple[Imported, ...] = (IMPORTED,)
) -> tuple[Document, list[Finding], list[Problem]]:
    document = parse_document(overlay, "overlay.yaml")
    return merge(document, [(result, 3) for result in imports])


def test_the_overlay_wins_adds_requirements_and_merges_labels() -> None:
    document, _findings, problems = merged()
    assert problems == []
    nodes = to_python(document.root)["nodes"]
    workflow = nodes["shop/order-workflow"]
    assert workflow["critical"] is True
    assert workflow["recovery_target"] == "5m"
    # Labels merged, the overlay winning; requirements added to the import.
    assert workflow["labels"] == {"namespace": "shop", "team": "orders"}
    assert workflow["runs_on"] == {"any_of": ["node-a", "node-b"], "min": 1}
    assert workflow["depends_on"] == ["payments-saas"]
    assert nodes["shop/search"]["depends_on"] == ["shop/index"]
    assert nodes["shop/search"]["description"] == "what customers search with"
    # Imported nodes the overlay does not name come through as they are.
    assert nodes["shop/index"] == {"kind": "statefulset", "runs_on": ["node-b"]}
    assert "sources" not in to_python(document.root)


def test_an_overlay_entry_that_names_nothing_is_a_finding_unless_it_declares_a_kind() -> None:
    _, findings, _ = merged()
    rules = {(f.rule, f.nodes) for f in findings}
    assert ("overlay-orphan", ("shop/old-name",)) in rules
    assert not any(f.nodes == ("payments-saas",) for f in findings)
    # The source's own findings come first, unchanged.
    assert findings[0].rule == "no-disruption-budget"
    orphan = next(f for f in findings if f.rule == "overlay-orphan")
    assert "kubernetes cluster.json" in orphan.message


def test_the_merged_file_is_a_topology_with_the_2017_shared_fate() -> None:
    document, _findings, _ = merged()
    topology = topology_from_document(document)
    assert topology.node("shop/order-workflow").critical
    assert topology.recovery_target_s("shop/order-workflow") == 300.0
    # node-a carries both the critical workflow and search: losing zone-1
    # takes the critical workflow down.
    states = evaluate(topology, {"zone-1": State.DOWN})
    assert states["shop/order-workflow"] == State.DOWN


def test_imported_nodes_carry_the_line_of_their_source_in_problems() -> None:
    broken = Imported(
        nodes={"svc": {"kind": "service", "depends_on": ["nowhere"]}},
        findings=(),
        origin="compose docker-compose.yml",
    )
    document, _, _ = merged("version: 1\nnodes: {}\n", (broken,))
    with pytest.raises(InvalidInput) as err:
        topology_from_document(document)
    assert [(p.line, "nowhere" in p.message) for p in err.value.problems] == [(3, True)]


def test_a_node_two_sources_give_is_a_problem_naming_both() -> None:
    other = Imported(
        nodes={"shop/search": {"kind": "service"}}, findings=(), origin="compose shop.yml"
    )
    _, _, problems = merged(imports=(IMPORTED, other))
    assert [p.message for p in problems] == [
        "1 node comes from both kubernetes cluster.json and compose shop.yml (shop/search): "
        "drop one of the sources, or rename them in one"
    ]


def test_an_empty_overlay_entry_keeps_the_import_and_nodes_may_be_absent() -> None:
    document, _findings, _ = merged("version: 1\nnodes:\n  shop/index:\n")
    assert to_python(document.root)["nodes"]["shop/index"]["kind"] == "statefulset"
    document, _, _ = merged("version: 1\n")
    assert len(topology_from_document(document)) == len(IMPORTED.nodes)


def test_lint_reports_the_sources_findings_with_its_own() -> None:
    document, findings, _ = merged()
    topology = topology_from_document(document)
    # Built from a merged document directly, the topology carries none.
    assert "no-disruption-budget" not in {f.rule for f in lint(topology)}
    from topology.model import Topology

    carried = Topology(topology.nodes.values(), source_findings=findings)
    assert {f.rule for f in lint(carried)} >= {"no-disruption-budget", "overlay-orphan"}


def test_an_overlay_min_keeps_the_imported_placement() -> None:
    overlay = "version: 1\nnodes:\n  shop/order-workflow: {runs_on: {min: 2}}\n"
    document, _, problems = merged(overlay)
    assert problems == []
    nodes = to_python(document.root)["nodes"]
    assert nodes["shop/order-workflow"]["runs_on"] == {"any_of": ["node-a", "node-b"], "min": 2}
    topology = topology_from_document(document)
    [group] = topology.node("shop/order-workflow").groups
    assert (group.members, group.min) == (("node-a", "node-b"), 2)
    # A plain list of names becomes the group's members too.
    overlay = "version: 1\nnodes:\n  shop/search: {runs_on: {min: 1, soft: true}}\n"
    document, _, _ = merged(overlay)
    assert to_python(document.root)["nodes"]["shop/search"]["runs_on"] == {
        "any_of": ["node-a"],
        "min": 1,
        "soft": True,
    }
