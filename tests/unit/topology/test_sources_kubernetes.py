"""The Kubernetes importer: workloads found through their controllers, the
nodes their pods hold, `min` from disruption budgets, zones as farms, and
bad exports refused with the item named. Every result loads as a topology."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from imported import as_topology

import topology
from topology import InvalidInput
from topology.lint import lint
from topology.sources import Imported
from topology.sources.kubernetes import convert

DATA = Path(__file__).resolve().parents[2] / "data" / "sources" / "kubernetes"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ZONE = "topology.kubernetes.io/zone"


# Builders of API objects as `kubectl get -o json` prints them, cut to the
# fields the importer reads plus what identifies them.


def uid(*parts: str) -> str:
    return "uid-" + "-".join(parts)


def node(name: str, zone: str | None = "zone-1") -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if zone is not None:
        labels[ZONE] = zone
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": uid("node", name), "labels": labels},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def owner(kind: str, name: str, ns: str = "shop") -> list[dict[str, Any]]:
    api = "batch/v1" if kind == "Job" else "v1" if kind == "Node" else "apps/v1"
    return [
        {
            "apiVersion": api,
            "kind": kind,
            "name": name,
            "uid": uid(kind, ns, name),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def controller(
    kind: str, name: str, replicas: int | None = None, ns: str = "shop", **meta: Any
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid(kind, ns, name),
            "labels": {**labels, "app.kubernetes.io/version": "1.0.0"},
            **meta,
        },
        "spec": spec,
        "status": {},
    }


def replicaset(deployment: str, replicas: int, ns: str = "shop") -> dict[str, Any]:
    rs = controller("ReplicaSet", f"{deployment}-5d8f7b9c4", replicas, ns)
    rs["metadata"]["ownerReferences"] = owner("Deployment", deployment, ns)
    rs["metadata"]["labels"] = {"app.kubernetes.io/name": deployment, "pod-template-hash": "5d8f"}
    return rs


def pod(
    name: str,
    on: str | None,
    owned_by: tuple[str, str] | None,
    labels: dict[str, str] | None = None,
    *,
    phase: str = "Running",
    ns: str = "shop",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": uid("pod", ns, name),
        "labels": labels or {},
    }
    if owned_by is not None:
        meta["ownerReferences"] = owner(*owned_by, ns=ns)
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "example/app:1"}]}
    if on is not None:
        spec["nodeName"] = on
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": phase},
    }


def deployment(name: str, on: list[str], replicas: int | None = None) -> list[dict[str, Any]]:
    """A Deployment, its ReplicaSet and one pod per entry of `on`."""
    count = len(on) if replicas is None else replicas
    rs = replicaset(name, count)
    labels = {"app.kubernetes.io/name": name, "pod-template-hash": "5d8f"}
    pods = [
        pod(f"{rs['metadata']['name']}-{i}", where, ("ReplicaSet", rs["metadata"]["name"]), labels)
        for i, where in enumerate(on)
    ]
    return [controller("Deployment", name, count), rs, *pods]


def budget(name: str, selector: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    body = dict(spec)
    if selector is not None:
        body["selector"] = selector
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": "shop", "uid": uid("pdb", name)},
        "spec": body,
        "status": {"currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0},
    }


def app(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": name}}


def export(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": list(items),
    }


def imported(*items: dict[str, Any], farm_label: str | None = None) -> Imported:
    result = convert([("cluster.json", export(*items))], farm_label=farm_label)
    as_topology(result)  # whatever the input, the result loads
    return result


def nodes_abc() -> list[dict[str, Any]]:
    return [node("a"), node("b"), node("c"), node("d")]


def rules(result: Imported) -> list[tuple[str, tuple[str, ...]]]:
    return [(f.rule, f.nodes) for f in result.findings]


# The fixture: a realistic export of a shop cluster.


def fixture() -> Imported:
    path = DATA / "cluster.json"
    result = convert([(str(path), json.loads(path.read_text()))], farm_label=ZONE)
    as_topology(result)
    return result


def test_the_fixture_cluster_becomes_workloads_on_hosts_in_zones() -> None:
    result = fixture()

    assert list(result.nodes) == sorted(result.nodes)
    assert set(result.nodes) == {
        "eu-west-1a",
        "eu-west-1b",
        "node-a",
        "node-b",
        "node-c",
        "monitoring/node-exporter",
        "shop/checkout",
        "shop/debug-shell",
        "shop/mailer",
        "shop/order-workflow",
        "shop/orders-db",
        "shop/search",
    }
    assert result.nodes["node-a"] == {"kind": "host", "runs_on": ["eu-west-1a"]}
    assert result.nodes["eu-west-1b"] == {"kind": "farm", "description": f"{ZONE}=eu-west-1b"}
    assert result.nodes["shop/order-workflow"] == {
        "kind": "deployment",
        "description": "deployment shop/order-workflow, 2 replicas",
        "labels": {
            "namespace": "shop",
            "app.kubernetes.io/name": "order-workflow",
            "app.kubernetes.io/instance": "shop",
            "app.kubernetes.io/component": "backend",
            "app.kubernetes.io/part-of": "shop",
        },
        "runs_on": ["node-a"],
    }
    assert result.nodes["shop/search"]["runs_on"] == ["node-a", "node-b"]
    # minAvailable 50% of 4 replicas: 2 pods, on any 2 of the nodes (a holds 2).
    assert result.nodes["shop/checkout"]["runs_on"] == {
        "any_of": ["node-a", "node-b", "node-c"],
        "min": 2,
    }
    # maxUnavailable 1 of 3 (with matchExpressions in the selector).
    assert result.nodes["shop/orders-db"]["kind"] == "statefulset"
    assert result.nodes["shop/orders-db"]["runs_on"] == {
        "any_of": ["node-a", "node-b", "node-c"],
        "min": 2,
    }
    assert result.nodes["monitoring/node-exporter"]["runs_on"] == ["node-a", "node-b", "node-c"]
    assert result.nodes["monitoring/node-exporter"]["description"] == (
        "daemonset monitoring/node-exporter, 3 pods"
    )
    assert result.nodes["shop/debug-shell"] == {
        "kind": "pod",
        "description": "pod shop/debug-shell",
        "labels": {"namespace": "shop"},
        "runs_on": ["node-c"],
    }
    assert "runs_on" not in result.nodes["shop/mailer"]
    assert [str(f) for f in result.findings] == [
        "warning: no-disruption-budget: shop/search has no PodDisruptionBudget: min 1 "
        "assumed; add one, or set min in the overlay",
        "warning: unscheduled-workload: shop/mailer has no scheduled pod: it runs on no node here",
    ]
    assert result.origin == f"kubernetes {DATA / 'cluster.json'}"


def test_the_2017_story_shows_once_people_say_what_is_critical() -> None:
    result = fixture()
    nodes = {name: dict(body) for name, body in result.nodes.items()}
    nodes["shop/order-workflow"]["critical"] = True
    shared = [f for f in lint(as_topology(Imported(nodes, (), "x"))) if f.rule == "shared-fate"]
    assert [(f.severity, f.nodes[0]) for f in shared][:2] == [
        ("error", "eu-west-1a"),
        ("error", "node-a"),
    ]
    assert "non-critical monitoring/node-exporter, shop/checkout" in shared[1].message
    assert "shop/search" in shared[1].message


def test_the_example_overlay_over_the_example_cluster_finds_the_2017_shared_fate() -> None:
    estate = topology.load(EXAMPLES / "k8s" / "overlay.yaml")

    assert estate.node("shop/order-workflow").critical
    assert estate.node("shop/order-workflow").labels["namespace"] == "shop"
    errors = [(f.rule, f.nodes[0]) for f in lint(estate) if f.severity == "error"]
    assert ("shared-fate", "node-1") in errors


def test_the_order_of_the_items_changes_nothing() -> None:
    path = DATA / "cluster.json"
    document = json.loads(path.read_text())
    shuffled = dict(document, items=list(document["items"]))
    random.Random(7).shuffle(shuffled["items"])
    assert convert([("x", shuffled)], farm_label=ZONE) == convert(
        [("x", document)], farm_label=ZONE
    )


# Workloads


def test_pods_resolve_through_their_replicaset_to_the_deployment() -> None:
    old = replicaset("web", 0)
    old["metadata"]["name"] = "web-77c9d8b6f"  # the previous revision, scaled to 0
    result = imported(*nodes_abc(), *deployment("web", ["a", "b"]), old)

    assert list(result.nodes) == ["a", "b", "c", "d", "shop/web"]
    assert result.nodes["shop/web"]["kind"] == "deployment"
    assert result.nodes["shop/web"]["runs_on"] == ["a", "b"]
    assert result.nodes["shop/web"]["labels"] == {
        "namespace": "shop",
        "app.kubernetes.io/name": "web",  # not app.kubernetes.io/version
    }


def test_a_controller_missing_from_the_export_still_names_the_workload() -> None:
    rs = replicaset("web", 2)
    rs["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "name": "web",
            "uid": "u1",
            "controller": True,
        }
    ]
    pods = [
        pod(f"web-{i}", on, ("ReplicaSet", rs["metadata"]["name"])) for i, on in enumerate("ab")
    ]
    result = imported(*nodes_abc(), rs, *pods)

    assert result.nodes["shop/web"]["kind"] == "rollout"
    assert result.nodes["shop/web"]["description"] == "rollout shop/web, 2 replicas"
    assert result.nodes["shop/web"]["runs_on"] == ["a", "b"]


def test_a_controller_without_pods_whose_owner_is_missing_is_still_a_workload() -> None:
    result = imported(*nodes_abc(), replicaset("web", 0))
    assert result.nodes["shop/web"] == {
        "kind": "deployment",
        "description": "deployment shop/web, 0 replicas",
        "labels": {"namespace": "shop"},
    }
    assert rules(result) == [("unscheduled-workload", ("shop/web",))]


def test_statefulset_daemonset_and_bare_pods_are_workloads_of_their_own() -> None:
    result = imported(
        *nodes_abc(),
        controller("StatefulSet", "db", 2),
        pod("db-0", "a", ("StatefulSet", "db")),
        pod("db-1", "b", ("StatefulSet", "db")),
        controller("DaemonSet", "agent", status={}),
        pod("agent-x1", "a", ("DaemonSet", "agent")),
        pod("agent-x2", "b", ("DaemonSet", "agent")),
        pod("agent-x3", "c", ("DaemonSet", "agent")),
        pod("debug", "d", None),
        pod("kube-apiserver-a", "a", ("Node", "a")),  # a static pod's mirror
    )
    assert {name: body["kind"] for name, body in result.nodes.items() if "/" in name} == {
        "shop/agent": "daemonset",
        "shop/db": "statefulset",
        "shop/debug": "pod",
        "shop/kube-apiserver-a": "pod",
    }
    assert result.nodes["shop/agent"]["runs_on"] == ["a", "b", "c"]
    # A DaemonSet without a budget: min 1 and no warning; a StatefulSet on
    # two nodes without one: a warning.
    assert rules(result) == [("no-disruption-budget", ("shop/db",))]


def test_job_pods_finished_pods_and_unscheduled_pods_hold_no_node() -> None:
    result = imported(
        *nodes_abc(),
        pod("report-1-x", "a", ("Job", "report-1"), phase="Succeeded"),
        pod("report-2-x", "a", ("Job", "report-2"), phase="Running"),
        *deployment("web", ["a", "b", None]),  # type: ignore[list-item]
        pod("done", "c", None, phase="Succeeded"),
        pod("crashed", "c", None, phase="Failed"),
    )
    assert result.nodes["shop/web"]["runs_on"] == ["a", "b"]
    assert "shop/report-1" not in result.nodes
    assert "shop/report-2" not in result.nodes
    assert "runs_on" not in result.nodes["shop/done"]
    assert ("unscheduled-workload", ("shop/crashed",)) in rules(result)


def test_pods_being_deleted_hold_no_node() -> None:
    items = deployment("web", ["a", "b"])
    items[-1]["metadata"]["deletionTimestamp"] = "2026-11-18T07:41:52Z"
    result = imported(*nodes_abc(), *items)
    assert result.nodes["shop/web"]["runs_on"] == ["a"]


def test_two_workloads_of_one_name_are_told_apart_by_their_kind() -> None:
    result = imported(
        *nodes_abc(),
        *deployment("web", ["a"]),
        controller("StatefulSet", "web", 1),
        pod("web-0", "b", ("StatefulSet", "web")),
    )
    assert "shop/deployment/web" in result.nodes
    assert result.nodes["shop/statefulset/web"]["runs_on"] == ["b"]
    assert rules(result) == [
        ("workload-name-clash", ("shop/deployment/web", "shop/statefulset/web"))
    ]


# min from disruption budgets


@pytest.mark.parametrize(
    ("on", "spec", "expected"),
    [
        (["a", "b", "c"], {"minAvailable": 2}, 2),
        (["a", "b", "c"], {"minAvailable": 1}, 1),
        # 50% of 4 is 2 pods; the two nodes with the fewest hold 1 + 1.
        (["a", "a", "b", "c"], {"minAvailable": "50%"}, 2),
        # 60% of 5 rounds up to 3 pods: the fewest two nodes hold 1 + 2.
        (["a", "a", "b", "b", "c"], {"minAvailable": "60%"}, 2),
        # 3 pods, but a holds 3 of the 4: b alone holds 1, b and a hold 4.
        (["a", "a", "a", "b"], {"minAvailable": 3}, 2),
        (["a", "b", "c"], {"maxUnavailable": 1}, 2),
        # 25% of 4 may go (1), so 3 must stay, one per node.
        (["a", "b", "c", "d"], {"maxUnavailable": "25%"}, 3),
        # Kubernetes rounds the pods that may go up: 30% of 4 is 2, 2 stay.
        (["a", "b", "c", "d"], {"maxUnavailable": "30%"}, 2),
        (["a", "b", "c", "d"], {"maxUnavailable": "100%"}, 1),
        (["a", "b", "c"], {"minAvailable": "0%"}, 1),
        (["a", "b", "c"], {"minAvailable": 0}, 1),
        (["a", "b", "c"], {}, 1),  # neither: the controller wants no pod kept
    ],
)
def test_min_is_the_fewest_nodes_that_always_hold_the_pods_the_budget_keeps(
    on: list[str], spec: dict[str, Any], expected: int
) -> None:
    result = imported(*nodes_abc(), *deployment("web", on), budget("web", app("web"), **spec))

    hosts = sorted(set(on))
    placement = result.nodes["shop/web"]["runs_on"]
    assert placement == ({"any_of": hosts, "min": expected} if expected > 1 else hosts)
    assert result.findings == ()


def test_percentages_are_of_the_controllers_replicas_not_of_the_pods_found() -> None:
    # 4 replicas wanted, 2 running: 50% is 2 pods, so both nodes are needed.
    result = imported(
        *nodes_abc(),
        *deployment("web", ["a", "b"], replicas=4),
        budget("web", app("web"), minAvailable="50%"),
    )
    assert result.nodes["shop/web"]["runs_on"] == {"any_of": ["a", "b"], "min": 2}


def test_a_budget_that_wants_more_pods_than_are_scheduled_needs_every_node() -> None:
    result = imported(
        *nodes_abc(), *deployment("web", ["a", "b", "c"]), budget("web", app("web"), minAvailable=5)
    )
    assert result.nodes["shop/web"]["runs_on"] == {"any_of": ["a", "b", "c"], "min": 3}
    assert [str(f) for f in result.findings] == [
        "warning: disruption-budget-unmet: the budget of shop/web wants 5 pods up and 3 are "
        "scheduled: every one of its nodes is needed"
    ]


def test_a_daemonset_takes_min_from_its_budget() -> None:
    ds = controller("DaemonSet", "agent", status={})
    ds["status"] = {"desiredNumberScheduled": 3}
    labels = {"app.kubernetes.io/name": "agent"}
    result = imported(
        *nodes_abc(),
        ds,
        *(pod(f"agent-{n}", n, ("DaemonSet", "agent"), labels) for n in "abc"),
        budget("agent", app("agent"), maxUnavailable=1),
    )
    assert result.nodes["shop/agent"]["runs_on"] == {"any_of": ["a", "b", "c"], "min": 2}


def test_selectors_use_match_expressions_and_an_empty_one_selects_the_namespace() -> None:
    web = deployment("web", ["a", "b", "c"])
    selector = {
        "matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["web", "api"]},
            {"key": "pod-template-hash", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "NotIn", "values": ["batch"]},
        ]
    }
    result = imported(*nodes_abc(), *web, budget("web", selector, minAvailable=3))
    assert result.nodes["shop/web"]["runs_on"] == {"any_of": ["a", "b", "c"], "min": 3}

    everything = imported(*nodes_abc(), *web, budget("all", {}, minAvailable=2))
    assert everything.nodes["shop/web"]["runs_on"]["min"] == 2  # type: ignore[call-overload]

    nothing = imported(*nodes_abc(), *web, budget("none", None, minAvailable=2))
    assert nothing.nodes["shop/web"]["runs_on"] == ["a", "b", "c"]


def test_a_budget_over_pods_of_several_workloads_is_no_ones_budget() -> None:
    shared = {"matchLabels": {"pod-template-hash": "5d8f"}}
    result = imported(
        *nodes_abc(),
        *deployment("web", ["a", "b"]),
        *deployment("api", ["b", "c"]),
        budget("both", shared, minAvailable=3),
    )
    assert result.nodes["shop/web"]["runs_on"] == ["a", "b"]
    assert rules(result) == [("shared-disruption-budget", ("shop/api", "shop/web"))]


def test_two_budgets_on_one_workload_take_the_strictest() -> None:
    result = imported(
        *nodes_abc(),
        *deployment("web", ["a", "b", "c"]),
        budget("loose", app("web"), minAvailable=1),
        budget("strict", app("web"), maxUnavailable=0),
    )
    assert result.nodes["shop/web"]["runs_on"] == {"any_of": ["a", "b", "c"], "min": 3}
    assert rules(result) == [("several-disruption-budgets", ("shop/web",))]


def test_a_budget_selects_by_the_pod_template_when_there_is_no_pod() -> None:
    result = imported(
        *nodes_abc(),
        controller("Deployment", "web", 0),
        budget("web", app("web"), minAvailable=1),
    )
    assert rules(result) == [("unscheduled-workload", ("shop/web",))]


# No budget


def test_a_workload_without_a_budget_gets_min_1_and_a_warning() -> None:
    result = imported(*nodes_abc(), *deployment("web", ["a", "b", "c"]))
    assert result.nodes["shop/web"]["runs_on"] == ["a", "b", "c"]
    assert [str(f) for f in result.findings] == [
        "warning: no-disruption-budget: shop/web has no PodDisruptionBudget: min 1 assumed; "
        "add one, or set min in the overlay"
    ]
    assert result.findings[0].nodes == ("shop/web",)


def test_on_a_single_node_min_1_is_no_assumption() -> None:
    result = imported(*nodes_abc(), *deployment("web", ["a", "a"]))
    assert result.nodes["shop/web"]["runs_on"] == ["a"]
    assert result.findings == ()


# Hosts and farms


def test_with_a_farm_label_hosts_run_on_their_zone() -> None:
    result = imported(
        node("a", "eu-1a"),
        node("b", "eu-1a"),
        node("c", "eu-1b"),
        node("d", None),
        *deployment("web", ["a", "d"]),
        farm_label=ZONE,
    )
    assert result.nodes["a"] == {"kind": "host", "runs_on": ["eu-1a"]}
    assert result.nodes["c"] == {"kind": "host", "runs_on": ["eu-1b"]}
    assert result.nodes["eu-1a"] == {"kind": "farm", "description": f"{ZONE}=eu-1a"}
    assert result.nodes["d"] == {"kind": "host"}
    assert ("no-farm-label", ("d",)) in rules(result)
    no_label = next(f for f in result.findings if f.rule == "no-farm-label")
    assert no_label.message == f"d has no {ZONE} label: it runs on no farm"


def test_without_a_farm_label_hosts_run_on_nothing() -> None:
    result = imported(node("a", "eu-1a"), *deployment("web", ["a"]))
    assert result.nodes["a"] == {"kind": "host"}
    assert "eu-1a" not in result.nodes


def test_a_node_that_pods_name_but_the_export_lacks_is_added() -> None:
    result = imported(node("a"), *deployment("web", ["a", "ghost"]))
    assert result.nodes["ghost"] == {"kind": "host"}
    assert ("unlisted-kubernetes-node", ("ghost",)) in rules(result)


# Input shapes


def test_typed_lists_from_the_api_name_the_kind_of_their_items() -> None:
    pods = [pod("web-0", "a", None), pod("web-1", "b", None)]
    for p in pods:
        del p["kind"], p["apiVersion"]
    nodes = [node("a"), node("b")]
    for n in nodes:
        del n["kind"]
    result = convert(
        [
            ("nodes.json", {"kind": "NodeList", "apiVersion": "v1", "items": nodes}),
            ("pods.json", {"kind": "PodList", "apiVersion": "v1", "items": pods}),
        ]
    )
    assert list(result.nodes) == ["a", "b", "shop/web-0", "shop/web-1"]
    assert result.origin == "kubernetes nodes.json, pods.json"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], [("", "expected a mapping, got a list")]),
        (
            {"kind": "Pod", "metadata": {"name": "x"}},
            [("kind", "expected a List (kubectl get ... -o json), got 'Pod'")],
        ),
        ({"kind": "List", "items": {}}, [("items", "expected a list, got a mapping")]),
        (
            export({"metadata": {"name": "x"}}, "a pod"),  # type: ignore[arg-type]
            [
                ("items[0].kind", "missing: every item of a List names its kind"),
                ("items[1]", "expected a mapping, got the text 'a pod'"),
            ],
        ),
        (
            export({"kind": "Pod", "metadata": {"namespace": "shop"}}, {"kind": "Node"}),
            [("items[0].metadata.name", "missing"), ("items[1].metadata", "missing")],
        ),
        (
            export(dict(pod("web", "a", None), spec={"nodeName": "Bad Node"})),
            [
                (
                    "items[0].spec.nodeName",
                    "Kubernetes node 'Bad Node' is not a valid node name: start with a "
                    "letter or digit, then use letters, digits and - _ . : / @",
                )
            ],
        ),
        (
            export(*deployment("web", ["a"]), budget("web", app("web"), minAvailable="half")),
            [
                (
                    "items[3].spec.minAvailable",
                    "expected a number of pods or a percentage such as 50%, got 'half'",
                )
            ],
        ),
        (
            export(budget("web", {"matchExpressions": [{"key": "a", "operator": "Is"}]})),
            [
                (
                    "items[0].spec.selector.matchExpressions[0].operator",
                    "unknown operator 'Is': In, NotIn, Exists or DoesNotExist",
                )
            ],
        ),
        (
            export(pod("web-1", "a", ("ReplicaSet", "Web Server"))),
            [
                (
                    "items[0].metadata",
                    "workload 'shop/Web Server' is not a valid node name: start with a "
                    "letter or digit, then use letters, digits and - _ . : / @",
                )
            ],
        ),
        (
            export(dict(controller("Deployment", "web"), spec={"replicas": "two"})),
            [
                (
                    "items[0].spec.replicas",
                    "expected a whole number of 0 or more, got the text 'two'",
                )
            ],
        ),
    ],
)
def test_bad_exports_are_refused_naming_the_source_and_the_item(
    document: Any, expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        convert([("cluster.json", document)])
    assert [(p.source, p.line, p.path, p.message) for p in caught.value.problems] == [
        ("cluster.json", None, path, message) for path, message in expected
    ]
