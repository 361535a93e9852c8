"""Importers: what the systems that already know the estate say about it,
turned into topology nodes. Each module is a pure converter (documents in,
nodes out): reading files, clusters or catalogs is the caller's business.

Every converter returns an `Imported`: node bodies in the topology file's
own shape (what would be written under `nodes:`), so that the result can be
printed as a topology file, merged with an overlay, or checked like any
file; and the findings the source itself gives rise to (a workload without
a disruption budget, a reference to nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from topology.findings import Finding

__all__ = ["Imported"]


@dataclass(frozen=True, slots=True)
class Imported:
    """What one source says about the estate.

    `nodes` maps each node's name to its body as the topology file writes it
    (`kind`, `critical`, `runs_on`, `depends_on`, `labels`, `description`;
    only plain YAML values: str, int, bool, list, dict), in a stable order.
    `findings` are about the source (severity `warning` unless the source
    contradicts itself). `origin` names the source for the file's header
    comment and for messages, e.g. `kubernetes cluster.json`.
    """

    nodes: Mapping[str, Mapping[str, Any]]
    findings: tuple[Finding, ...]
    origin: str
