"""The alerts that have spoken, kept in the store (SQLite's and Postgres's):
a save keeps some and drops others in one go, a reopen gives them back by
key, and a row this build cannot read is skipped, not fatal."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from postgres_server import Backend

from alerts.model import Alert
from alerts.rules import TrackedAlert
from watchdog.alert_state import AlertState


def tracked(key: str, sent: int = 1) -> TrackedAlert:
    alert = Alert(
        key=key,
        kind="outage",
        severity="critical",
        root_cause=(key.partition(":")[2],),
        summary=f"{key} is down",
        started_at=900.0,
    )
    return TrackedAlert(
        alert=alert,
        fired_at=910.0,
        last_sent=910.5,
        sent=sent,
        critical_named=frozenset({"workflow"}),
        escalations=MappingProxyType({"slack": 1}),
        members=frozenset({"farm"}),
    )


def test_it_keeps_and_drops_alerts_across_a_reopen(backend: Backend) -> None:
    with backend.open() as store:
        state = AlertState(store)
        assert state.load() == []
        state.save({"outage:farm": tracked("outage:farm"), "outage:db": tracked("outage:db")}, 1.0)
        # One spoke again, one resolved: replaced and dropped together.
        state.save({"outage:farm": tracked("outage:farm", sent=2), "outage:db": None}, 2.0)
        state.save({}, 3.0)

    with backend.open() as store:
        assert AlertState(store).load() == [tracked("outage:farm", sent=2)]


def test_an_unreadable_row_is_logged_and_skipped(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with backend.open() as store:
        AlertState(store).save({"outage:farm": tracked("outage:farm")}, 1.0)
        with store.transaction("test") as tx:
            tx.execute(
                "INSERT INTO alerts (key, state, saved_at) VALUES (?, ?, ?)",
                ("outage:old", '{"from": "another version"}', 1.0),
            )

        assert AlertState(store).load() == [tracked("outage:farm")]
    assert "alert state unreadable key=outage:old error=KeyError" in caplog.text
