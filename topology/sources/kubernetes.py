"""Kubernetes: a cluster's workloads, the nodes their pods run on, and the
zones those nodes are in, from the `List` that

    kubectl get -A -o json \\
      nodes,pods,replicasets,deployments,statefulsets,daemonsets,poddisruptionbudgets

prints (several documents may be given, e.g. one list per kind; a typed
list such as the API's own `PodList`, whose items carry no `kind`, works
too).

What becomes a node:

- **Workloads.** A pod's workload is the top controller found by following
  its controller `ownerReferences` (Pod -> ReplicaSet -> Deployment, Pod ->
  StatefulSet, Pod -> DaemonSet); a pod with no controller, or owned by a
  Node (a static pod's mirror), is its own workload. An owner missing from
  the export still names the workload (an Argo `Rollout` above its
  ReplicaSets): the reference carries its kind and name. Every controller in
  the export is a workload even without pods. The node is named
  `NAMESPACE/NAME` (two workloads of different kinds with one name:
  `NAMESPACE/KIND/NAME`, and a finding); its `kind` is the controller's kind
  in lower case (`deployment`, `statefulset`, `daemonset`, `pod`...); its
  labels are `namespace` and the controller's identity labels
  `app.kubernetes.io/{name,instance,component,part-of}` (not `version`,
  which would change the imported file at every release, nor
  `managed-by`); its description says the kind, the name and the replicas
  (`deployment shop/checkout, 3 replicas`).
- Pods of Jobs and CronJobs are batch work that ends: they and their
  controllers are skipped. So are pods that are not scheduled (no
  `spec.nodeName`), finished (phase `Succeeded` or `Failed`) or being
  deleted (`metadata.deletionTimestamp`): they hold no place on a node.
- **Placement.** A workload `runs_on` one group: the Kubernetes nodes its
  pods are on. A workload with no scheduled pod runs on nothing, with a
  finding (`unscheduled-workload`).
- **Hosts.** Kubernetes nodes become `kind: host` nodes named by their
  `metadata.name`; a node that pods name but the export does not list is
  added, with a finding. With `farm_label` (e.g.
  `topology.kubernetes.io/zone`), each host `runs_on` a `kind: farm` node
  named after the label's value; hosts without the label run on nothing,
  with one finding naming them all.

**How many nodes a workload needs (`min`).** From its PodDisruptionBudget,
in its namespace, whose selector (`matchLabels` and `matchExpressions`; in
`policy/v1` an empty selector selects every pod of the namespace, a missing
one none) selects any of the workload's pods (the pod template's labels
when it has no pod). The number of pods that must stay up is, as the
disruption controller computes it:

- `minAvailable: N` -> N; `minAvailable: P%` -> ceil(P% of replicas);
- `maxUnavailable: N` -> replicas - N; `maxUnavailable: P%` -> replicas -
  ceil(P% of replicas): Kubernetes rounds up the pods that may go, so fewer
  must stay;
- neither -> 0;

never below 0, where replicas are the controller's scale (`spec.replicas`,
1 when unset; a DaemonSet's `status.desiredNumberScheduled`; the pods
found when the controller is not in the export). Pods can share a node, so
that count of pods becomes a count of nodes conservatively: the smallest k
such that the k nodes holding the FEWEST of its pods hold at least that
many, so that any k nodes up are enough; clamped to [1, number of nodes].
A budget that asks for more pods than are scheduled makes every node needed
(a finding says so). A budget that selects pods of several workloads is not
attributable to one (a finding; `min` 1); a workload under several budgets
takes the strictest (a finding: Kubernetes refuses to evict its pods).

Without a budget `min` is 1, with a warning (`no-disruption-budget`) when
that was an assumption: the workload runs on more than one node (on one,
`min` can only be 1), and it is not a DaemonSet (`kubectl drain
--ignore-daemonsets` leaves DaemonSet pods in place, so they rarely have
budgets; each of them serves its own node, and any one left up counts).

Bad input (not a List, an item that is not a mapping or has no kind, no
`metadata.name`, values of the wrong type in the fields read) raises
`InvalidInput` naming the source and the item's path. The output is sorted
by node name.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from topology.document import Problem, quote
from topology.findings import Finding, Severity
from topology.sources import Imported
from topology.sources._budgets import Budget, nodes_needed, read_budget, select
from topology.sources._input import Input, origin, refuse

__all__ = ["convert"]

_CONTROLLERS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"}
)
_BATCH = frozenset({"Job", "CronJob"})
_READ = frozenset({"Node", "Pod", "PodDisruptionBudget", *_CONTROLLERS})
_APP_LABELS = tuple(
    f"app.kubernetes.io/{key}" for key in ("name", "instance", "component", "part-of")
)
_FINISHED = frozenset({"Succeeded", "Failed"})
# Owner chains are two links long in practice (Pod -> ReplicaSet ->
# Deployment); the bound only stops a cycle of references.
_MAX_OWNERS = 8


@dataclass(slots=True)
class _Object:
    """An item of the export, its fields checked once."""

    kind: str
    namespace: str
    name: str
    raw: Mapping[str, Any]
    labels: Mapping[str, str]
    owner: tuple[str, str] | None  # the controller's kind and name
    input: Input
    path: str

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.raw.get("spec")
        return spec if isinstance(spec, Mapping) else {}


@dataclass(slots=True)
class _Workload:
    kind: str
    namespace: str
    name: str
    seen: _Object  # the first object found of it (for problems' paths)
    controller: _Object | None = None
    pods: list[_Object] = field(default_factory=list)
    per_node: Counter[str] = field(default_factory=Counter)
    node_name: str = ""


def convert(documents: Sequence[tuple[str, Any]], *, farm_label: str | None = None) -> Imported:
    """The workloads, hosts and (with `farm_label`) farms of the cluster
    exports in `documents` ((source name, parsed JSON) pairs), as the module
    docstring says. Raises `InvalidInput` listing every problem of the input;
    never anything else for any parsed JSON."""
    problems: list[Problem] = []
    objects = _read(documents, problems)
    refuse(problems)
    # From here on, problems are recorded through each object's `Input`.
    workloads = _workloads(objects)
    budgets = [
        budget
        for pdb in objects.get("PodDisruptionBudget", {}).values()
        if (budget := read_budget(pdb.input, pdb.raw, pdb.path, pdb.namespace, pdb.name))
    ]
    findings: list[Finding] = []
    nodes: dict[str, dict[str, Any]] = {}
    _hosts(objects.get("Node", {}).values(), workloads, farm_label, nodes, findings)
    _name_workloads(workloads, findings)
    covered = _match_budgets(workloads, budgets, findings)
    for workload in workloads.values():
        nodes[workload.node_name] = _workload_body(workload, covered, findings)
    refuse(problems)
    return Imported(
        nodes={name: nodes[name] for name in sorted(nodes)},
        findings=tuple(sorted(findings, key=lambda f: (f.severity != "error", f.rule, f.nodes))),
        origin=origin("kubernetes", documents),
    )


def _read(
    documents: Sequence[tuple[str, Any]], problems: list[Problem]
) -> dict[str, dict[tuple[str, str], _Object]]:
    """The items of the kinds read, by kind then (namespace, name); a later
    document's copy of an object replaces an earlier one."""
    objects: dict[str, dict[tuple[str, str], _Object]] = defaultdict(dict)
    for source, document in documents:
        read = Input(problems, source)
        root = read.mapping(document, "", required=True)
        if root is None:
            continue
        kind = root.get("kind")
        if not (isinstance(kind, str) and kind.endswith("List")):
            read.problem(
                "kind",
                f"expected a List (kubectl get ... -o json), got {_described(kind)}",
            )
            continue
        implied = kind[: -len("List")] or None  # `PodList` items are pods
        for i, item in enumerate(read.sequence(root.get("items"), "items") or ()):
            obj = _object(read, item, f"items[{i}]", implied)
            if obj is not None and obj.kind in _READ:
                objects[obj.kind][obj.namespace, obj.name] = obj
    return objects


def _described(value: Any) -> str:
    return quote(value) if isinstance(value, str) else "no kind" if value is None else "a value"


def _object(read: Input, item: Any, path: str, implied: str | None) -> _Object | None:
    body = read.mapping(item, path, required=True)
    if body is None:
        return None
    kind = body.get("kind", implied)
    if kind is None:
        read.problem(f"{path}.kind", "missing: every item of a List names its kind")
        return None
    kind = read.text(kind, f"{path}.kind", required=True)
    meta = read.mapping(body.get("metadata"), f"{path}.metadata", required=True)
    if kind is None or meta is None:
        return None
    before = len(read.problems)
    name = read.text(meta.get("name"), f"{path}.metadata.name", required=True)
    namespace = read.text(meta.get("namespace"), f"{path}.metadata.namespace")
    labels = read.mapping(meta.get("labels"), f"{path}.metadata.labels")
    owner = _controller(read, meta.get("ownerReferences"), f"{path}.metadata.ownerReferences")
    if name is None or labels is None or len(read.problems) > before:
        return None
    kept = {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}
    # Namespaced objects always carry theirs in an export; `default` is
    # where kubectl would put one that does not.
    return _Object(kind, namespace or "default", name, body, kept, owner, read, path)


def _controller(read: Input, refs: Any, path: str) -> tuple[str, str] | None:
    """The kind and name of the controller among `refs`, if one is (and is
    usable: what is not is recorded as a problem)."""
    for i, ref in enumerate(read.sequence(refs, path) or ()):
        where = f"{path}[{i}]"
        fields = read.mapping(ref, where, required=True)
        if fields is not None and fields.get("controller") is True:
            kind = read.text(fields.get("kind"), f"{where}.kind", required=True)
            name = read.text(fields.get("name"), f"{where}.name", required=True)
            return (kind, name) if kind is not None and name is not None else None
    return None


def _top(obj: _Object, index: Mapping[str, Mapping[tuple[str, str], _Object]]) -> tuple[str, str]:
    """The kind and name of the top controller above `obj` (itself if none)."""
    kind, name, current = obj.kind, obj.name, obj
    for _ in range(_MAX_OWNERS):
        if current.owner is None or current.owner[0] == "Node":
            break
        kind, name = current.owner
        found = index.get(kind, {}).get((obj.namespace, name))
        if found is None:
            break
        current = found
    return kind, name


def _workloads(
    objects: Mapping[str, Mapping[tuple[str, str], _Object]],
) -> dict[tuple[str, str, str], _Workload]:
    """Every workload, keyed by (kind, namespace, name), with its pods and
    how many of them each node holds."""
    workloads: dict[tuple[str, str, str], _Workload] = {}

    def workload(obj: _Object) -> _Workload | None:
        kind, name = _top(obj, objects)
        if kind in _BATCH:
            return None
        key = (kind, obj.namespace, name)
        found = workloads.get(key)
        if found is None:
            # A bare pod has no controller; one missing from the export neither.
            controller = (
                objects.get(kind, {}).get((obj.namespace, name)) if kind in _CONTROLLERS else None
            )
            found = workloads[key] = _Workload(kind, obj.namespace, name, obj, controller)
        return found

    for kind in sorted(_CONTROLLERS):
        for obj in objects.get(kind, {}).values():
            workload(obj)
    checked: set[str] = set()
    for pod in objects.get("Pod", {}).values():
        found = workload(pod)
        if found is None:
            continue
        found.pods.append(pod)
        node = _placement(pod)
        if node is None:
            continue
        if node not in checked:
            checked.add(node)
            if pod.input.name(node, f"{pod.path}.spec.nodeName", "Kubernetes node") is None:
                continue
        found.per_node[node] += 1
    return workloads


def _placement(pod: _Object) -> str | None:
    """The node a pod holds a place on, if it holds one."""
    meta = pod.raw.get("metadata")
    if isinstance(meta, Mapping) and meta.get("deletionTimestamp"):
        return None
    status = pod.raw.get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    node = pod.spec.get("nodeName")
    if phase in _FINISHED or not isinstance(node, str) or not node:
        return None
    return node


def _hosts(
    listed: Iterable[_Object],
    workloads: Mapping[tuple[str, str, str], _Workload],
    farm_label: str | None,
    nodes: dict[str, dict[str, Any]],
    findings: list[Finding],
) -> None:
    """Adds the hosts (and farms) to `nodes`."""
    hosts = {obj.name: obj for obj in listed}
    for obj in hosts.values():
        obj.input.name(obj.name, f"{obj.path}.metadata.name", "Kubernetes node")
    unlisted = sorted({n for w in workloads.values() for n in w.per_node} - hosts.keys())
    if unlisted:
        findings.append(
            _finding(
                "unlisted-kubernetes-node",
                unlisted,
                f"pods run on {_names(unlisted)}, which the export does not list: "
                "added as hosts; export the nodes with the pods",
            )
        )
    unlabelled = []
    for name in sorted([*hosts, *unlisted]):
        body: dict[str, Any] = {"kind": "host"}
        nodes[name] = body
        if not farm_label:
            continue
        host = hosts.get(name)
        farm = host.labels.get(farm_label) if host is not None else None
        if not farm:
            unlabelled.append(name)
            continue
        if (
            host is not None
            and host.input.name(farm, f"{host.path}.metadata.labels", "farm") is None
        ):
            continue
        if farm in hosts:
            findings.append(
                _finding(
                    "farm-name-clash",
                    [name, farm],
                    f"{name} is in {farm_label}={farm}, the name of a Kubernetes node: "
                    "it runs on nothing here",
                )
            )
            continue
        nodes.setdefault(farm, {"kind": "farm", "description": f"{farm_label}={farm}"})
        body["runs_on"] = [farm]
    if unlabelled:
        findings.append(
            _finding(
                "no-farm-label",
                unlabelled,
                f"{_names(unlabelled)} {'has' if len(unlabelled) == 1 else 'have'} no "
                f"{farm_label} label: {'it runs' if len(unlabelled) == 1 else 'they run'} "
                "on no farm",
            )
        )


def _name_workloads(
    workloads: Mapping[tuple[str, str, str], _Workload], findings: list[Finding]
) -> None:
    """`NAMESPACE/NAME`, or `NAMESPACE/KIND/NAME` for workloads that share a
    namespace and a name."""
    by_name: dict[tuple[str, str], list[_Workload]] = defaultdict(list)
    for workload in workloads.values():
        by_name[workload.namespace, workload.name].append(workload)
    for (namespace, name), same in by_name.items():
        for workload in same:
            kind = "" if len(same) == 1 else f"{workload.kind.lower()}/"
            workload.node_name = f"{namespace}/{kind}{name}"
            # Names come from the objects or from their owners' references.
            seen = workload.seen
            seen.input.name(workload.node_name, f"{seen.path}.metadata", "workload")
        if len(same) == 1:
            continue
        named = sorted(w.node_name for w in same)
        findings.append(
            _finding(
                "workload-name-clash",
                named,
                f"{len(same)} workloads are named {namespace}/{name}: imported as {_names(named)}",
            )
        )


def _label_sets(workload: _Workload) -> list[dict[str, str]]:
    """The distinct label sets a budget's selector may select the workload
    by: its pods', or its pod template's when it has no pod."""
    if workload.pods:
        distinct = {frozenset(p.labels.items()) for p in workload.pods}
        return [dict(labels) for labels in distinct]
    template = workload.controller.spec.get("template") if workload.controller else None
    meta = template.get("metadata") if isinstance(template, Mapping) else None
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping):
        return []
    return [{k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}]


def _match_budgets(
    workloads: Mapping[tuple[str, str, str], _Workload],
    budgets: list[Budget],
    findings: list[Finding],
) -> dict[str, list[Budget] | None]:
    """For each workload under a budget, the budgets that are its alone
    (None: its only budgets also cover other workloads)."""
    namespaces = {b.namespace for b in budgets}
    label_sets = {
        w.node_name: (w.namespace, _label_sets(w))
        for w in workloads.values()
        if w.namespace in namespaces
    }
    covered: dict[str, list[Budget] | None] = {}
    for budget, selected in select(budgets, label_sets).items():
        if len(selected) == 1:
            covered[selected[0]] = [*(covered.get(selected[0]) or ()), budget]
        elif selected:
            findings.append(
                _finding(
                    "shared-disruption-budget",
                    selected,
                    f"the PodDisruptionBudget {budget.namespace}/{budget.name} selects pods "
                    f"of {_names(selected)}: it is not theirs alone, so min 1 is assumed for "
                    "each; give each workload a budget of its own, or set min in the overlay",
                )
            )
            for name in selected:
                covered.setdefault(name, None)
    return covered


def _workload_body(
    workload: _Workload,
    covered: Mapping[str, list[Budget] | None],
    findings: list[Finding],
) -> dict[str, Any]:
    name, kind = workload.node_name, workload.kind.lower()
    replicas = _replicas(workload)
    body: dict[str, Any] = {
        "kind": kind,
        "description": _description(workload, replicas),
        "labels": _labels(workload),
    }
    hosts = sorted(workload.per_node)
    if not hosts:
        findings.append(
            _finding(
                "unscheduled-workload",
                [name],
                f"{name} has no scheduled pod: it runs on no node here",
            )
        )
        return body
    minimum = 1
    budgets = covered.get(name, None)
    if budgets:
        if len(budgets) > 1:
            findings.append(
                _finding(
                    "several-disruption-budgets",
                    [name],
                    f"{name} is selected by the PodDisruptionBudgets "
                    f"{', '.join(sorted(b.name for b in budgets))}: Kubernetes refuses to evict "
                    "pods under more than one; the strictest is used",
                )
            )
        pods = max(b.pods_needed(replicas) for b in budgets)
        minimum, met = nodes_needed(pods, workload.per_node)
        if not met:
            scheduled = sum(workload.per_node.values())
            findings.append(
                _finding(
                    "disruption-budget-unmet",
                    [name],
                    f"the budget of {name} wants {pods} pods up and {scheduled} "
                    f"{'is' if scheduled == 1 else 'are'} scheduled: every one of its nodes "
                    "is needed",
                )
            )
    elif name not in covered and kind != "daemonset" and len(hosts) > 1:
        findings.append(
            _finding(
                "no-disruption-budget",
                [name],
                f"{name} has no PodDisruptionBudget: min 1 assumed; add one, "
                "or set min in the overlay",
            )
        )
    body["runs_on"] = {"any_of": hosts, "min": minimum} if minimum > 1 else hosts
    return body


def _description(workload: _Workload, replicas: int) -> str:
    """`deployment shop/checkout, 3 replicas`; a DaemonSet counts pods."""
    kind = workload.kind.lower()
    what = f"{kind} {workload.namespace}/{workload.name}"
    if kind == "pod":
        return what
    unit = "pod" if kind == "daemonset" else "replica"
    return f"{what}, {replicas} {unit}{'' if replicas == 1 else 's'}"


def _replicas(workload: _Workload) -> int:
    """The controller's scale: what budget percentages are of."""
    controller = workload.controller
    if controller is None:
        # A bare pod is one; for a controller missing from the export, its
        # pods are all that is known.
        return 1 if workload.kind == "Pod" else len(workload.pods)
    read, path = controller.input, controller.path
    if controller.kind == "DaemonSet":
        status = controller.raw.get("status")
        value = status.get("desiredNumberScheduled") if isinstance(status, Mapping) else None
        desired = read.integer(value, f"{path}.status.desiredNumberScheduled")
        return desired if desired is not None else sum(workload.per_node.values())
    replicas = read.integer(controller.spec.get("replicas"), f"{path}.spec.replicas")
    return 1 if replicas is None else replicas  # the API's default


def _labels(workload: _Workload) -> dict[str, str]:
    labels = {"namespace": workload.namespace}
    source = workload.controller or (workload.pods[0] if workload.pods else None)
    if source is not None:
        labels.update((k, source.labels[k]) for k in _APP_LABELS if k in source.labels)
    return labels


def _finding(
    rule: str, nodes: Sequence[str], message: str, severity: Severity = "warning"
) -> Finding:
    return Finding(rule, severity, tuple(nodes), message)


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)
