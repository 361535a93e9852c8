"""Printing the benchmarks' tables: aligned columns, and whether a target
was met; and reading the lists of sizes they take on the command line.
Imported by the scripts beside it (run as `python benchmarks/X.py`, their
folder is on the import path)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["sizes", "table", "verdict"]


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


def sizes(minimum: int, what: str) -> Callable[[str], tuple[int, ...]]:
    """An argparse type for comma-separated sizes such as `1000,10_000`,
    each at least `minimum`; `what` names them in errors."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            found = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {what} such as 1000,10000, got {text!r}"
            ) from None
        if not found or min(found) < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {text!r}")
        return found

    return parse
