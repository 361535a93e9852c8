"""Findings: weaknesses of a valid topology, from lint or from the sources
it was imported from. Kept apart from lint so that importing a source does
not load the graph library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Finding", "Severity"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One weakness: the rule that found it, how bad, the nodes, and why."""

    rule: str
    severity: Severity
    nodes: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.rule}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The finding as `watchdog check --format json` prints it."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "nodes": list(self.nodes),
            "message": self.message,
        }
