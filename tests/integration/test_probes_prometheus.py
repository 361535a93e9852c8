"""The prometheus probe against a real Prometheus (tests/integration/
prometheus_server.py): values judged by comparisons, no data, NaN, several
series, firing alerts, a bad query, a Prometheus that is down; against
local servers for what a real one will not do (ask for credentials, stall,
answer garbage); and its unknown results through the daemon's live state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from topology import State
from watchdog.config import load_config
from watchdog.live import LiveState
from watchdog.probes import PROBE_KINDS, HttpClients, ProbeResult
from watchdog.probes.prometheus import (
    Comparison,
    PrometheusProbe,
    PrometheusServer,
    PrometheusSpec,
)

Serve = Callable[..., AbstractAsyncContextManager[Any]]

# A short deadline for a server that never answers: it bounds the test, no
# test asserts how long anything took.
STALL_TIMEOUT_S = 0.3


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    async with HttpClients() as shared:
        yield shared


async def check(
    clients: HttpClients,
    url: str,
    query: str,
    environ: dict[str, str] | None = None,
    **spec: Any,
) -> ProbeResult:
    server = spec.pop("server", PrometheusServer(url))
    probe = PrometheusProbe(
        PrometheusSpec(query, server, **spec), clients.get(verify_tls=True), environ or {}
    )
    return await probe.check()


def verdict(result: ProbeResult) -> tuple[State, str]:
    return result.state, result.reason


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "spec", "expected"),
    [
        ('orders_up{service="a"}', {}, (State.UP, "value 1")),
        ('orders_up{service="b"}', {}, (State.DOWN, "value 0 (0 is down)")),
        (
            'orders_up{service="b"}',
            {"down_if": Comparison.parse("< 1")},
            (State.DOWN, "value 0 (down_if < 1)"),
        ),
        (
            'orders_up{service="a"}',
            {"down_if": Comparison.parse("< 1")},
            (State.UP, "value 1"),
        ),
        (
            'error_ratio{service="a"}',
            {"degraded_if": Comparison.parse("> 0.05")},
            (State.DEGRADED, "value 0.07 (degraded_if > 0.05)"),
        ),
        (
            'error_ratio{service="a"}',
            {"down_if": Comparison.parse(">= 0.5"), "degraded_if": Comparison.parse("> 0.05")},
            (State.DEGRADED, "value 0.07 (degraded_if > 0.05)"),
        ),
        (
            'error_ratio{service="a"}',
            {"down_if": Comparison.parse("!= 0"), "degraded_if": Comparison.parse("> 0.05")},
            (State.DOWN, "value 0.07 (down_if != 0)"),
        ),
        ('scalar(orders_up{service="a"})', {}, (State.UP, "value 1")),
        (
            "vector(0) + 3",
            {"down_if": Comparison.parse("== 3")},
            (State.DOWN, "value 3 (down_if == 3)"),
        ),
    ],
)
async def test_it_judges_the_value_by_its_comparisons(
    prometheus: str,
    clients: HttpClients,
    query: str,
    spec: dict[str, Any],
    expected: tuple[State, str],
) -> None:
    assert verdict(await check(clients, prometheus, query, **spec)) == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # No series: nothing is known of the target, good or bad.
        ('orders_up{service="nowhere"}', (State.UNKNOWN, "no data for query")),
        # A series that ended an hour ago is past Prometheus's lookback.
        ('ended{service="a"}', (State.UNKNOWN, "no data for query")),
        ("not_a_number", (State.UNKNOWN, "value NaN")),
        (
            'orders_up{service="a"}[5m]',
            (
                State.UNKNOWN,
                "the query returns a range vector: ask for an instant vector or a scalar",
            ),
        ),
    ],
)
async def test_no_data_is_unknown_never_up(
    prometheus: str, clients: HttpClients, query: str, expected: tuple[State, str]
) -> None:
    down_if = Comparison.parse("< 1")
    assert verdict(await check(clients, prometheus, query, down_if=down_if)) == expected


@pytest.mark.anyio
async def test_several_series_give_the_worst_verdict_naming_its_series(
    prometheus: str, clients: HttpClients
) -> None:
    result = await check(clients, prometheus, "several_up", down_if=Comparison.parse("< 1"))
    assert verdict(result) == (
        State.DOWN,
        'value 0 (down_if < 1) for several_up{instance="y"} (1 of 3 series down)',
    )
    result = await check(clients, prometheus, 'several_up{instance!="y"}')
    assert verdict(result) == (
        State.UP,
        'value 1 for several_up{instance="x"} (2 of 2 series up)',
    )


@pytest.mark.anyio
async def test_a_bad_query_is_unknown_naming_prometheus_error(
    prometheus: str, clients: HttpClients
) -> None:
    state, reason = verdict(await check(clients, prometheus, 'orders_up{service="a"'))
    assert state == State.UNKNOWN
    assert reason.startswith('prometheus error: bad_data: invalid parameter "query": ')
    assert "parse error" in reason


@pytest.mark.anyio
async def test_a_prometheus_that_is_down_is_unknown_not_the_targets_failure(
    clients: HttpClients, closed_port: int
) -> None:
    result = await check(clients, f"http://127.0.0.1:{closed_port}", "up")
    assert verdict(result) == (State.UNKNOWN, "prometheus unreachable: connect refused")
    assert result.inconclusive == ""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "spec", "expected"),
    [
        (
            'ALERTS{alertstate="firing", alertname="OrderWorkflowDown"}',
            {},
            (State.DOWN, "alert OrderWorkflowDown firing"),
        ),
        # Pending is not firing: an empty result, no alert firing.
        (
            'ALERTS{alertstate="firing", alertname="SearchDown"}',
            {},
            (State.UP, "no alert firing"),
        ),
        (
            'ALERTS{alertstate="firing"}',
            {},
            (State.DOWN, "alerts firing: OrderWorkflowDown, PaymentsSlow"),
        ),
        (
            'ALERTS{alertstate="firing", alertname="PaymentsSlow"}',
            {"degraded_if": Comparison.parse("> 0")},
            (State.DEGRADED, "alert PaymentsSlow firing, value 1 (degraded_if > 0)"),
        ),
    ],
)
async def test_a_firing_alert_is_the_observation(
    prometheus: str,
    clients: HttpClients,
    query: str,
    spec: dict[str, Any],
    expected: tuple[State, str],
) -> None:
    assert verdict(await check(clients, prometheus, query, alert=True, **spec)) == expected


@pytest.mark.anyio
async def test_without_alert_an_empty_alerts_query_stays_unknown(
    prometheus: str, clients: HttpClients
) -> None:
    query = 'ALERTS{alertstate="firing", alertname="SearchDown"}'
    assert verdict(await check(clients, prometheus, query)) == (
        State.UNKNOWN,
        "no data for query",
    )


def answering(
    status: int, body: bytes, seen: list[dict[str, str]] | None = None
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """A one-request HTTP server answering `status` and `body`; the
    request's headers go to `seen`."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        if seen is not None:
            seen.append(
                {
                    k.lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines if line)
                }
            )
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    return handler


VECTOR_ONE = json.dumps(
    {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]},
    }
).encode()


@pytest.mark.anyio
async def test_credentials_come_from_the_environment(serve: Serve, clients: HttpClients) -> None:
    seen: list[dict[str, str]] = []
    async with serve(answering(200, VECTOR_ONE, seen)) as server:
        url = f"http://127.0.0.1:{server.port}"
        bearer = PrometheusServer(url, bearer_token_env="PROM_TOKEN")
        result = await check(clients, url, "up", {"PROM_TOKEN": "s3cret"}, server=bearer)
        assert verdict(result) == (State.UP, "value 1")
        basic = PrometheusServer(url, username="reader", password_env="PROM_PASSWORD")
        result = await check(clients, url, "up", {"PROM_PASSWORD": "pw"}, server=basic)
        assert verdict(result) == (State.UP, "value 1")
        missing = await check(clients, url, "up", {}, server=bearer)
    assert [h["authorization"] for h in seen] == ["Bearer s3cret", "Basic cmVhZGVyOnB3"]
    assert verdict(missing) == (
        State.UNKNOWN,
        "the environment variable PROM_TOKEN is not set or empty",
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (502, b"<html>bad gateway</html>", "prometheus answered status 502"),
        (200, b"not json", "prometheus answered something other than its API's JSON"),
        (
            422,
            json.dumps(
                {"status": "error", "errorType": "execution", "error": "query timed out"}
            ).encode(),
            "prometheus error: execution: query timed out",
        ),
    ],
)
async def test_what_is_not_an_answer_is_unknown(
    serve: Serve, clients: HttpClients, status: int, body: bytes, reason: str
) -> None:
    async with serve(answering(status, body)) as server:
        result = await check(clients, f"http://127.0.0.1:{server.port}", "up")
    assert verdict(result) == (State.UNKNOWN, reason)


@pytest.mark.anyio
async def test_a_prometheus_that_does_not_answer_in_time_is_unknown(
    serve: Serve, clients: HttpClients
) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe gives up

    async with serve(stall) as server:
        result = await check(
            clients, f"http://127.0.0.1:{server.port}", "up", timeout_s=STALL_TIMEOUT_S
        )
    assert verdict(result) == (State.UNKNOWN, "prometheus unreachable: timeout after 300ms")


@pytest.mark.anyio
async def test_the_daemons_pipeline_takes_an_unknown_result_as_unknown_never_up(
    prometheus: str, tmp_path: Path, closed_port: int
) -> None:
    """From the file to the node's observation: the probe built by the
    registry, its results through the hysteresis of the live state."""
    path = tmp_path / "estate.yaml"
    path.write_text(
        "version: 1\n"
        f"defaults: {{prometheus: {{url: '{prometheus}'}}}}\n"
        "nodes:\n"
        "  orders:\n"
        "    probes:\n"
        "      - prometheus: 'orders_up{service=\"b\"}'\n"
        "        down_if: '< 1'\n"
        "        failure_threshold: 1\n"
        "        success_threshold: 2\n"
        "  search:\n"
        "    probes:\n"
        "      - prometheus: 'orders_up{service=\"nowhere\"}'\n"
        "      - prometheus: up\n"
        f"        url: 'http://127.0.0.1:{closed_port}'\n"
    )
    config = load_config(path)
    now = [0.0]
    live = LiveState(config.topology, config.probes, lambda: now[0])
    async with HttpClients() as clients:
        probes = {p.key: PROBE_KINDS[p.kind].build(p.spec, clients) for p in config.probes}
        results = {key: await probe.check() for key, probe in probes.items()}
    for key, result in results.items():
        live.record(key, result.state, result.reason, result.latency_s)
    assert live.ready
    assert dict(live.observed) == {"orders": State.DOWN, "search": State.UNKNOWN}
    assert [live.last[k].last_reason for k in ("search#0", "search#1")] == [
        "no data for query",
        "prometheus unreachable: connect refused",
    ]
    # Prometheus goes away while orders is down: after success_threshold
    # runs the verdict is unknown, never up.
    for _ in range(2):
        live.record("orders#0", State.UNKNOWN, "prometheus unreachable: connect refused", None)
    assert live.observed["orders"] == State.UNKNOWN
    assert live.states["orders"] == State.UNKNOWN
