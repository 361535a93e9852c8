"""A real `watchdog run` process under `ulimit -n 1024` (soft and hard, as
systemd gives by default): 1,100 connections to its API that send half a
request and sit there take no descriptor from the probes. No target is
reported failed, no transition is recorded, /-/healthy still answers, and
the log stays a handful of lines."""

from __future__ import annotations

import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import accepting, answers, daemon
from waiting import free_port, until_blocking

LIMIT = 1024
IDLE = 1100
PROBES = 40


@pytest.fixture
def target() -> Iterator[int]:
    with accepting() as port:
        yield port


def metric(client: httpx.Client, name: str) -> dict[str, float]:
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name):
            labels, _, value = line.rpartition(" ")
            out[labels] = float(value)
    return out


def test_half_open_connections_under_a_low_descriptor_limit_fail_no_target(
    tmp_path: Path, target: int, no_proxy: None
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < IDLE + 200:
        pytest.skip(f"the test process needs {IDLE + 200} descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE + 200), hard))
    port = free_port()
    path = tmp_path / "estate.yaml"
    nodes = "".join(
        f"  svc-{i:02}:\n    runs_on: [farm]\n"
        f"    probes: [{{tcp: '127.0.0.1:{target}', interval: 200ms, timeout: 1s}}]\n"
        for i in range(PROBES)
    )
    path.write_text(
        f'version: 1\nserver: {{listen: "127.0.0.1:{port}", header_timeout: 30s}}\n'
        f"state: {{path: {tmp_path / 'state.db'}}}\nnodes:\n  farm: {{kind: farm}}\n{nodes}"
    )
    log = tmp_path / "daemon.log"
    url = f"http://127.0.0.1:{port}"
    # As systemd gives it by default: soft and hard.
    limited = ["/bin/sh", "-c", f'ulimit -n {LIMIT} && exec "$0" "$@"']
    idle: list[socket.socket] = []
    try:
        with daemon(path, log, prefix=limited), httpx.Client(base_url=url, timeout=10) as client:
            until_blocking(lambda: answers(url))
            before = metric(client, "watchdog_probe_results_total")
            for _ in range(IDLE):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends its head
                idle.append(sock)
            # Every probe runs several times more while they sit there.
            runs = sum(before.values()) + 5 * PROBES
            until_blocking(
                lambda: sum(metric(client, "watchdog_probe_results_total").values()) >= runs
            )
            healthy = client.get("/-/healthy")
            results = metric(client, "watchdog_probe_results_total")
            incidents = client.get("/api/v1/incidents", params={"since": "1h"}).json()
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert healthy.status_code == 200
    assert {labels.split('state="')[1].rstrip('"}') for labels in results} == {"up"}
    assert incidents["incidents"] == []
    text = log.read_text()
    assert "Traceback" not in text
    assert len(text.splitlines()) < 60, text[-3000:]
