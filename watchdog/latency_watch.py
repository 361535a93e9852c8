"""The latency baselines of every HTTP and TCP probe, kept across restarts:
each successful answer is observed, a regression makes the probe's result
degraded with its reason, and the percentiles are shown in the API and the
metrics. See `watchdog.latency` for how a baseline judges."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from watchdog.config import ProbeConfig
from watchdog.latency import LatencyBaseline, LatencyRules, LatencyView, track_latency
from watchdog.probe_state import ProbeState
from watchdog.probes import ProbeResult

__all__ = ["KINDS", "LatencyWatch"]

log = logging.getLogger(__name__)

# Probes whose answers have a latency worth a baseline.
KINDS = frozenset({"http", "tcp"})
_PART = "latency"


class LatencyWatch:
    """A baseline per HTTP/TCP probe, loaded from and saved to `state`."""

    def __init__(self, state: ProbeState, rules: LatencyRules | None = None) -> None:
        self.state = state
        # The default rules: at a 10 s interval, learned in 20 minutes, a
        # regression flagged after 10 minutes slow.
        self.rules = rules or LatencyRules()
        self._baselines: dict[str, LatencyBaseline] = {}
        self._specs: dict[str, str] = {}
        self._nodes: dict[str, str] = {}
        # Probes whose view changed since `take_changes` last said.
        self._dirty: set[str] = set()

    def replace(self, probes: Iterable[ProbeConfig], state: ProbeState | None = None) -> None:
        """Follow the probes of the file: a probe whose target or checks
        changed learns afresh (the operator's way to re-learn a baseline:
        change it, reload); a new one starts from what was saved for it, if
        it was saved for the same spec (read from `state`, by default the
        watch's own)."""
        baselines: dict[str, LatencyBaseline] = {}
        specs: dict[str, str] = {}
        nodes: dict[str, str] = {}
        for probe in probes:
            if probe.kind not in KINDS:
                continue
            spec = _fingerprint(probe.spec)
            specs[probe.key] = spec
            nodes[probe.key] = probe.node
            kept = self._baselines.get(probe.key)
            if kept is not None and self._specs.get(probe.key) == spec:
                baselines[probe.key] = kept
            elif probe.key in self._baselines:
                baselines[probe.key] = LatencyBaseline(self.rules)
            else:
                baselines[probe.key] = self._load(probe.key, probe.spec, state or self.state)
        self._dirty |= set(self._baselines) | set(baselines)
        self._baselines, self._specs, self._nodes = baselines, specs, nodes

    def track(self, key: str, result: ProbeResult, now: float) -> ProbeResult:
        """`result` observed in the probe's baseline, made degraded when a
        regression is in force (see `watchdog.latency.track_latency`)."""
        baseline = self._baselines.get(key)
        if baseline is None:
            return result
        self._dirty.add(key)
        return track_latency(result, baseline, now)

    def views(self) -> dict[str, LatencyView]:
        """What is shown of every baseline now, by probe key."""
        return {k: b.view(self._nodes[k], k) for k, b in self._baselines.items()}

    def take_changes(self) -> dict[str, LatencyView | None]:
        """What is shown of the baselines that changed since the last call
        (None for those gone), by probe key."""
        dirty, self._dirty = self._dirty, set()
        out: dict[str, LatencyView | None] = {}
        for key in dirty:
            baseline = self._baselines.get(key)
            out[key] = None if baseline is None else baseline.view(self._nodes[key], key)
        return out

    def baselines(self) -> list[tuple[str, str, LatencyBaseline]]:
        """(node, probe key, baseline) of every probe with one, by key."""
        return [(self._nodes[k], k, b) for k, b in sorted(self._baselines.items())]

    def baseline(self, key: str) -> LatencyBaseline | None:
        """The baseline of probe `key`, if it has one."""
        return self._baselines.get(key)

    def details(self, key: str) -> dict[str, Any] | None:
        """What the API shows of probe `key`'s latency: the window's
        percentiles, the baseline and spread, the regression in force."""
        baseline = self._baselines.get(key)
        return None if baseline is None else baseline.view(self._nodes[key], key).details()

    def saved(self) -> dict[str, dict[str, bytes]]:
        """Every baseline as `ProbeState.save_many` takes it: taken where
        the baselines change (the loop), saved by whoever saves."""
        return {
            key: {_PART: json.dumps({"spec": self._specs[key], "baseline": b.state()}).encode()}
            for key, b in self._baselines.items()
        }

    def save(self, now: float) -> None:
        """Save every baseline, in one transaction."""
        self.state.save_many(self.saved(), now)

    def _load(self, key: str, spec: object, state: ProbeState) -> LatencyBaseline:
        saved = state.load(key).get(_PART)
        if saved is None:
            return LatencyBaseline(self.rules)
        try:
            data = json.loads(saved)
            # An older version saved the settings themselves (`repr`): still
            # the same probe, and the next save replaces them by the digest.
            same = (_fingerprint(spec), repr(spec))
            if not isinstance(data, dict) or data.get("spec") not in same:
                return LatencyBaseline(self.rules)  # another target now: learn it
            return LatencyBaseline.from_state(self.rules, data.get("baseline"))
        except ValueError as err:
            log.warning("saved latency baseline unreadable probe=%s error=%s", key, err)
            return LatencyBaseline(self.rules)


def _fingerprint(spec: object) -> str:
    """A digest of a probe's settings, saved with its baseline to tell
    whether it was learned for the same target and checks. Never the
    settings themselves: a URL's password, a query's token and an
    Authorization header are among them."""
    return "sha256:" + hashlib.sha256(repr(spec).encode()).hexdigest()
