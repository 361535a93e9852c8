"""What probes learned, kept in the state store so that a restart does not
relearn it: a log probe's file offsets, anomaly baselines and Drain
templates, an HTTP or TCP probe's latency baseline. Each probe saves named
parts, as bytes, all of a save in one transaction.

The concern's interface: `load`, `save`, `save_many`, `forget`."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from watchdog.store import Store

__all__ = ["ProbeState"]


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
