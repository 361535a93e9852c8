"""Probe state in the store, SQLite's and Postgres's: saved parts come back
after a reopen, a save replaces only the parts it names, removed probes are
forgotten."""

from __future__ import annotations

from postgres_server import Backend

from watchdog.probe_state import ProbeState


def test_it_keeps_parts_across_a_reopen_and_replaces_only_those_saved(backend: Backend) -> None:
    store = backend.open()
    state = ProbeState(store)
    assert state.load("api#0") == {}
    state.save("api#0", {"positions": b"{}", "miner": b"\x00\xff"}, 1.0)
    state.save("api#0", {"positions": b'{"a": 1}'}, 2.0)
    state.save("db#1", {"latency": b"[]"}, 2.0)
    store.close()

    store = backend.open()
    state = ProbeState(store)
    assert state.load("api#0") == {"positions": b'{"a": 1}', "miner": b"\x00\xff"}
    assert state.forget({"db#1"}) == 2
    assert (state.load("api#0"), state.load("db#1")) == ({}, {"latency": b"[]"})
    assert state.forget(()) == 1
    store.close()
