"""Log anomalies end to end: a real daemon follows a log file that the test
writes; a watched pattern makes the node degraded with its reason, an
anomaly alert is delivered, the API shows the evidence, and it clears when
the pattern stops. Every wait is bounded; nothing asserts a duration."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemons import started
from waiting import until

pytestmark = pytest.mark.anyio


async def test_a_watched_pattern_degrades_the_node_alerts_and_clears(tmp_path: Path) -> None:
    app_log = tmp_path / "app.log"
    app_log.write_text("INFO started\n")
    path = tmp_path / "estate.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            state: {{path: {tmp_path / "state.db"}}}
            alerts: {{settle: 0s}}
            nodes:
              search:
                probes:
                  - log: {app_log}
                    interval: 100ms
                    watch: [OutOfMemory]
                    rate_interval: 1s
            """
        )
    )
    async with (
        started(path) as daemon,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}", timeout=5) as c,
    ):

        async def search() -> dict[str, Any]:
            nodes = (await c.get("/api/v1/status")).json()["nodes"]
            found: dict[str, Any] = next(n for n in nodes if n["node"] == "search")
            return found

        assert (await search())["effective"] == "up"
        with app_log.open("a") as f:
            f.write("INFO serving\njava.lang.OutOfMemoryError: Java heap space\n")

        async def degraded() -> dict[str, Any] | None:
            node = await search()
            return node if node["effective"] == "degraded" else None

        node = await until(degraded)
        [probe] = node["probes"]
        assert probe["last_reason"] == "watched pattern 'OutOfMemory': 1 line"
        [anomaly] = probe["log"]["anomalies"]
        assert (anomaly["kind"], anomaly["count"], anomaly["sample"]) == (
            "watched_pattern",
            1,
            "java.lang.OutOfMemoryError: Java heap space",
        )
        assert probe["log"]["lines"] >= 2

        async def alerted() -> list[Any]:
            alerts: list[Any] = (await c.get("/api/v1/alerts")).json()["alerts"]
            return alerts

        [alert] = await until(alerted)
        assert (alert["key"], alert["kind"], alert["severity"]) == (
            "anomaly:search",
            "anomaly",
            "warning",
        )
        assert "watched pattern 'OutOfMemory'" in alert["summary"]
        await until(lambda: daemon.outbox.counts().get(("console", "delivered")))

        async def cleared() -> bool:
            return (await search())["effective"] == "up"

        await until(cleared)  # an interval without the pattern
        await until(lambda: daemon.outbox.counts().get(("console", "delivered")) == 2)
