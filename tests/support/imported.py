"""What the importers' tests share: an `Imported` written as a topology
file and loaded, as a person would check it."""

from __future__ import annotations

import yaml

import topology
from topology.sources import Imported


def as_topology(imported: Imported) -> topology.Topology:
    """The imported nodes as a version-1 topology file, loaded; raises
    `InvalidInput` if the importer named or shaped anything the file does
    not accept."""
    text = yaml.safe_dump({"version": 1, "nodes": dict(imported.nodes)}, sort_keys=False)
    return topology.loads(text, imported.origin)
