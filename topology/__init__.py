"""The topology of an estate and what follows from it: loading and checking
the file, effective states, what-if answers (blast radius) and lint.

Pure: no network, clock or asyncio, so it can be used without the daemon.
"""

from __future__ import annotations

from topology.document import Document, InvalidInput, Problem, read_document
from topology.durations import format_duration, parse_duration
from topology.engine import (
    ACTION_KINDS,
    Action,
    Failure,
    Impact,
    ImpactedNode,
    Outcome,
    States,
    Verdict,
    evaluate,
    fail,
    what_if,
)
from topology.loader import load, loads, topology_from_document
from topology.model import Group, Node, State, Topology

__all__ = [
    "ACTION_KINDS",
    "Action",
    "Document",
    "Failure",
    "Group",
    "Impact",
    "ImpactedNode",
    "InvalidInput",
    "Node",
    "Outcome",
    "Problem",
    "State",
    "States",
    "Topology",
    "Verdict",
    "evaluate",
    "fail",
    "format_duration",
    "load",
    "loads",
    "parse_duration",
    "read_document",
    "topology_from_document",
    "what_if",
]
