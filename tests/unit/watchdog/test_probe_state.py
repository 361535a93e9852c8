"""Probe state in the store, SQLite's and Postgres's: saved parts come back
after a reopen, a save replaces only the parts it names, removed probes are
forgotten; many probes read at once, and answered from that read."""

from __future__ import annotations

from postgres_server import Backend

from watchdog.probe_state import Preloaded, ProbeState


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


def test_load_many_reads_what_each_probe_saved_and_preloaded_answers_from_it(
    backend: Backend,
) -> None:
    store = backend.open()
    state = ProbeState(store)
    state.save("api#0", {"positions": b"{}", "miner": b"\x00\xff"}, 1.0)
    state.save("db#1", {"latency": b"[]"}, 1.0)
    many = [f"new#{i}" for i in range(1200)]  # more than one query's worth
    loaded = state.load_many(["api#0", "db#1", *many])
    assert loaded["api#0"] == {"positions": b"{}", "miner": b"\x00\xff"}
    assert loaded["db#1"] == {"latency": b"[]"}
    assert all(loaded[name] == {} for name in many)

    preloaded = Preloaded(state, {"api#0": loaded["api#0"]})
    state.save("api#0", {"positions": b'{"a": 1}'}, 2.0)  # after the read: not seen
    assert preloaded.load("api#0") == {"positions": b"{}", "miner": b"\x00\xff"}
    assert preloaded.load("db#1") == {"latency": b"[]"}  # not preloaded: read now
    preloaded.save("db#1", {"latency": b"[1]"}, 3.0)  # saves go to the store
    assert state.load("db#1") == {"latency": b"[1]"}
    store.close()
