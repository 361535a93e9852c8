"""The API never starves the probes: a real `watchdog run` process with 1,000
TCP probes to a loopback target that always answers, scraped again and again
(/metrics and the whole /api/v1/status) while it probes, records no false
result: no probe result down, no transition, no incident. And /metrics stays
within a few series per node."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from waiting import PROCESS_DEADLINE_S, WATCHDOG, free_port, until_blocking

NODES = 1000
SCRAPES = 15


@pytest.fixture
def target() -> Iterator[int]:
    """A TCP server on loopback that accepts every connection and closes it."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


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
    with (tmp_path / "daemon.log").open("wb") as log:
        process = subprocess.Popen([WATCHDOG, "run", str(path)], stdout=log, stderr=log)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:

            def ready() -> bool:
                try:
                    return client.get("/-/ready").status_code == 200
                except httpx.TransportError:
                    return False

            until_blocking(ready, deadline=60)
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
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=PROCESS_DEADLINE_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=PROCESS_DEADLINE_S)

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
