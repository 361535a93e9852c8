"""The alerts that have spoken, kept in the state store: a restarted daemon
takes them back, so that it resolves (once) what recovered while it was
down and does not send a second first message for what still fires.

The concern's interface: `load`, `save`."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from alerts.codec import dump_tracked, load_tracked
from alerts.rules import TrackedAlert
from watchdog.store import Fence, Store

__all__ = ["AlertState"]

log = logging.getLogger(__name__)


class AlertState:
    """The `alerts` table of a `Store`."""

    def __init__(self, store: Store, fence: Fence | None = None) -> None:
        self.store = store
        # For a replica of several: only the lease's holder saves.
        self.fence = fence

    def load(self) -> list[TrackedAlert]:
        """Every alert kept, by key; a row this build cannot read is logged
        and skipped (its alert then fires again if it still fires)."""
        rows = self.store.query("cannot read alerts", "SELECT key, state FROM alerts ORDER BY key")
        out = []
        for key, text in rows:
            try:
                out.append(load_tracked(text))
            except (ValueError, KeyError, TypeError) as err:
                log.error("alert state unreadable key=%s error=%s", key, type(err).__name__)
        return out

    def save(self, changes: Mapping[str, TrackedAlert | None], at: float) -> None:
        """Keep the alerts given, drop those given as None, in one
        transaction (only while its fence passes: a replica's lease)."""
        if not changes:
            return
        kept = [(key, dump_tracked(t), at) for key, t in changes.items() if t is not None]
        dropped = [(key,) for key, t in changes.items() if t is None]
        with self.store.transaction("cannot save alerts") as tx:
            tx.executemany(
                "INSERT INTO alerts (key, state, saved_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
                " saved_at = excluded.saved_at",
                kept,
            )
            tx.executemany("DELETE FROM alerts WHERE key = ?", dropped)
            if self.fence is not None:
                self.fence(tx)  # last, just before the commit
