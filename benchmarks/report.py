"""Printing the benchmarks' tables: aligned columns, and whether a target
was met. Imported by the scripts beside it (run as `python benchmarks/X.py`,
their folder is on the import path)."""

from __future__ import annotations

__all__ = ["table", "verdict"]


def table(rows: list[list[str]]) -> str:
    """The rows as text: the first column left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def verdict(met: bool) -> str:
    """How a target reads in the tables."""
    return "met" if met else "NOT MET"
