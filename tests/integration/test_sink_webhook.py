"""The webhook sink against a real HTTP server on loopback that records what
it receives: the exact body and headers for each event, the error mapping,
and error messages that never carry a credential."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from http_wire import Recorder, Request, read_request, response

from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from alerts.sinks.webhook import WebhookSink
from topology import State
from watchdog.config import load_config
from watchdog.live import LiveState
from watchdog.silences import Silences
from watchdog.store import Store

pytestmark = pytest.mark.anyio

Serve = Callable[..., AbstractAsyncContextManager[Any]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# A bound on requests that never get an answer, not an assertion.
STALL_TIMEOUT_S = 0.5

STARTED = 1_714_557_480.0  # 2024-05-01T09:58:00Z
AT = 1_714_557_600.0  # 2024-05-01T10:00:00Z

ALERT = Alert(
    key="outage:farm-oms-1",
    kind="outage",
    severity="critical",
    root_cause=("farm-oms-1",),
    summary="farm-oms-1 down",
    started_at=STARTED,
    critical=(
        Impacted("orders-workflow", State.DOWN, 600.0, STARTED),
        Impacted("orders-search", State.DEGRADED, 14_400.0, STARTED + 30),
    ),
    collateral=("farm-oms-2", "orders-batch"),
    labels=MappingProxyType({"team": "orders"}),
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=STALL_TIMEOUT_S) as client:
        yield client


async def send_error(sink: WebhookSink, event: str = "firing") -> SinkError:
    with pytest.raises(SinkError) as caught:
        await sink.send(Notification("n-1", ALERT, event, AT), None)  # type: ignore[arg-type]
    return caught.value


async def test_it_posts_the_firing_alert_as_documented(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    recorder = Recorder()
    async with serve(recorder) as server:
        url = f"http://127.0.0.1:{server.port}/hooks/watchdog?team=orders"
        sink = WebhookSink(url, client)
        receipt = await sink.send(Notification("n-1", ALERT, "firing", AT), None)

    assert receipt == Receipt("webhook")
    [request] = recorder.requests
    assert (request.method, request.target) == ("POST", "/hooks/watchdog?team=orders")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "n-1"
    assert json.loads(request.body) == {
        "version": 1,
        "id": "n-1",
        "event": "firing",
        "at": "2024-05-01T10:00:00.000Z",
        "alert": {
            "key": "outage:farm-oms-1",
            "kind": "outage",
            "severity": "critical",
            "root_cause": ["farm-oms-1"],
            "summary": "farm-oms-1 down",
            "started_at": "2024-05-01T09:58:00.000Z",
            "critical": [
                {
                    "node": "orders-workflow",
                    "state": "down",
                    "recovery_target_s": 600.0,
                    "since": "2024-05-01T09:58:00.000Z",
                },
                {
                    "node": "orders-search",
                    "state": "degraded",
                    "recovery_target_s": 14400.0,
                    "since": "2024-05-01T09:58:30.000Z",
                },
            ],
            "collateral": ["farm-oms-2", "orders-batch"],
            "labels": {"team": "orders"},
        },
    }


async def test_it_posts_the_resolved_alert_with_its_own_idempotency_key(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    recorder = Recorder()
    resolved_at = AT + 720.5
    async with serve(recorder) as server:
        sink = WebhookSink(f"http://127.0.0.1:{server.port}/", client, name="ops-hook")
        first = await sink.send(Notification("n-1", ALERT, "firing", AT), None)
        receipt = await sink.send(Notification("n-2", ALERT, "resolved", resolved_at), first)

    assert receipt == Receipt("ops-hook")
    firing, resolved = recorder.requests
    assert firing.headers["idempotency-key"] == "n-1"
    assert resolved.headers["idempotency-key"] == "n-2"
    body = json.loads(resolved.body)
    assert (body["version"], body["id"], body["event"], body["at"]) == (
        1,
        "n-2",
        "resolved",
        "2024-05-01T10:12:00.500Z",
    )
    assert body["alert"] == json.loads(firing.body)["alert"]


async def test_it_posts_an_alert_without_critical_nodes_or_labels(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    recorder = Recorder()
    drift = Alert("drift", "drift", "info", (), "2 nodes not in the topology", STARTED)
    async with serve(recorder) as server:
        sink = WebhookSink(f"http://127.0.0.1:{server.port}/", client)
        await sink.send(Notification("n-9", drift, "repeat", AT), None)

    assert json.loads(recorder.requests[0].body)["alert"] == {
        "key": "drift",
        "kind": "drift",
        "severity": "info",
        "root_cause": [],
        "summary": "2 nodes not in the topology",
        "started_at": "2024-05-01T09:58:00.000Z",
        "critical": [],
        "collateral": [],
        "labels": {},
    }


async def test_it_posts_an_announcement_as_a_notice(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    # A silence that ran out, as the daemon's silences announce it.
    (tmp_path / "estate.yaml").write_text("version: 1\nnodes:\n  search: {}\n")
    config = load_config(tmp_path / "estate.yaml")
    silences = Silences(Store.open(":memory:", clock=lambda: STARTED), since=STARTED)
    silences.add(
        LiveState(config.topology, config.probes, lambda: STARTED),
        node="search",
        label=None,
        duration_s=60,
        by="bob",
        reason="reindex",
        force=False,
        at=STARTED,
    )
    [(_, ended)] = silences.ended(AT)
    recorder = Recorder()
    async with serve(recorder) as server:
        await WebhookSink(f"http://127.0.0.1:{server.port}/", client).send(ended, None)

    assert json.loads(recorder.requests[0].body) == {
        "version": 1,
        "id": "silence:1:ended",
        "event": "notice",
        "at": "2024-05-01T10:00:00.000Z",
        "alert": {
            "key": "silence:1",
            "kind": "maneuver",
            "severity": "info",
            "root_cause": ["search"],
            "summary": "silence 1 (node search, by bob: reindex) ran out after 1m;"
            " its alerts are heard again",
            "started_at": "2024-05-01T09:59:00.000Z",
            "critical": [],
            "collateral": [],
            "labels": {},
        },
    }


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_it_reports_a_server_error_as_transient(
    serve: Serve, client: httpx.AsyncClient, status: int
) -> None:
    async with serve(Recorder(lambda _: response(status, b"try later\n"))) as server:
        error = await send_error(WebhookSink(f"http://127.0.0.1:{server.port}/h", client))

    assert str(error) == f"webhook http://127.0.0.1:{server.port}: http {status}: try later"
    assert not error.permanent
    assert error.retry_after_s is None


async def test_it_passes_on_retry_after_of_a_429(serve: Serve, client: httpx.AsyncClient) -> None:
    route = lambda _: response(429, headers={"Retry-After": "7"})  # noqa: E731
    async with serve(Recorder(route)) as server:
        error = await send_error(WebhookSink(f"http://127.0.0.1:{server.port}/h", client))

    assert str(error) == f"webhook http://127.0.0.1:{server.port}: http 429"
    assert not error.permanent
    assert error.retry_after_s == 7.0


async def test_it_ignores_a_retry_after_given_as_a_date(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    route = lambda _: response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})  # noqa: E731
    async with serve(Recorder(route)) as server:
        error = await send_error(WebhookSink(f"http://127.0.0.1:{server.port}/h", client))

    assert not error.permanent
    assert error.retry_after_s is None


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
async def test_it_reports_a_client_error_as_permanent(
    serve: Serve, client: httpx.AsyncClient, status: int
) -> None:
    body = b'{"error": "bad\n  payload"}'
    async with serve(Recorder(lambda _: response(status, body))) as server:
        error = await send_error(WebhookSink(f"http://127.0.0.1:{server.port}/h", client))

    assert str(error) == (
        f'webhook http://127.0.0.1:{server.port}: http {status}: {{"error": "bad payload"}}'
    )
    assert error.permanent


async def test_it_quotes_only_the_start_of_a_long_error_body(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    async with serve(Recorder(lambda _: response(400, b"x" * 100_000))) as server:
        error = await send_error(WebhookSink(f"http://127.0.0.1:{server.port}/h", client))

    assert str(error) == f"webhook http://127.0.0.1:{server.port}: http 400: {'x' * 200}..."


async def test_it_reports_a_refused_connection_as_transient(
    client: httpx.AsyncClient, closed_port: int
) -> None:
    error = await send_error(WebhookSink(f"http://127.0.0.1:{closed_port}/h", client))

    assert str(error).startswith(f"webhook http://127.0.0.1:{closed_port}: cannot connect: ")
    assert not error.permanent


async def test_it_reports_a_server_that_never_answers_as_transient(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.Event().wait()  # cancelled when the server closes

    async with serve(stall) as server:
        error = await send_error(WebhookSink(f"http://127.0.0.1:{server.port}/h", client))

    assert str(error) == (
        f"webhook http://127.0.0.1:{server.port}: timed out waiting for the response"
    )
    assert not error.permanent


async def test_it_reports_a_reset_connection_as_transient(
    serve: Serve,
    client: httpx.AsyncClient,
    reset_connection: Callable[[asyncio.StreamWriter], None],
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset_connection(writer)

    async with serve(reset) as server:
        error = await send_error(WebhookSink(f"http://127.0.0.1:{server.port}/h", client))

    assert str(error).startswith(f"webhook http://127.0.0.1:{server.port}: ")
    assert not error.permanent


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/h", "http://[::1/h", "not a url", "/relative"])
async def test_it_reports_an_unusable_url_as_permanent(client: httpx.AsyncClient, url: str) -> None:
    error = await send_error(WebhookSink(url, client))

    assert str(error) == "webhook: invalid url: expected http(s)://host[:port]/path"
    assert error.permanent


SECRETS = ("hook-user", "pa55word-x", "t0ken-in-path", "s3cret-query", "bearer-t0ken")


def echo_everything(request: Request) -> bytes:
    """A server that echoes the request, credentials included, in its error."""
    # The credentials first: only the start of a body is quoted.
    secret_first = sorted(request.headers.items(), key=lambda item: "t0ken" not in item[1])
    head = f"{request.method} {request.target} " + json.dumps(dict(secret_first))
    return response(401, head.encode())


async def test_its_errors_never_contain_a_credential(serve: Serve, closed_port: int) -> None:
    headers = {"Authorization": "Bearer bearer-t0ken", "X-Api-Token": "bearer-t0ken"}
    async with httpx.AsyncClient(timeout=STALL_TIMEOUT_S, headers=headers) as client:
        async with serve(Recorder(echo_everything)) as server:
            url = "http://hook-user:pa55word-x@127.0.0.1:{}/t0ken-in-path?key=s3cret-query"
            echoed = await send_error(WebhookSink(url.format(server.port), client))
        refused = await send_error(WebhookSink(url.format(closed_port), client))

    assert str(echoed).startswith(f"webhook http://127.0.0.1:{server.port}: http 401: ")
    assert str(echoed).count("[redacted]") >= 3  # the server did echo them
    for error in (echoed, refused):
        for secret in SECRETS:
            assert secret not in str(error)
        assert "aG9vay11c2Vy" not in str(error)  # base64 of the user, in the basic auth header
