"""The status page's routes over a stand-in for the daemon: what each
answers, and that however many pages poll, the daemon is asked for the
history at most once per TTL (its loop never works per request)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from status_estate import ESTATE, NOW, RUNNING, farm_down, healthy, live_view

from topology import loads
from watchdog.api import Busy
from watchdog.live import LiveView
from watchdog.snapshot import View
from watchdog.web.model import public_id
from watchdog.web.routes import HISTORY_TTL_S, HistoryCache, Pages, web_routes


class Daemon:
    """The backend of the API, as the page uses it: a view, a clock, and
    calls counted (or refused with Busy)."""

    def __init__(self, live: LiveView) -> None:
        self.live = live
        self.version = 1
        self.clock = NOW
        self.calls: list[str] = []
        self.busy = False
        self.started = True
        self.is_healthy = True

    def now(self) -> float:
        return self.clock

    def healthy(self) -> bool:
        return self.is_healthy

    async def view(self) -> View:
        if not self.started:
            raise Busy("no state from the daemon yet")
        return View(
            version=self.version,
            taken_at=self.clock - 0.2,
            received_at=0.0,
            live=self.live,
            latency={},
            logs={},
            alerts=(),
            cluster=None,
            results={},
            transitions={},
            registry=None,
            outbox=None,
        )

    async def call(self, op: str, **args: Any) -> Any:
        self.calls.append(op)
        if self.busy:
            raise Busy("the daemon did not answer within 10s")
        if op == "incidents":
            return [
                {
                    "id": 1,
                    "node": "farm-oms-1",
                    "started_at": NOW - 300,
                    "ended_at": None,
                    "worst": "down",
                    "root_cause": ["farm-oms-1"],
                    "recovery_target_s": 14400,
                    "breached": False,
                }
            ]
        if op == "maneuvers":
            return [RUNNING]
        raise AssertionError(op)


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def daemon() -> Daemon:
    return Daemon(farm_down(loads(ESTATE, "/srv/estate.yaml")))


@pytest.fixture
def pages(daemon: Daemon) -> Pages:
    # Never waits for the history: the stand-in answers at once anyway.
    return Pages(daemon, HistoryCache(daemon, first_wait_s=5.0))


@pytest.fixture
async def client(daemon: Daemon, pages: Pages) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=web_routes(daemon, pages))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://watchdog") as client:
        yield client


async def test_the_page_shows_critical_services_first_with_their_cause(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    html = answer.text
    assert html.index("checkout") < html.index("antifraud") < html.index("Other services")
    assert "down because farm-oms-1 is down" in html
    assert "2 critical services down: checkout and orders-workflow" in html
    assert "Started by <strong>alice</strong>: rack move" in html
    # Landmarks, and no resource from elsewhere.
    for landmark in ("<header", "<nav", "<main", "aria-live="):
        assert landmark in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


async def test_the_public_page_hides_what_it_should(client: httpx.AsyncClient) -> None:
    html = (await client.get("/?view=public")).text
    assert "Order search" in html
    for word in ("farm-oms-1", "antifraud", "orders-workflow", "alice", "rack move", "what-if"):
        assert word not in html, word
    assert (await client.get("/?view=secret")).status_code == 400


async def test_the_poll_answers_the_parts_and_the_states(client: httpx.AsyncClient) -> None:
    live = (await client.get("/api/v1/status-page/live")).json()
    assert set(live["parts"]) == {"headline", "services", "incidents", "maneuvers"}
    assert live["nodes"]["orders-workflow"] == "down"
    assert "antifraud" not in live["nodes"]  # up
    assert live["takes"] == {"farm-oms-1": ["checkout", "orders-workflow", "orders-search"]}
    assert live["hot"].startswith("M")
    assert live["healthy"] is True


async def test_node_details(client: httpx.AsyncClient) -> None:
    html = (await client.get("/api/v1/status-page/node", params={"node": "farm-oms-1"})).text
    assert "Takes down (its blast radius)" in html
    assert "farm-oms-1#0" in html
    # The public page names nodes by an opaque id, and has no other node.
    public = await client.get(
        "/api/v1/status-page/node", params={"node": public_id("checkout"), "view": "public"}
    )
    assert public.status_code == 200
    assert "Orders" in public.text
    for word in ("Probes", "orders-workflow", "farm-oms-1"):
        assert word not in public.text
    for hidden in ("checkout", public_id("farm-oms-1"), "farm-oms-1"):
        answer = await client.get(
            "/api/v1/status-page/node", params={"node": hidden, "view": "public"}
        )
        assert answer.status_code == 404


async def test_summary_json(client: httpx.AsyncClient) -> None:
    summary = (await client.get("/api/v1/summary.json?view=public")).json()
    assert summary["status"]["indicator"] == "critical"
    assert summary["page"]["url"].endswith("/?view=public")
    assert "farm-oms-1" not in json.dumps(summary)


async def test_static_files_are_served_with_their_digest(
    client: httpx.AsyncClient, pages: Pages
) -> None:
    url = pages.static_url("status.js")
    answer = await client.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "immutable" in answer.headers["cache-control"]
    assert (await client.get("/static/status.css")).headers["cache-control"] == "no-cache"
    assert (await client.get("/static/../api.py")).status_code == 404


async def test_polling_pages_ask_the_daemon_once_per_ttl(
    client: httpx.AsyncClient, daemon: Daemon, pages: Pages
) -> None:
    for _ in range(30):
        assert (await client.get("/api/v1/status-page/live")).status_code == 200
        assert (await client.get("/api/v1/status-page/live?view=public")).status_code == 200
    assert daemon.calls == ["incidents", "maneuvers"]
    # One build per view and version, however many polls.
    assert pages.builds == 2
    daemon.clock += HISTORY_TTL_S
    await client.get("/api/v1/status-page/live")
    await client.get("/api/v1/status-page/live")
    assert pages.history.calls == 2


async def test_a_busy_daemon_leaves_the_page_up(client: httpx.AsyncClient, daemon: Daemon) -> None:
    daemon.busy = True
    answer = await client.get("/")
    assert answer.status_code == 200
    assert "The incident history could not be read" in answer.text
    assert "down because farm-oms-1 is down" in answer.text


async def test_before_the_first_state_a_browser_gets_a_page_that_comes_back(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    daemon.started = False
    answer = await client.get("/")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["retry-after"] == "2"
    assert "The watchdog is starting" in answer.text
    assert '<meta http-equiv="refresh" content="2">' in answer.text
    daemon.started = True
    assert (await client.get("/")).status_code == 200


async def test_a_silent_daemon_is_said(client: httpx.AsyncClient, daemon: Daemon) -> None:
    daemon.is_healthy = False
    daemon.version += 1
    live = (await client.get("/api/v1/status-page/live")).json()
    assert live["healthy"] is False
    assert "has not been heard from lately" in live["parts"]["headline"]


async def test_every_service_up(daemon: Daemon, client: httpx.AsyncClient) -> None:
    daemon.live = live_view(daemon.live.topology, healthy(daemon.live.topology))
    daemon.version += 1
    model = (await client.get("/api/v1/status-page")).json()
    assert model["headline"] == {"indicator": "none", "text": "Every service is up"}
    assert [s["state"] for s in model["services"]] == ["up"] * 3
