"""The stored concerns as the daemon's loop uses them: an async interface for
each (incidents and transitions, alert state, outbox, probe state,
maneuvers, silences), and the one implementation of them all over the
synchronous classes, whose calls run on the store's worker thread.

Why async: with Postgres every call is a network round trip, and the loop
that waits for it is the one that runs the probes. A slow store must never
delay a probe (nor be reported as the estate's trouble), so nothing on the
loop calls the store: it awaits these, and the calls run, one at a time and
in the order asked, on a single thread (`worker`), which also writes the
history (`Daemon._write`): what was written before a read is read back.

Each call raises what the synchronous class raises (`StoreError` when the
store fails; `ManeuverError`, `SilenceError` for a refusal)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, ParamSpec, Protocol, TypeVar

from alerts import delivery
from alerts.delivery import Entry
from alerts.model import Alert, Notification, Receipt
from alerts.rules import TrackedAlert
from topology import Action, Topology
from watchdog.alert_state import AlertState
from watchdog.live import LiveView
from watchdog.maneuvers import Maneuver, Maneuvers
from watchdog.outbox import Outbox
from watchdog.probe_state import ProbeState
from watchdog.silences import Silence, Silences
from watchdog.store import Incident, Store

__all__ = [
    "Stored",
    "StoredAlertState",
    "StoredIncidents",
    "StoredManeuvers",
    "StoredOutbox",
    "StoredProbeState",
    "StoredSilences",
    "Threaded",
    "ThreadedAlertState",
    "ThreadedIncidents",
    "ThreadedManeuvers",
    "ThreadedOutbox",
    "ThreadedProbeState",
    "ThreadedSilences",
    "on_worker",
    "threaded",
    "worker",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def worker() -> concurrent.futures.ThreadPoolExecutor:
    """The store's worker: one thread, so that calls run in the order they
    were asked (the store has one connection, behind a lock, anyway)."""
    return concurrent.futures.ThreadPoolExecutor(1, "watchdog-store")


async def on_worker(
    executor: concurrent.futures.Executor,
    call: Callable[P, R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`call(*args, **kwargs)` run on `executor`, awaited: the loop runs on
    meanwhile. Its exception, if any, is raised here."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(call, *args, **kwargs))


# --- the interfaces -------------------------------------------------------


class StoredIncidents(Protocol):
    """Incidents and transitions, as the loop reads them (the loop writes
    them without waiting: `Daemon._write`)."""

    async def incidents(self, since: float, node: str | None = None) -> list[Incident]:
        """Incidents open at any time since `since` (of `node` only)."""
        ...


class StoredOutbox(delivery.Outbox, Protocol):
    """The outbox: what delivery needs, and what the daemon queues and counts."""

    async def put(
        self,
        notifications: Sequence[Notification],
        sinks: Sequence[str],
        at: float,
        *,
        fenced: bool = True,
    ) -> int:
        """Queue each notification for each sink, once; return how many
        (`fenced`: only while this replica holds the lease)."""
        ...

    async def counts(self) -> dict[tuple[str, str], int]:
        """How many entries per (sink, state)."""
        ...


class StoredAlertState(Protocol):
    """The alerts that have spoken."""

    async def load(self) -> list[TrackedAlert]:
        """Every alert kept."""
        ...

    async def save(self, changes: Mapping[str, TrackedAlert | None], at: float) -> None:
        """Keep the alerts given, drop those given as None, all or none."""
        ...


class StoredProbeState(Protocol):
    """What probes learned."""

    async def load(self, probe: str) -> dict[str, bytes]:
        """Every part saved for `probe`."""
        ...

    async def load_many(self, probes: Collection[str]) -> dict[str, dict[str, bytes]]:
        """`load` for each of `probes`, by name."""
        ...

    async def save_many(self, probes: Mapping[str, Mapping[str, bytes]], at: float) -> None:
        """Replace the given parts of each probe's state, all or none."""
        ...

    async def forget(self, keep: Collection[str]) -> int:
        """Drop the state of every probe not in `keep`; how many rows went."""
        ...


class StoredManeuvers(Protocol):
    """Maneuvers, judged on a view of the live state taken on the loop."""

    async def start(
        self,
        live: LiveView,
        actions: Sequence[Action],
        *,
        by: str,
        reason: str,
        force: bool,
        at: float,
    ) -> tuple[Maneuver, Notification]:
        """Judge and record a maneuver; it with its announcement."""
        ...

    async def end(self, live: LiveView, ident: int, at: float) -> tuple[Maneuver, Notification]:
        """End a running maneuver; it with its announcement."""
        ...

    async def watched(self) -> frozenset[str]:
        """The critical nodes that running maneuvers impact."""
        ...

    async def recent(self, limit: int = 100) -> list[Maneuver]:
        """The latest maneuvers, newest first."""
        ...


class StoredSilences(Protocol):
    """Silences, judged on a view of the live state taken on the loop."""

    async def add(
        self,
        live: LiveView,
        *,
        node: str | None,
        label: tuple[str, str] | None,
        duration_s: float,
        by: str,
        reason: str,
        force: bool,
        at: float,
    ) -> tuple[Silence, Notification]:
        """Record a silence; it with its announcement."""
        ...

    async def expire(self, ident: int, at: float) -> tuple[Silence, Notification | None]:
        """End a silence now; it with its notice (None if it had ended)."""
        ...

    async def ended(self, now: float) -> list[tuple[Silence, Notification]]:
        """The silences that ran out since the last call, with notices."""
        ...

    async def active(self, now: float) -> list[Silence]:
        """The silences in force at `now`."""
        ...

    def muting(
        self, alert: Alert, topology: Topology, now: float, active: Sequence[Silence]
    ) -> Silence | None:
        """The silence among `active` that mutes `alert`, if any: no store
        read (the caller read `active` once for many alerts)."""
        ...


# --- the implementation ---------------------------------------------------


class Threaded(Generic[T]):
    """A synchronous stored concern, `sync`, whose calls run on `executor`
    (the store's worker): the base of the async adapters below, each of
    which names its methods so that they keep their types."""

    def __init__(self, sync: T, executor: concurrent.futures.Executor) -> None:
        self.sync = sync
        self.executor = executor

    async def _run(self, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await on_worker(self.executor, call, *args, **kwargs)


class ThreadedIncidents(Threaded[Store]):
    """`StoredIncidents` over a `Store`."""

    async def incidents(self, since: float, node: str | None = None) -> list[Incident]:
        """See `Store.incidents`."""
        return await self._run(self.sync.incidents, since, node)


class ThreadedOutbox(Threaded[Outbox]):
    """`StoredOutbox` over an `Outbox` (see its methods)."""

    async def put(
        self,
        notifications: Sequence[Notification],
        sinks: Sequence[str],
        at: float,
        *,
        fenced: bool = True,
    ) -> int:
        """See `Outbox.put`."""
        return await self._run(self.sync.put, notifications, sinks, at, fenced=fenced)

    async def due(self, now: float, limit: int, sink: str | None = None) -> list[Entry]:
        """See `Outbox.due`."""
        return await self._run(self.sync.due, now, limit, sink)

    async def next_due(self, sink: str) -> float | None:
        """See `Outbox.next_due`."""
        return await self._run(self.sync.next_due, sink)

    async def pending(self) -> dict[str, int]:
        """See `Outbox.pending`."""
        return await self._run(self.sync.pending)

    async def receipt(self, notification: Notification, sink: str) -> Receipt | None:
        """See `Outbox.receipt`."""
        return await self._run(self.sync.receipt, notification, sink)

    async def begin(self, entry: Entry, at: float) -> bool:
        """See `Outbox.begin`."""
        return await self._run(self.sync.begin, entry, at)

    async def delivered(self, entry: Entry, receipt: Receipt, at: float) -> None:
        """See `Outbox.delivered`."""
        await self._run(self.sync.delivered, entry, receipt, at)

    async def retry(self, entry: Entry, error: str, at: float, next_at: float) -> None:
        """See `Outbox.retry`."""
        await self._run(self.sync.retry, entry, error, at, next_at)

    async def give_up(self, entry: Entry, error: str, at: float) -> None:
        """See `Outbox.give_up`."""
        await self._run(self.sync.give_up, entry, error, at)

    async def counts(self) -> dict[tuple[str, str], int]:
        """See `Outbox.counts`."""
        return await self._run(self.sync.counts)


class ThreadedAlertState(Threaded[AlertState]):
    """`StoredAlertState` over an `AlertState`."""

    async def load(self) -> list[TrackedAlert]:
        """See `AlertState.load`."""
        return await self._run(self.sync.load)

    async def save(self, changes: Mapping[str, TrackedAlert | None], at: float) -> None:
        """See `AlertState.save`."""
        await self._run(self.sync.save, changes, at)


class ThreadedProbeState(Threaded[ProbeState]):
    """`StoredProbeState` over a `ProbeState`."""

    async def load(self, probe: str) -> dict[str, bytes]:
        """See `ProbeState.load`."""
        return await self._run(self.sync.load, probe)

    async def load_many(self, probes: Collection[str]) -> dict[str, dict[str, bytes]]:
        """See `ProbeState.load_many`."""
        return await self._run(self.sync.load_many, probes)

    async def save_many(self, probes: Mapping[str, Mapping[str, bytes]], at: float) -> None:
        """See `ProbeState.save_many`."""
        await self._run(self.sync.save_many, probes, at)

    async def forget(self, keep: Collection[str]) -> int:
        """See `ProbeState.forget`."""
        return await self._run(self.sync.forget, keep)


class ThreadedManeuvers(Threaded[Maneuvers]):
    """`StoredManeuvers` over `Maneuvers`."""

    async def start(
        self,
        live: LiveView,
        actions: Sequence[Action],
        *,
        by: str,
        reason: str,
        force: bool,
        at: float,
    ) -> tuple[Maneuver, Notification]:
        """See `Maneuvers.start`."""
        return await self._run(
            self.sync.start, live, actions, by=by, reason=reason, force=force, at=at
        )

    async def end(self, live: LiveView, ident: int, at: float) -> tuple[Maneuver, Notification]:
        """See `Maneuvers.end`."""
        return await self._run(self.sync.end, live, ident, at)

    async def watched(self) -> frozenset[str]:
        """See `Maneuvers.watched`."""
        return await self._run(self.sync.watched)

    async def recent(self, limit: int = 100) -> list[Maneuver]:
        """See `Maneuvers.recent`."""
        return await self._run(self.sync.recent, limit)


class ThreadedSilences(Threaded[Silences]):
    """`StoredSilences` over `Silences` (whose memory of what it announced
    is then only ever touched by the worker thread)."""

    async def add(
        self,
        live: LiveView,
        *,
        node: str | None,
        label: tuple[str, str] | None,
        duration_s: float,
        by: str,
        reason: str,
        force: bool,
        at: float,
    ) -> tuple[Silence, Notification]:
        """See `Silences.add`."""
        return await self._run(
            self.sync.add,
            live,
            node=node,
            label=label,
            duration_s=duration_s,
            by=by,
            reason=reason,
            force=force,
            at=at,
        )

    async def expire(self, ident: int, at: float) -> tuple[Silence, Notification | None]:
        """See `Silences.expire`."""
        return await self._run(self.sync.expire, ident, at)

    async def ended(self, now: float) -> list[tuple[Silence, Notification]]:
        """See `Silences.ended`."""
        return await self._run(self.sync.ended, now)

    async def active(self, now: float) -> list[Silence]:
        """See `Silences.active`."""
        return await self._run(self.sync.active, now)

    def muting(
        self, alert: Alert, topology: Topology, now: float, active: Sequence[Silence]
    ) -> Silence | None:
        """See `Silences.muting`: with `active` given, it reads nothing."""
        return self.sync.muting(alert, topology, now, active)


@dataclass(frozen=True, slots=True)
class Stored:
    """Every stored concern, as the loop uses it."""

    incidents: StoredIncidents
    outbox: StoredOutbox
    alert_state: StoredAlertState
    probe_state: StoredProbeState
    maneuvers: StoredManeuvers
    silences: StoredSilences


def threaded(
    executor: concurrent.futures.Executor,
    *,
    store: Store,
    outbox: Outbox,
    alert_state: AlertState,
    probe_state: ProbeState,
    maneuvers: Maneuvers,
    silences: Silences,
) -> Stored:
    """The synchronous concerns of one store, each call run on `executor`
    (one thread: `worker()`), so that they keep the order they were asked in."""
    return Stored(
        incidents=ThreadedIncidents(store, executor),
        outbox=ThreadedOutbox(outbox, executor),
        alert_state=ThreadedAlertState(alert_state, executor),
        probe_state=ThreadedProbeState(probe_state, executor),
        maneuvers=ThreadedManeuvers(maneuvers, executor),
        silences=ThreadedSilences(silences, executor),
    )
