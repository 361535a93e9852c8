"""The live state of the estate: every probe's verdict, every node's observed
and effective state, since when and why, and the transitions between them.

Each change of a node's observation re-evaluates the engine from all the
observations (DESIGN.md: never continue from the last result) and turns the
difference into transitions, each effective one naming its root cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from alerts.rules import Failed
from alerts.transitions import Transition
from topology import Action, Impact, State, States, Topology, evaluate, what_if
from watchdog.config import ProbeConfig
from watchdog.hysteresis import Hysteresis

__all__ = ["Drift", "LiveState", "LiveView", "NodeStatus", "ProbeStatus"]


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    """One probe's verdict and its latest result (with, over https, when
    the certificate it saw expires: seconds since the epoch)."""

    key: str
    kind: str
    verdict: State
    last_state: State | None = None
    last_reason: str = ""
    last_latency_s: float | None = None
    last_at: float | None = None
    tls_expires_at: float | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by the thousand for the API process: a slotted dataclass's
        # own way reads its fields one by one in Python, three times slower.
        fields = (self.key, self.kind, self.verdict, self.last_state, self.last_reason)
        return (ProbeStatus, (*fields, self.last_latency_s, self.last_at, self.tls_expires_at))


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What is known of one node now."""

    node: str
    kind: str
    critical: bool
    observed: State | None  # None: no probe, the state comes from requirements only
    effective: State
    since: float
    causes: tuple[str, ...]
    no_spare: bool
    probes: tuple[ProbeStatus, ...]


@dataclass(frozen=True, slots=True)
class LiveView:
    """The live state at one moment: copies of what changes, references to
    what never does once made (the topology, a `States`). Safe to read from
    any thread."""

    topology: Topology
    states: States
    observed: Mapping[str, State]
    since: Mapping[str, float]
    probes_of: Mapping[str, Sequence[str]]
    last: Mapping[str, ProbeStatus]
    drift: Sequence[Drift]
    ready: bool

    def status(self, nodes: Iterable[str] | None = None) -> list[NodeStatus]:
        """Every node (or those named): observed and effective state, since
        when, why, and its probes."""
        states, topology = self.states, self.topology
        out = []
        for name in nodes if nodes is not None else topology.nodes:
            node = topology.node(name)
            out.append(
                NodeStatus(
                    node=name,
                    kind=node.kind,
                    critical=node.critical,
                    observed=self.observed.get(name),
                    effective=states[name],
                    since=self.since[name],
                    causes=states.causes(name),
                    no_spare=name in states.no_spare,
                    probes=tuple(self.last[key] for key in self.probes_of.get(name, ())),
                )
            )
        return out

    def what_if(self, actions: Sequence[Action]) -> Impact:
        """The blast radius of `actions` on top of what was observed then."""
        return what_if(self.topology, self.observed, actions)


@dataclass(frozen=True, slots=True)
class Drift:
    """A node probed up that the topology says must be down: the topology
    is wrong (a requirement that is not one, or a missing replica)."""

    node: str
    effective: State
    causes: tuple[str, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Drift, (self.node, self.effective, self.causes))  # as ProbeStatus's

    @property
    def message(self) -> str:
        """The finding, for people."""
        return (
            f"{self.node} is probed up, but the topology says it is {self.effective} "
            f"because {', '.join(self.causes)} {'is' if len(self.causes) == 1 else 'are'} "
            "down: the topology may be wrong"
        )


class LiveState:
    """Observations in, effective states and transitions out. Not thread
    safe: the daemon's event loop owns it."""

    def __init__(
        self, topology: Topology, probes: Sequence[ProbeConfig], clock: Callable[[], float]
    ) -> None:
        self._clock = clock
        self._topology = topology
        self._probes: dict[str, ProbeConfig] = {}
        self._verdicts: dict[str, Hysteresis] = {}
        self._last: dict[str, ProbeStatus] = {}
        self._by_node: dict[str, list[str]] = {}
        self._observed: dict[str, State] = {}
        # Counts changes of `_observed`: with the `States` in force, what
        # the drift list depends on (before the first full picture,
        # observations change without new states).
        self._observations = 0
        self._drift: tuple[States, int, list[Drift]] | None = None
        self._settled = False
        self._resumed: Mapping[str, float] = {}
        self._unreported: set[str] = set()
        self._failed: tuple[States, list[Failed]] | None = None
        # `prepare`'s pass in progress: the failing nodes, how far it got.
        self._preparing: tuple[list[str], int] | None = None
        # What changed since `take_changes` last said: nodes (observation,
        # since) and probes (last result); everything after a reload.
        self._changed_nodes: set[str] = set()
        self._changed_probes: set[str] = set()
        self._changed_all = True
        self._install(probes)
        self._states = evaluate(topology, self._observed)
        self._since: dict[str, float] = dict.fromkeys(topology.nodes, clock())
        # With no probe at all there is nothing to wait for: the alert rules
        # run at once (alerts about the watchdog, undeclared calls).
        self._settled = not self._probes

    def _install(self, probes: Sequence[ProbeConfig]) -> None:
        old_verdicts, old_last = self._verdicts, self._last
        old_specs = self._probes
        self._probes, self._verdicts, self._last, self._by_node = {}, {}, {}, {}
        for probe in probes:
            self._probes[probe.key] = probe
            self._by_node.setdefault(probe.node, []).append(probe.key)
            kept = old_specs.get(probe.key)
            if kept is not None and kept.spec == probe.spec and kept.schedule == probe.schedule:
                # The same probe across a reload keeps what it has seen.
                self._verdicts[probe.key] = old_verdicts[probe.key]
                self._last[probe.key] = old_last[probe.key]
            else:
                schedule = probe.schedule
                self._verdicts[probe.key] = Hysteresis(
                    schedule.failure_threshold, schedule.success_threshold
                )
                self._last[probe.key] = ProbeStatus(probe.key, probe.kind, State.UNKNOWN)
        self._observed = {node: self._observe(node) for node in self._by_node}
        self._observations += 1
        # Kept as a set rather than scanned: at 10k probes a scan per result
        # made the first round quadratic.
        self._unreported = {key for key, last in self._last.items() if last.last_at is None}

    def _observe(self, node: str) -> State:
        """A node's observation: the worst of its probes' verdicts."""
        return max(self._verdicts[key].state for key in self._by_node[node])

    @property
    def topology(self) -> Topology:
        """The topology in force."""
        return self._topology

    @property
    def probes(self) -> Mapping[str, ProbeConfig]:
        """The probes in force, by key."""
        return self._probes

    @property
    def observed(self) -> Mapping[str, State]:
        """The observation of every probed node (a read-only view)."""
        return MappingProxyType(self._observed)

    @property
    def since(self) -> Mapping[str, float]:
        """Since when every node has been in its effective state (a view)."""
        return MappingProxyType(self._since)

    @property
    def last(self) -> Mapping[str, ProbeStatus]:
        """Every probe's verdict and latest result, by key (a view)."""
        return MappingProxyType(self._last)

    @property
    def probes_of(self) -> Mapping[str, Sequence[str]]:
        """The probe keys of every probed node."""
        return MappingProxyType(self._by_node)

    @property
    def states(self) -> States:
        """The effective state of every node."""
        return self._states

    @property
    def ready(self) -> bool:
        """Whether every probe has reported at least once."""
        return not self._unreported

    def record(
        self,
        key: str,
        state: State,
        reason: str,
        latency_s: float | None,
        *,
        inconclusive: bool = False,
        tls_expires_at: float | None = None,
        verdict: State | None = None,
        at: float | None = None,
    ) -> list[Transition]:
        """Take one probe result; return the transitions it causes (the
        observed one of its node, then the effective ones, by node). An
        `inconclusive` result (the watchdog's own trouble) is shown as the
        probe's last result but leaves its verdict as it was: it is no news
        about the target, good or bad. `tls_expires_at` is shown with it.
        A result another replica ran comes with its `verdict` (judged there,
        taken as it is) and the time `at` it ran."""
        probe = self._probes[key]
        now = self._clock() if at is None else at
        hysteresis = self._verdicts[key]
        if verdict is not None:
            hysteresis.force(verdict)
        else:
            verdict = hysteresis.state if inconclusive else hysteresis.update(state)
        self._last[key] = ProbeStatus(
            key, probe.kind, verdict, state, reason, latency_s, now, tls_expires_at
        )
        self._changed_probes.add(key)
        self._unreported.discard(key)
        node = probe.node
        before = self._observed[node]
        after = self._observe(node)
        if after != before:
            self._observed[node] = after
            self._changed_nodes.add(node)
            self._observations += 1
        if not self._settled:
            # Until every probe has reported once, effective states rest on
            # guesses (unknown counts as up): a restarted daemon would close
            # an incident on a guess. The first full picture is compared
            # with the empty one instead. (A reload later does not unsettle.)
            self._settled = self.ready
            return self._first_picture(now) if self._settled else []
        if after == before:
            return []
        cause = (node,) if after >= State.DEGRADED else ()
        changes = [Transition(node, "observed", before, after, now, cause, reason)]
        if after > before:
            # Worse: propagate from where we are, visiting only what gets
            # worse (a farm failing is a thousand of these in a row).
            return changes + self._worsen(node, after, now)
        return changes + self._reevaluate(now)

    def _worsen(self, node: str, observed: State, now: float) -> list[Transition]:
        old = self._states
        self._states, changed = old.worsened(node, observed)
        return self._changes(old, changed, now)

    def _changes(self, old: States, names: Iterable[str], now: float) -> list[Transition]:
        """The effective transitions from `old` to the states in force, for
        the nodes `names` (those that may have changed), by node."""
        new = self._states
        out = []
        for name in sorted(names):
            if old[name] != new[name]:
                self._since[name] = now
                self._changed_nodes.add(name)
                out.append(
                    Transition(name, "effective", old[name], new[name], now, new.causes(name))
                )
        return out

    def take_changes(self) -> tuple[frozenset[str], frozenset[str]] | None:
        """The nodes (observation, since when) and probes (last result) that
        changed since the last call; None when everything may have (a start,
        a reload): then the whole state is news."""
        changed = (frozenset(self._changed_nodes), frozenset(self._changed_probes))
        everything = self._changed_all
        self._changed_nodes, self._changed_probes, self._changed_all = set(), set(), False
        return None if everything else changed

    def resume(self, started: Mapping[str, float]) -> None:
        """Incidents a restarted daemon finds open: node -> when it started.
        A node still failed in the first full picture has been failed since
        then (not since the restart), so its alert is the same alert as
        before: same start, same identity, nothing sent twice."""
        self._resumed = dict(started)

    def _first_picture(self, now: float) -> list[Transition]:
        """Every probed node's observation, then every effective state, as
        transitions from knowing nothing."""
        out = []
        self._changed_all = True  # every node's since and state, at once
        for node, seen in sorted(self._observed.items()):
            if seen != State.UNKNOWN:
                reason = " ".join(self._last[k].last_reason for k in self._by_node[node])
                cause = (node,) if seen >= State.DEGRADED else ()
                out.append(Transition(node, "observed", State.UNKNOWN, seen, now, cause, reason))
        self._states = states = evaluate(self._topology, self._observed)
        for name in self._topology.nodes:
            if name in self._observed or states[name] != State.UP:
                was = State.UNKNOWN if name in self._observed else State.UP
                if states[name] != was:
                    failed = states[name] >= State.DEGRADED
                    self._since[name] = self._resumed.get(name, now) if failed else now
                    out.append(
                        Transition(name, "effective", was, states[name], now, states.causes(name))
                    )
        return out

    def _reevaluate(self, now: float) -> list[Transition]:
        old = self._states
        self._states = evaluate(self._topology, self._observed)
        return self._changes(old, set(old.not_up()) | set(self._states.not_up()), now)

    def replace(self, topology: Topology, probes: Sequence[ProbeConfig]) -> list[Transition]:
        """Put a reloaded topology in force, keeping what unchanged probes
        have seen; return the effective transitions it causes."""
        now = self._clock()
        old = self._states
        self._topology = topology
        self._changed_all = True
        self._install(probes)
        self._states = evaluate(topology, self._observed)
        since = {name: self._since.get(name, now) for name in topology.nodes}
        out = []
        for name in topology.nodes:
            was = old.get(name, State.UP)
            if was != self._states[name]:
                since[name] = now
                out.append(
                    Transition(
                        name, "effective", was, self._states[name], now, self._states.causes(name)
                    )
                )
        self._since = since
        return out

    def prepare(self, budget: int) -> bool:
        """Work out the root causes of at most `budget` more failing nodes,
        so that `failed` and `drifting` then find them ready; True once a
        pass over every failing node is complete. Lets the caller spread a
        storm's thousands of causes over several turns of its event loop
        instead of one long stall. A pass goes over the nodes failing when
        it began, with the states in force at each call (what changed
        meanwhile is left to `failed`)."""
        if self._preparing is None:
            states = self._states
            failing = [name for name, state in states.not_up().items() if state >= State.DEGRADED]
            self._preparing = (failing, 0)
        failing, at = self._preparing
        states = self._states
        for name in failing[at : at + budget]:
            states.causes(name)
        at += budget
        if at >= len(failing):
            self._preparing = None
            return True
        self._preparing = (failing, at)
        return False

    def failed(self) -> list[Failed]:
        """Every node effectively degraded or down, with its root causes and
        since when: what the alert rules group. The alert loop asks every
        second; the list is worked out again only when the states changed
        (every change puts a new `States` in force)."""
        states = self._states
        if self._failed is not None and self._failed[0] is states:
            return list(self._failed[1])
        # A node whose state, causes and start did not change keeps its record.
        kept = {f.node: f for f in self._failed[1]} if self._failed is not None else {}
        out = []
        for name, state in states.not_up().items():
            if state < State.DEGRADED:
                continue
            causes = states.causes(name)
            before = kept.get(name)
            if (
                before is not None
                and before.state == state
                and before.causes == causes
                and before.since == self._since[name]
            ):
                out.append(before)
            else:
                out.append(self._failed_node(name, state, causes))
        self._failed = (states, out)
        return list(out)

    def drifting(self) -> list[Failed]:
        """The nodes in drift, shaped for the alert rules."""
        return [self._failed_node(d.node, d.effective, d.causes) for d in self.drift()]

    def _failed_node(self, name: str, state: State, causes: tuple[str, ...]) -> Failed:
        node = self._topology.node(name)
        return Failed(
            name,
            state,
            causes,
            node.critical,
            self._topology.recovery_target_s(name),
            self._since[name],
            node.labels,
            # It needs other nodes, yet none of them explains its failure.
            unexplained=bool(node.groups) and causes == (name,),
        )

    @property
    def settled(self) -> bool:
        """Whether every probe has reported once since the start: before
        that, nothing is concluded (nor alerted)."""
        return self._settled

    def status(self, nodes: Iterable[str] | None = None) -> list[NodeStatus]:
        """Every node (or those named): observed and effective state, since
        when, why, and its probes."""
        return self._view().status(nodes)

    def view(self) -> LiveView:
        """The live state now, copied: safe to read from another thread
        (the store's worker judges maneuvers and silences on it) while
        this one changes."""
        return LiveView(
            topology=self._topology,
            states=self._states,
            observed=dict(self._observed),
            since=dict(self._since),
            probes_of={node: tuple(keys) for node, keys in self._by_node.items()},
            last=dict(self._last),
            drift=(),
            ready=self.ready,
        )

    def _view(self) -> LiveView:
        return LiveView(
            topology=self._topology,
            states=self._states,
            observed=self._observed,
            since=self._since,
            probes_of=self._by_node,
            last=self._last,
            drift=(),
            ready=self.ready,
        )

    def drift(self) -> list[Drift]:
        """Nodes probed up while the engine says something they require has
        taken them down (degraded by a soft dependency is no contradiction)."""
        states, version = self._states, self._observations
        if self._drift is not None and self._drift[0] is states and self._drift[1] == version:
            return list(self._drift[2])
        found = [
            Drift(name, states[name], states.causes(name))
            for name, seen in sorted(self._observed.items())
            if seen == State.UP and states[name] == State.DOWN
        ]
        self._drift = (states, version, found)
        return list(found)

    def what_if(self, actions: Sequence[Action]) -> Impact:
        """The blast radius of `actions` on top of what is observed now."""
        return what_if(self._topology, self._observed, actions)
