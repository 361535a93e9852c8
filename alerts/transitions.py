"""State changes as records of their own: what alert rules react to and
what the state store keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from topology import State

__all__ = ["Transition", "View"]

View = Literal["observed", "effective"]


@dataclass(frozen=True, slots=True)
class Transition:
    """A node's state changed from `old` to `new` at `at` (seconds since the
    epoch), as probed (`observed`) or after propagation (`effective`).

    `root_cause` names the failed node(s) that explain an effective change
    (the node itself when its own probe failed); empty for a recovery.
    """

    node: str
    view: View
    old: State
    new: State
    at: float
    root_cause: tuple[str, ...] = ()
    reason: str = ""
