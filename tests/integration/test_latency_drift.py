"""A latency drift on a real HTTP server on loopback, probed with the real
HTTP probe: the latency baseline flags it as a regression long before the
probe's static latency threshold is crossed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from http_wire import MAX_REQUESTS_PER_CONNECTION, read_request, response

from topology import State
from watchdog.latency import LatencyBaseline, LatencyRules, apply_regression
from watchdog.probes import HttpClients, HttpProbe, HttpSpec, ProbeResult

pytestmark = pytest.mark.anyio

Serve = Callable[..., AbstractAsyncContextManager[Any]]

STATIC_THRESHOLD_S = 0.4
# The server's delay: 2ms while the baseline learns, then 10ms more per
# tick, on past the static threshold: a detector that flagged only there
# would fail the assertion that every answer up to the flag was under it.
BASE_DELAY_S = 0.002
STEP_S = 0.010
MAX_STEPS = 50
# Test-sized rules: 5 answers a tick, 3 ticks to learn, 3 slow ticks in a row.
RULES = LatencyRules(window=20, tick=5, learning_ticks=3, ticks=3)
STEADY_TICKS = RULES.learning_ticks + 2


class SlowingServer:
    """A keep-alive HTTP/1.1 server that answers 200 after `delay_s`."""

    def __init__(self) -> None:
        self.delay_s = BASE_DELAY_S

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return  # the client closed its connection
            await asyncio.sleep(self.delay_s)
            writer.write(response(200, b"ok"))
            await writer.drain()


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    async with HttpClients() as shared:
        yield shared


async def test_a_slowing_server_is_flagged_before_the_static_threshold(
    serve: Serve, clients: HttpClients
) -> None:
    server = SlowingServer()
    baseline = LatencyBaseline(RULES)
    seen: list[tuple[float, ProbeResult]] = []  # (server delay, verdict)

    async with serve(server) as target:
        spec = HttpSpec(
            f"http://127.0.0.1:{target.port}/health",
            timeout_s=2.0,
            latency_threshold_s=STATIC_THRESHOLD_S,
        )
        probe = HttpProbe(spec, clients.client_for(spec))

        async def tick() -> None:
            for _ in range(RULES.tick):
                result = await probe.check()
                assert result.latency_s is not None, result
                # `now` is the count of answers: the baseline never reads a clock.
                baseline.observe(result.latency_s, float(len(seen)))
                seen.append((server.delay_s, apply_regression(result, baseline)))

        for _ in range(STEADY_TICKS):
            await tick()
        assert baseline.baseline_s is not None
        for step in range(1, MAX_STEPS + 1):
            if baseline.regression is not None:
                break
            server.delay_s = BASE_DELAY_S + step * STEP_S
            await tick()

    flagged = [
        i for i, (_, verdict) in enumerate(seen) if verdict.reason.startswith("latency regression")
    ]
    assert flagged, f"no regression flagged up to {server.delay_s * 1000:.0f}ms"
    first = flagged[0]
    delay, verdict = seen[first]
    assert verdict.state is State.DEGRADED
    assert delay > BASE_DELAY_S  # flagged for the drift, not for the steady server
    # Every answer up to the flag was up, under the static threshold: the
    # regression came first.
    before = [result for _, result in seen[:first]]
    assert all(result.state is State.UP for result in before)
    latencies = [result.latency_s for _, result in seen[: first + 1]]
    assert all(latency is not None and latency < STATIC_THRESHOLD_S for latency in latencies)
    regression = baseline.regression
    assert regression is not None
    assert regression.p95_s < STATIC_THRESHOLD_S
    assert regression.baseline_s < regression.p95_s
