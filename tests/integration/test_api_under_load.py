"""The API never starves the probes: a real `watchdog run` process with 1,000
TCP probes to a loopback target that always answers, scraped again and again
(/metrics and the whole /api/v1/status) while it probes, records no false
result: no probe result down, no transition, no incident. And /metrics stays
within a few series per node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import accepting, answers, daemon
from prometheus_client.parser import text_string_to_metric_families
from waiting import free_port, until_blocking

NODES = 1000
SCRAPES = 15


@pytest.fixture
def target() -> Iterator[int]:
    with accepting() as port:
        yield port


def estate(path: Path, target: int, port: int) -> None:
    lines = [
        "version: 1",
        f'server: {{listen: "127.0.0.1:{port}"}}',
        f"state: {{path: {path.parent / 'state.db'}}}",
        "nodes:",
        "  farm: {kind: farm}",
    ]
    for i in range(NODES):
        lines += [
            f"  svc-{i:04}:",
            "    runs_on: [farm]",
            f"    probes: [{{tcp: '127.0.0.1:{target}', interval: 2s, timeout: 1s}}]",
        ]
    path.write_text("\n".join(lines) + "\n")


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_scrapes_while_a_thousand_probes_run_record_no_false_result(
    tmp_path: Path, target: int, no_proxy: None
) -> None:
    port = free_port()
    path = tmp_path / "estate.yaml"
    estate(path, target, port)
    url = f"http://127.0.0.1:{port}"
    with daemon(path, tmp_path / "daemon.log"), httpx.Client(base_url=url, timeout=30) as client:
        until_blocking(lambda: answers(url), deadline=60)
        sizes = []
        for _ in range(SCRAPES):
            metrics = client.get("/metrics")
            status = client.get("/api/v1/status")
            assert (metrics.status_code, status.status_code) == (200, 200)
            assert len(status.json()["nodes"]) == NODES + 1
            sizes.append(len(metrics.content))
        found = samples(client.get("/metrics").text)
        incidents = client.get("/api/v1/incidents", params={"since": "1h"}).json()
        filtered = client.get(
            "/api/v1/status", params={"state": "down", "critical": "false"}
        ).json()

    results = found["watchdog_probe_results_total"]
    assert {labels["state"] for labels, _ in results} == {"up"}
    assert sum(value for _, value in results) >= NODES
    assert "watchdog_transitions_total" not in found
    assert incidents["incidents"] == []
    assert filtered["nodes"] == []
    # About 8 series per node with one probe (none failing), by default.
    per_node = sum(len(rows) for rows in found.values()) / (NODES + 1)
    assert per_node <= 8.5, per_node
    assert "watchdog_probe_duration_seconds_bucket" not in found
