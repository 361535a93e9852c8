"""The Alertmanager sink against a real Alertmanager (Debian's
`prometheus-alertmanager`, started here on loopback), asserted through its
own API; the exact body and the error mapping against local servers that
answer what Alertmanager would not; errors that never carry a credential."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from clocks import Clock
from http_wire import Recorder, Request, response
from processes import stop
from waiting import free_port

from alerts.model import Alert, Impacted, Notification, SinkError
from alerts.sinks.alertmanager import AlertmanagerSink
from topology import State

pytestmark = pytest.mark.anyio

Serve = Callable[..., AbstractAsyncContextManager[Any]]

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
# Bounds on starting and stopping Alertmanager, never assertions.
READY_WAIT_S = 30.0
READY_POLL_S = 0.1
REQUEST_TIMEOUT_S = 5.0
GENERATOR_URL = "http://watchdog.example:8080/api/v1/alerts"

CONFIG = """\
route:
  receiver: blackhole
receivers:
  - name: blackhole
"""


def alert(key: str, now: float, **changes: Any) -> Alert:
    """An outage that started a minute before `now`: the recovery target of
    its first critical node has 9 minutes left, the second's is 5m overdue."""
    started = now - 60
    base = Alert(
        key=f"outage:{key}",
        kind="outage",
        severity="critical",
        root_cause=(key, f"{key}-b"),
        summary=f"{key} down",
        started_at=started,
        critical=(
            Impacted("orders-workflow", State.DOWN, 600.0, started),
            Impacted("orders-search", State.DEGRADED, 60.0, now - 360),
        ),
        collateral=("farm-oms-2", "orders-batch", "orders-api"),
        labels=MappingProxyType({"team": "orders", "app.kubernetes.io/part-of": "oms"}),
    )
    return replace(base, **changes)


def labels(key: str, **changes: str) -> dict[str, str]:
    return {
        "alertname": "WatchdogOutage",
        "key": f"outage:{key}",
        "node": key,
        "root_cause": f"{key},{key}-b",
        "severity": "critical",
        "critical": "true",
        "team": "orders",
        "app_kubernetes_io_part_of": "oms",
        **changes,
    }


DESCRIPTION = """\
root cause: {key}, {key}-b
critical nodes down or degraded (2):
- orders-workflow down, recovery target 10m, 9m left
- orders-search degraded, recovery target 1m, overdue by 5m
other nodes failing: 3"""


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- a real Alertmanager ---------------------------------------------------


@dataclass(frozen=True)
class Alertmanager:
    url: str

    def alerts(self, key: str) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (active, silenced, inhibited or not
        yet processed: its API leaves out resolved ones) with this key."""
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            answer = client.get(f"{self.url}/api/v2/alerts", params={"filter": f'key="{key}"'})
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    if not Path(ALERTMANAGER).exists():
        pytest.skip(
            f"{ALERTMANAGER} not found: install Debian's prometheus-alertmanager"
            " (apt-get install prometheus-alertmanager) to run this test"
        )
    home = tmp_path_factory.mktemp("alertmanager")
    (home / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    with (home / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={home / 'alertmanager.yml'}",
                f"--storage.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(process, url, home / "alertmanager.log")
            yield Alertmanager(url)
        finally:
            stop(process)


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    # A bounded number of polls, not a clock comparison.
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for _ in range(int(READY_WAIT_S / READY_POLL_S)):
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited with {process.returncode}:\n{log.read_text()}")
            try:
                if client.get(f"{url}/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(READY_POLL_S)
    pytest.fail(f"alertmanager not ready after {READY_WAIT_S}s:\n{log.read_text()}")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        yield client


async def test_it_posts_the_alert_with_its_labels_and_annotations(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    now = round(time.time(), 3)
    sink = AlertmanagerSink(alertmanager.url, client, GENERATOR_URL, clock=Clock(now))

    receipt = await sink.send(Notification("n-1", alert("farm-a", now), "firing", now), None)

    [held] = alertmanager.alerts("outage:farm-a")
    assert held["labels"] == labels("farm-a")
    assert held["annotations"] == {
        "summary": "farm-a down",
        "description": DESCRIPTION.format(key="farm-a"),
        "collateral_count": "3",
    }
    assert at(held["startsAt"]) == pytest.approx(now - 60, abs=0.001)
    assert at(held["endsAt"]) == pytest.approx(now + 300, abs=0.001)
    assert held["generatorURL"] == GENERATOR_URL
    assert held["status"]["state"] in {"active", "unprocessed"}
    assert receipt.sink == "alertmanager"
    assert json.loads(receipt.data["labels"]) == labels("farm-a")


async def test_it_makes_one_alert_of_two_daemons_posting_it(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    now = round(time.time(), 3)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as other_client:
        first = AlertmanagerSink(alertmanager.url, client, GENERATOR_URL, clock=Clock(now))
        second = AlertmanagerSink(
            alertmanager.url + "/", other_client, GENERATOR_URL, clock=Clock(now + 1)
        )
        await first.send(Notification("a-1", alert("farm-b", now), "firing", now), None)
        await second.send(Notification("b-1", alert("farm-b", now), "firing", now + 1), None)

    [held] = alertmanager.alerts("outage:farm-b")
    assert held["labels"] == labels("farm-b")
    assert at(held["endsAt"]) == pytest.approx(now + 301, abs=0.001)


async def test_it_keeps_the_labels_of_the_first_delivery_for_the_life_of_the_alert(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    now = round(time.time(), 3)
    clock = Clock(now)
    sink = AlertmanagerSink(alertmanager.url, client, GENERATOR_URL, clock=clock)
    first = alert("farm-c", now, severity="warning", critical=())
    receipt = await sink.send(Notification("n-1", first, "firing", now), None)

    clock.now = now + 30
    later = alert("farm-c", now, summary="farm-c down, orders hit", labels={"team": "billing"})
    receipt = await sink.send(Notification("n-2", later, "escalated", now + 30), receipt)

    [held] = alertmanager.alerts("outage:farm-c")
    assert held["labels"] == labels("farm-c", severity="warning", critical="false")
    assert held["annotations"]["summary"] == "farm-c down, orders hit"
    assert at(held["endsAt"]) == pytest.approx(now + 330, abs=0.001)
    assert json.loads(receipt.data["labels"]) == held["labels"]


async def test_it_ends_the_alert_when_it_resolves(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    now = round(time.time(), 3)
    sink = AlertmanagerSink(alertmanager.url, client, GENERATOR_URL, clock=Clock(now))
    firing = alert("farm-d", now)
    receipt = await sink.send(Notification("n-1", firing, "firing", now), None)
    assert len(alertmanager.alerts("outage:farm-d")) == 1

    # A new summary or label must not make it another alert that lingers.
    resolved = replace(firing, summary="farm-d back", labels={})
    await sink.send(Notification("n-2", resolved, "resolved", now), receipt)

    assert alertmanager.alerts("outage:farm-d") == []


async def test_a_refresh_pushes_ends_at_forward_and_keeps_the_first_labels(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    now = round(time.time(), 3)
    clock = Clock(now)
    sink = AlertmanagerSink(
        alertmanager.url, client, GENERATOR_URL, clock=clock, resolve_timeout_s=120
    )
    assert sink.resend_interval_s == 30
    first = alert("farm-r", now)
    other = alert("farm-s", now)
    receipts = [
        await sink.send(Notification("n-1", first, "firing", now), None),
        await sink.send(Notification("n-2", other, "firing", now), None),
    ]

    clock.now = now + 30
    # Labels changed since: the refresh must still name the same alerts.
    changed = replace(first, summary="farm-r still down", labels={"team": "other"})
    await sink.refresh(
        [
            (Notification("r-1", changed, "repeat", now + 30), receipts[0]),
            (Notification("r-2", other, "repeat", now + 30), receipts[1]),
        ]
    )

    for key, summary in (("farm-r", "farm-r still down"), ("farm-s", "farm-s down")):
        [held] = alertmanager.alerts(f"outage:{key}")
        assert held["labels"] == labels(key)
        assert held["annotations"]["summary"] == summary
        assert at(held["endsAt"]) == pytest.approx(now + 150, abs=0.001)
    await sink.refresh([])  # nothing firing: nothing posted, no error


async def test_it_names_the_heartbeat_watchdog(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    now = round(time.time(), 3)
    sink = AlertmanagerSink(alertmanager.url, client, GENERATOR_URL, clock=Clock(now))
    heartbeat = Alert("heartbeat", "heartbeat", "info", (), "watchdog is alive", now)

    await sink.send(Notification("h-1", heartbeat, "firing", now), None)

    [held] = alertmanager.alerts("heartbeat")
    assert held["labels"] == {
        "alertname": "Watchdog",
        "key": "heartbeat",
        "severity": "info",
        "critical": "false",
    }


async def test_a_notice_is_not_posted_to_alertmanager(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    now = round(time.time(), 3)
    sink = AlertmanagerSink(alertmanager.url, client, GENERATOR_URL, clock=Clock(now))
    maneuver = Alert("maneuver:1", "maneuver", "warning", ("farm-n",), "alice started it", now)

    receipt = await sink.send(Notification("maneuver:1:running", maneuver, "notice", now), None)
    # What Alertmanager holds, after an alert posted later is there.
    await sink.send(Notification("n-1", alert("farm-n", now), "firing", now), None)

    assert alertmanager.alerts("outage:farm-n") != []
    assert alertmanager.alerts("maneuver:1") == []
    assert receipt.sink == "alertmanager"


# --- local servers for what Alertmanager would not answer ------------------


STARTED = 1_714_557_480.0  # 2024-05-01T09:58:00Z
AT = 1_714_557_600.0  # 2024-05-01T10:00:00Z


async def test_a_notice_makes_no_request(serve: Serve, client: httpx.AsyncClient) -> None:
    recorder = Recorder()
    maneuver = Alert("maneuver:1", "maneuver", "critical", ("farm-e",), "alice forced it", AT)
    async with serve(recorder) as server:
        url = f"http://127.0.0.1:{server.port}/am"
        sink = AlertmanagerSink(url, client, GENERATOR_URL, clock=Clock(AT))
        receipt = await sink.send(Notification("maneuver:1:running", maneuver, "notice", AT), None)
        await sink.send(Notification("maneuver:1:end", maneuver, "notice", AT + 60), receipt)
    assert recorder.requests == []


async def test_it_posts_exactly_this_body(serve: Serve, client: httpx.AsyncClient) -> None:
    recorder = Recorder()
    async with serve(recorder) as server:
        url = f"http://127.0.0.1:{server.port}/am"
        sink = AlertmanagerSink(url, client, GENERATOR_URL, clock=Clock(AT + 5))
        receipt = await sink.send(Notification("n-1", alert("farm-e", AT), "firing", AT), None)
        await sink.send(Notification("n-2", alert("farm-e", AT), "resolved", AT + 600), receipt)

    firing, resolved = recorder.requests
    assert (firing.method, firing.target) == ("POST", "/am/api/v2/alerts")
    assert firing.headers["content-type"] == "application/json"
    assert json.loads(firing.body) == [
        {
            "labels": labels("farm-e"),
            "annotations": {
                "summary": "farm-e down",
                "description": DESCRIPTION.format(key="farm-e"),
                "collateral_count": "3",
            },
            "startsAt": "2024-05-01T09:59:00.000Z",
            "endsAt": "2024-05-01T10:05:05.000Z",
            "generatorURL": GENERATOR_URL,
        }
    ]
    assert json.loads(resolved.body) == [
        {
            "labels": labels("farm-e"),
            "annotations": {
                "summary": "farm-e down",
                "description": (
                    "resolved after 11m\n"
                    "root cause: farm-e, farm-e-b\n"
                    "critical nodes down or degraded (2):\n"
                    "- orders-workflow down, recovery target 10m\n"
                    "- orders-search degraded, recovery target 1m\n"
                    "other nodes failing: 3"
                ),
                "collateral_count": "3",
            },
            "startsAt": "2024-05-01T09:59:00.000Z",
            "endsAt": "2024-05-01T10:10:00.000Z",
            "generatorURL": GENERATOR_URL,
        }
    ]


async def send_error(sink: AlertmanagerSink) -> SinkError:
    with pytest.raises(SinkError) as caught:
        await sink.send(Notification("n-1", alert("farm-f", AT), "firing", AT), None)
    return caught.value


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (400, True)])
async def test_it_maps_an_error_status(
    serve: Serve, client: httpx.AsyncClient, status: int, permanent: bool
) -> None:
    body = b'{"code":400,"message":"start time must be before end time"}'
    async with serve(Recorder(lambda _: response(status, body))) as server:
        error = await send_error(
            AlertmanagerSink(f"http://127.0.0.1:{server.port}", client, GENERATOR_URL)
        )

    assert str(error) == (
        f"alertmanager http://127.0.0.1:{server.port}: http {status}: {body.decode()}"
    )
    assert error.permanent is permanent


async def test_it_passes_on_retry_after_of_a_429(serve: Serve, client: httpx.AsyncClient) -> None:
    route = lambda _: response(429, headers={"Retry-After": "12"})  # noqa: E731
    async with serve(Recorder(route)) as server:
        error = await send_error(
            AlertmanagerSink(f"http://127.0.0.1:{server.port}", client, GENERATOR_URL)
        )

    assert str(error) == f"alertmanager http://127.0.0.1:{server.port}: http 429"
    assert not error.permanent
    assert error.retry_after_s == 12.0


async def test_it_reports_a_closed_port_as_transient(
    client: httpx.AsyncClient, closed_port: int
) -> None:
    error = await send_error(
        AlertmanagerSink(f"http://127.0.0.1:{closed_port}", client, GENERATOR_URL)
    )

    assert str(error).startswith(f"alertmanager http://127.0.0.1:{closed_port}: cannot connect: ")
    assert not error.permanent


def echo_everything(request: Request) -> bytes:
    """A server that echoes the request, credentials included, in its error."""
    # The credentials first: only the start of a body is quoted.
    headers = sorted(request.headers.items(), key=lambda item: item[0] != "authorization")
    return response(401, (json.dumps(dict(headers)) + " " + request.target).encode())


async def test_its_errors_never_contain_a_credential(
    serve: Serve, client: httpx.AsyncClient, closed_port: int
) -> None:
    url = "http://am-user:pa55word-x@127.0.0.1:{}"
    async with serve(Recorder(echo_everything)) as server:
        echoed = await send_error(AlertmanagerSink(url.format(server.port), client, GENERATOR_URL))
    refused = await send_error(AlertmanagerSink(url.format(closed_port), client, GENERATOR_URL))

    assert str(echoed).startswith(f"alertmanager http://127.0.0.1:{server.port}: http 401: ")
    assert '"authorization": "[redacted]"' in str(echoed)  # the server did echo it
    for error in (echoed, refused):
        assert "am-user" not in str(error)
        assert "pa55word-x" not in str(error)
        assert "YW0tdXNlcjpwYTU1d29yZC14" not in str(error)  # base64 of user:password
