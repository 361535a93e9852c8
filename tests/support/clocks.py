"""A clock the test sets by hand, for whatever takes a `clock` callable
(the daemon, the store, the outbox, the live state, sinks): time moves
only when the test says so."""

from __future__ import annotations

__all__ = ["Clock"]


class Clock:
    """Seconds since the epoch, as `time.time` gives them: `now` until the
    test changes it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
