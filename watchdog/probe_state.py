"""What probes learned, kept in the state store so that a restart does not
relearn it: a log probe's file offsets, anomaly baselines and Drain
templates, an HTTP or TCP probe's latency baseline. Each probe saves named
parts, as bytes, all of a save in one transaction.

The concern's interface: `load`, `load_many`, `save`, `save_many`, `forget`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from watchdog.store import Store

__all__ = ["Preloaded", "ProbeState"]

# Probes read per query by `load_many`: within any backend's parameter limit.
_CHUNK = 500


class ProbeState:
    """The `probe_state` table of a `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self, probe: str) -> dict[str, bytes]:
        """Every part saved for `probe` (empty when none was)."""
        rows = self.store.query(
            "cannot read probe state",
            "SELECT part, data FROM probe_state WHERE probe = ?",
            (probe,),
        )
        return {part: bytes(data) for part, data in rows}

    def load_many(self, probes: Iterable[str]) -> dict[str, dict[str, bytes]]:
        """`load` for each of `probes`, in few queries: every probe named,
        by name (empty parts when none were saved)."""
        names = sorted(set(probes))
        out: dict[str, dict[str, bytes]] = {name: {} for name in names}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            rows = self.store.query(
                "cannot read probe state",
                "SELECT probe, part, data FROM probe_state"
                f" WHERE probe IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for probe, part, data in rows:
                out[probe][part] = bytes(data)
        return out

    def save(self, probe: str, parts: Mapping[str, bytes], at: float) -> None:
        """Replace the given parts of `probe`'s state, all or none."""
        self.save_many({probe: parts}, at)

    def save_many(self, probes: Mapping[str, Mapping[str, bytes]], at: float) -> None:
        """`save` for many probes in one transaction (one disk sync, not
        one per probe)."""
        rows = [
            (probe, part, data, at)
            for probe, parts in probes.items()
            for part, data in parts.items()
        ]
        if not rows:
            return
        with self.store.transaction("cannot save probe state") as tx:
            tx.executemany(
                "INSERT INTO probe_state (probe, part, data, saved_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (probe, part) DO UPDATE SET data = excluded.data,"
                " saved_at = excluded.saved_at",
                rows,
            )

    def forget(self, keep: Collection[str]) -> int:
        """Drop the state of every probe not in `keep` (removed from the
        file); return how many rows went."""
        names = sorted(set(keep))
        marks = ", ".join("?" * len(names))
        where = f"WHERE probe NOT IN ({marks})" if names else ""
        with self.store.transaction("cannot forget probe state") as tx:
            return tx.execute(f"DELETE FROM probe_state {where}", names).changed


class Preloaded(ProbeState):
    """`state` whose `load` answers from what `load_many` read beforehand
    (off the loop), for the probes it read; saves go to the store as
    `state`'s do. For the probes a reload makes, on the loop: they read
    what they learned without the loop waiting for the store."""

    def __init__(self, state: ProbeState, loaded: Mapping[str, Mapping[str, bytes]]) -> None:
        super().__init__(state.store)
        self._loaded = loaded

    def load(self, probe: str) -> dict[str, bytes]:
        """What was read for `probe` beforehand; read now if it was not."""
        found = self._loaded.get(probe)
        return dict(found) if found is not None else super().load(probe)
