"""From a probe's results to its verdict: thresholds, so that one lost packet
does not page anyone and one lucky answer does not close an incident."""

from __future__ import annotations

from topology import State

__all__ = ["Hysteresis"]


class Hysteresis:
    """The verdict of one probe over its recent results.

    The first result is taken as it is (the daemon knows nothing before it).
    After that the verdict moves to a worse state only after
    `failure_threshold` results in a row worse than it, and to a better one
    after `success_threshold` results in a row better than it; it moves to
    the latest of those results. A result equal to the verdict breaks both
    runs. Defaults as in Gatus: 3 and 2.
    """

    __slots__ = ("_better", "_first", "_worse", "failure_threshold", "state", "success_threshold")

    def __init__(self, failure_threshold: int = 3, success_threshold: int = 2) -> None:
        if failure_threshold < 1 or success_threshold < 1:
            raise ValueError("thresholds must be at least 1")
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.state = State.UNKNOWN
        self._worse = 0
        self._better = 0
        self._first = True

    def force(self, verdict: State) -> None:
        """Take `verdict` as the verdict, with no run in progress: what
        another replica judged from results this one never saw (sharded
        probes); the runs start again from there if the probe comes here."""
        self.state = verdict
        self._first = False
        self._worse = self._better = 0

    def update(self, result: State) -> State:
        """Take one result; return the verdict after it."""
        if self._first:
            self._first = False
            self.state = result
        elif result > self.state:
            self._better = 0
            self._worse += 1
            if self._worse >= self.failure_threshold:
                self.state, self._worse = result, 0
        elif result < self.state:
            self._worse = 0
            self._better += 1
            if self._better >= self.success_threshold:
                self.state, self._better = result, 0
        else:
            self._worse = self._better = 0
        return self.state
