"""PodDisruptionBudgets for the Kubernetes importer: reading one, which
workloads each selects, how many pods it keeps up and how many nodes hold
them. The rules are written in `topology.sources.kubernetes`."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from topology.document import quote
from topology.sources._input import Input

__all__ = ["Budget", "Selector", "nodes_needed", "read_budget", "select"]

_PERCENT = re.compile(r"(\d{1,3})%\Z")
_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector: every `matchLabels` pair and every expression."""

    labels: tuple[tuple[str, str], ...]
    expressions: tuple[tuple[str, str, frozenset[str]], ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a pod with `labels` is selected."""
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        for key, operator, values in self.expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Budget:
    """One PodDisruptionBudget; `selector` None selects nothing."""

    namespace: str
    name: str
    selector: Selector | None
    min_available: int | str | None
    max_unavailable: int | str | None

    def pods_needed(self, replicas: int) -> int:
        """The pods that must stay up, as the disruption controller works it
        out: percentages of `replicas` rounded up (for maxUnavailable, the
        pods that may go), never below 0; neither field keeps none."""
        if self.max_unavailable is not None:
            return max(0, replicas - _scaled(self.max_unavailable, replicas))
        if self.min_available is not None:
            return _scaled(self.min_available, replicas)
        return 0


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, int):
        return value
    return math.ceil(int(value[:-1]) * total / 100)


def read_budget(
    read: Input, raw: Mapping[str, Any], path: str, namespace: str, name: str
) -> Budget | None:
    """The budget in the PodDisruptionBudget `raw` (at `path`); None, with
    its problems recorded in `read`, when it is unusable."""
    spec = raw.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    where = f"{path}.spec"
    before = len(read.problems)
    selector = _selector(read, raw, spec.get("selector"), f"{where}.selector")
    least = _int_or_percent(read, spec.get("minAvailable"), f"{where}.minAvailable")
    most = _int_or_percent(read, spec.get("maxUnavailable"), f"{where}.maxUnavailable")
    if least is not None and most is not None:
        read.problem(where, "minAvailable and maxUnavailable are exclusive: keep one")
    if len(read.problems) > before:
        return None
    return Budget(namespace, name, selector, least, most)


def _selector(read: Input, raw: Mapping[str, Any], value: Any, path: str) -> Selector | None:
    fields = read.mapping(value, path) if value is not None else None
    if fields is None:
        return None
    if not fields and raw.get("apiVersion") == "policy/v1beta1":
        return None  # in v1beta1 an empty selector selected nothing
    labels = read.mapping(fields.get("matchLabels"), f"{path}.matchLabels")
    exprs = read.sequence(fields.get("matchExpressions"), f"{path}.matchExpressions")
    if labels is None or exprs is None:
        return None
    pairs = []
    for key, text in labels.items():
        got = read.text(text, f"{path}.matchLabels.{key}")
        if got is not None:
            pairs.append((str(key), got))
    expressions = []
    for i, expr in enumerate(exprs):
        where = f"{path}.matchExpressions[{i}]"
        body = read.mapping(expr, where, required=True)
        if body is None:
            return None
        label = read.text(body.get("key"), f"{where}.key", required=True)
        operator = read.text(body.get("operator"), f"{where}.operator", required=True)
        values = read.sequence(body.get("values"), f"{where}.values")
        if operator is not None and operator not in _OPERATORS:
            read.problem(
                f"{where}.operator",
                f"unknown operator {quote(operator)}: In, NotIn, Exists or DoesNotExist",
            )
            return None
        if label is None or operator is None or values is None:
            return None
        expressions.append((label, operator, frozenset(str(v) for v in values)))
    return Selector(tuple(pairs), tuple(expressions))


def _int_or_percent(read: Input, value: Any, path: str) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, str) and _PERCENT.match(value) and int(value[:-1]) <= 100:
        return value
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if number is None or number < 0:
        read.problem(path, f"expected a number of pods or a percentage such as 50%, got {value!r}")
        return None
    return number


def select(
    budgets: Iterable[Budget], workloads: Mapping[str, tuple[str, list[dict[str, str]]]]
) -> dict[Budget, list[str]]:
    """For each budget, the workloads it selects, sorted: `workloads` maps
    each name to its namespace and the distinct label sets of its pods. A
    budget selects a workload when it selects any of those sets."""
    # An index from each label to the workloads with a pod carrying it, so
    # that a selector is tried on the few workloads it can select, not on
    # every workload of its namespace.
    by_label: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    in_namespace: dict[str, set[str]] = defaultdict(set)
    for name, (namespace, label_sets) in workloads.items():
        in_namespace[namespace].add(name)
        for labels in label_sets:
            for key, value in labels.items():
                by_label[namespace, key, value].add(name)
    out: dict[Budget, list[str]] = {}
    for budget in budgets:
        selector = budget.selector
        if selector is None:
            out[budget] = []
            continue
        candidates = in_namespace.get(budget.namespace, set())
        for key, value in selector.labels:
            candidates = candidates & by_label.get((budget.namespace, key, value), set())
        out[budget] = sorted(
            name
            for name in candidates
            if any(selector.matches(labels) for labels in workloads[name][1])
        )
    return out


def nodes_needed(pods: int, per_node: Mapping[str, int]) -> tuple[int, bool]:
    """The fewest nodes such that any that many of them hold `pods` pods
    (the nodes holding the fewest counted first), at least 1; and whether
    the scheduled pods reach `pods` at all (if not: every node)."""
    total = 0
    for k, count in enumerate(sorted(per_node.values()), start=1):
        total += count
        if total >= pods:
            return max(1, k), True
    return len(per_node), pods <= total
