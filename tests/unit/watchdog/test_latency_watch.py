"""Latency baselines per probe: kept across a restart for the same target,
learned afresh when the target changes, none for probes without latency."""

from __future__ import annotations

from postgres_server import Backend

from topology import State
from watchdog.config import ExecSpec, ProbeConfig, Schedule
from watchdog.latency import LatencyRules
from watchdog.latency_watch import LatencyWatch
from watchdog.probe_state import ProbeState
from watchdog.probes import ProbeResult, TcpSpec

RULES = LatencyRules(window=10, tick=2, learning_ticks=2, ticks=2)


def tcp(port: int) -> ProbeConfig:
    return ProbeConfig("db", 0, "tcp", TcpSpec("127.0.0.1", port), Schedule(), 1)


def learn(watch: LatencyWatch, key: str, latency_s: float, count: int, start: float) -> None:
    for i in range(count):
        watch.track(key, ProbeResult(State.UP, "ok", latency_s), start + i)


def test_a_baseline_survives_a_restart_and_is_relearned_for_a_new_target(
    backend: Backend,
) -> None:
    store = backend.open()
    watch = LatencyWatch(ProbeState(store), RULES)
    exec_probe = ProbeConfig("job", 0, "exec", ExecSpec(("true",)), Schedule(), 2)
    watch.replace([tcp(5432), exec_probe])
    assert watch.baseline("job#0") is None
    learn(watch, "db#0", 0.010, 4, 0.0)
    assert watch.baseline("db#0") is not None
    assert watch.baseline("db#0").baseline_s == 0.010  # type: ignore[union-attr]
    watch.save(10.0)
    store.close()

    store = backend.open()
    again = LatencyWatch(ProbeState(store), RULES)
    again.replace([tcp(5432)])
    details = again.details("db#0")
    assert details is not None
    assert (details["baseline_p95_s"], details["samples"]) == (0.010, 4)
    # Slow answers now: a regression, judged against the restored baseline.
    learn(again, "db#0", 0.100, 4, 20.0)
    slow = again.track("db#0", ProbeResult(State.UP, "ok", 0.1), 30.0)
    assert slow.state is State.DEGRADED
    assert slow.reason.startswith("latency regression: p95 100ms vs usual 10ms")

    # Another port is another target: its baseline is learned afresh.
    again.replace([tcp(6432)])
    assert again.details("db#0") == {
        "samples": 0,
        "p50_s": None,
        "p95_s": None,
        "p99_s": None,
        "baseline_p95_s": None,
        "spread_s": None,
        "regression": None,
    }
    store.close()


def test_an_unreadable_saved_baseline_is_learned_again(backend: Backend) -> None:
    store = backend.open()
    ProbeState(store).save("db#0", {"latency": b"\xff not json"}, 1.0)
    watch = LatencyWatch(ProbeState(store), RULES)
    watch.replace([tcp(5432)])
    assert watch.details("db#0") is not None
    assert watch.details("db#0")["samples"] == 0  # type: ignore[index]
    store.close()
