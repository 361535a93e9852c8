"""Two real Prometheus Alertmanagers (Debian's `prometheus-alertmanager`)
clustered on loopback, and the webhook receiver they notify, for tests that
ask what reaches a receiver when several watchdog replicas post the same
alert to every Alertmanager.

`with alertmanager_pair(home) as pair:` yields once both Alertmanagers
answer `/-/ready` and each reports a settled cluster ("ready") of both
peers; it stops both and the receiver when the block ends, raised or not.
Skips the test when the binary is missing. Only loopback is used: every
address is 127.0.0.1 and no proxy from the environment applies.

What the pair promises, as Alertmanager clustering does: alerts are NOT
shared between peers (each holds what was posted to it), but the
notification log is gossiped, so a group notified by one peer is not
notified again by the other. The peer at position n in the cluster waits
n * `--cluster.peer-timeout` (here half the group interval) before it looks
at that log; a duplicate can only appear within `Pair.dedup_window_s` of
the first notification.

Every alert is routed to the one webhook receiver with `group_by: ['...']`:
each distinct label set is a group of its own, so a test's groups are told
apart by their labels alone (never by which labels a route happens to pick)
and an alert's `groupKey` names all its labels.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import stop
from waiting import PROCESS_DEADLINE_S, free_port, until_blocking

__all__ = ["ALERTMANAGER", "Pair", "alertmanager_pair"]

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"

# Gossip fast on loopback, so that the notification log of one peer reaches
# the other well within the peer timeout. Alertmanager settles the cluster
# (before it sends anything) after about 4 polls of 10 gossip intervals each
# with an unchanged peer count: 50ms makes that about 2s instead of 8s.
GOSSIP_INTERVAL = "50ms"
PUSHPULL_INTERVAL = "1s"
RECONNECT_INTERVAL = "1s"
# How long the second peer waits for the first's notification log entry
# before it sends itself (`--cluster.peer-timeout`), as a share of the group
# interval. It must stay well above gossip latency (tens of ms on loopback)
# AND well below the group interval: the second peer takes its snapshot of a
# group when its flush starts and reads the log a peer timeout later, so
# with a peer timeout near or above the group interval a snapshot taken
# just before the alert resolved is read just after the first peer's
# "resolved" entry arrived, and it sends a stale "firing" (then "resolved"
# again). Seen here with 1s and 1s: half of it leaves half an interval of
# margin either way.
PEER_TIMEOUT_SHARE = 0.5
# A cap only: settling ends earlier when the peer count holds still.
SETTLE_TIMEOUT = "15s"

# Bounds on waiting, never assertions about how long something took.
POLL_S = 0.1
READY_WAIT_S = PROCESS_DEADLINE_S
STOP_WAIT_S = 10.0
REQUEST_TIMEOUT_S = 5.0
LOG_TAIL_CHARS = 4000

# A proxy from the environment must not see (or break) loopback traffic.
_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def _duration(seconds: float) -> str:
    """`seconds` as an Alertmanager (Prometheus) duration, in milliseconds."""
    return f"{round(seconds * 1000)}ms"


def _config(webhook_url: str, group_wait_s: float, group_interval_s: float, repeat: str) -> str:
    return f"""\
route:
  receiver: webhook
  group_by: ['...']
  group_wait: {_duration(group_wait_s)}
  group_interval: {_duration(group_interval_s)}
  repeat_interval: {repeat}
receivers:
  - name: webhook
    webhook_configs:
      - url: {json.dumps(webhook_url)}
        send_resolved: true
"""


class _Receiver:
    """A webhook receiver on 127.0.0.1:<any free port>, on a daemon thread,
    keeping every JSON body POSTed to it in the order received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver._bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the bodies are what the tests look at

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_S}, daemon=True
        )
        self._thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._bodies)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STOP_WAIT_S)


@dataclass(frozen=True)
class Pair:
    """Two clustered Alertmanagers (`urls`, http://127.0.0.1:<port> each),
    their logs, and what their webhook receiver has received."""

    urls: tuple[str, str]
    logs: tuple[Path, Path]
    # After a group's first notification, how long before a duplicate from
    # the other peer could still show up (its peer timeout wait, plus a
    # group interval for the flush it waits in): a test that asserts "still
    # exactly one" waits this long first.
    dedup_window_s: float
    _receiver: _Receiver = field(repr=False)

    def notifications(self) -> list[dict[str, Any]]:
        """The webhook bodies received so far, in the order received."""
        return self._receiver.bodies()

    def notified_groups(self) -> dict[str, list[str]]:
        """Each notified `groupKey` and the statuses ("firing", "resolved")
        of its notifications, in the order received."""
        groups: dict[str, list[str]] = {}
        for body in self.notifications():
            groups.setdefault(body["groupKey"], []).append(body["status"])
        return groups

    def post_alerts(self, url: str, alerts: list[dict[str, Any]]) -> None:
        """POST `alerts` (Alertmanager's v2 form: labels, annotations,
        startsAt, endsAt, ...) to the Alertmanager at `url`."""
        with _client() as client:
            client.post(f"{url}/api/v2/alerts", json=alerts).raise_for_status()

    def alerts(self, url: str, **label_filters: str) -> list[dict[str, Any]]:
        """The alerts the Alertmanager at `url` holds whose labels equal
        `label_filters` (`alertname="X"` is `filter=alertname="X"`); its API
        leaves out resolved ones."""
        # One `filter` parameter per label; JSON quoting is the matcher's.
        params = {
            "filter": [f"{name}={json.dumps(value)}" for name, value in label_filters.items()]
        }
        with _client() as client:
            answer = client.get(f"{url}/api/v2/alerts", params=params)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found

    def status(self, url: str) -> dict[str, Any]:
        """`/api/v2/status` of the Alertmanager at `url`: its `cluster`
        holds its own `name`, `status` and `peers`."""
        with _client() as client:
            answer = client.get(f"{url}/api/v2/status")
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def groups(self, url: str) -> list[dict[str, Any]]:
        """The alert groups of the Alertmanager at `url`."""
        with _client() as client:
            answer = client.get(f"{url}/api/v2/alerts/groups")
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found


def _client() -> httpx.Client:
    return httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False)


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1."""
    ports: list[int] = []
    for _ in range(count * 20):  # bounded: a repeat is rare
        port = free_port()
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} distinct free ports on 127.0.0.1")


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-LOG_TAIL_CHARS:]


def _status(client: httpx.Client, url: str) -> dict[str, Any] | None:
    try:
        answer = client.get(f"{url}/api/v2/status")
    except httpx.TransportError:
        return None
    if answer.status_code != 200:
        return None
    status: dict[str, Any] = answer.json()
    return status


def _ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def _clustered(client: httpx.Client, url: str, peers: int) -> bool:
    """The Alertmanager at `url` has settled ("ready") with `peers` peers."""
    status = _status(client, url)
    if status is None:
        return False
    cluster = status.get("cluster", {})
    return cluster.get("status") == "ready" and len(cluster.get("peers") or []) == peers


def _wait(
    what: str,
    condition: Any,
    processes: list[subprocess.Popen[bytes]],
    logs: list[Path],
) -> None:
    """Poll `condition` until it holds; fail the test naming `what` (with
    the logs) if it does not within READY_WAIT_S or an Alertmanager exits."""
    exited: list[str] = []

    def done() -> bool:
        exited.extend(
            f"alertmanager {n} exited with {p.returncode}:\n{_tail(log)}"
            for n, (p, log) in enumerate(zip(processes, logs, strict=True))
            if p.poll() is not None
        )
        return bool(exited) or condition()

    try:
        until_blocking(done, READY_WAIT_S)
    except AssertionError:
        tails = "\n".join(f"--- {log}:\n{_tail(log)}" for log in logs)
        pytest.fail(f"{what} not within {READY_WAIT_S}s:\n{tails}")
    if exited:
        pytest.fail("\n".join(exited))


@contextlib.contextmanager
def alertmanager_pair(
    home: Path,
    *,
    group_wait_s: float = 0.5,
    group_interval_s: float = 1.0,
    repeat_interval: str = "1h",
) -> Iterator[Pair]:
    """Start a webhook receiver and two Alertmanagers clustered with each
    other on loopback, routing every alert (`group_by: ['...']`) to it with
    `send_resolved: true`; their config, data and logs under `home`. Yield
    a `Pair` once both are ready and settled in one cluster of two; stop
    them and the receiver on exit, even if the block raised."""
    if not Path(ALERTMANAGER).exists():
        pytest.skip(
            f"{ALERTMANAGER} not found: install Debian's prometheus-alertmanager"
            " (apt-get install prometheus-alertmanager) to run this test"
        )
    peer_timeout_s = group_interval_s * PEER_TIMEOUT_SHARE
    env = {name: value for name, value in os.environ.items() if name not in _PROXY_VARIABLES}
    with contextlib.ExitStack() as stack:
        receiver = _Receiver()
        stack.callback(receiver.close)
        config = home / "alertmanager.yml"
        config.write_text(_config(receiver.url, group_wait_s, group_interval_s, repeat_interval))
        web_a, web_b, cluster_a, cluster_b = _free_ports(4)
        urls = (f"http://127.0.0.1:{web_a}", f"http://127.0.0.1:{web_b}")
        logs = (home / "alertmanager-0.log", home / "alertmanager-1.log")
        processes: list[subprocess.Popen[bytes]] = []
        for n, (web, listen, peer) in enumerate(
            ((web_a, cluster_a, cluster_b), (web_b, cluster_b, cluster_a))
        ):
            log = stack.enter_context(logs[n].open("ab"))
            process = subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={config}",
                    f"--storage.path={home / f'data-{n}'}",
                    f"--web.listen-address=127.0.0.1:{web}",
                    f"--cluster.listen-address=127.0.0.1:{listen}",
                    f"--cluster.peer=127.0.0.1:{peer}",
                    f"--cluster.gossip-interval={GOSSIP_INTERVAL}",
                    f"--cluster.pushpull-interval={PUSHPULL_INTERVAL}",
                    f"--cluster.peer-timeout={_duration(peer_timeout_s)}",
                    f"--cluster.settle-timeout={SETTLE_TIMEOUT}",
                    f"--cluster.reconnect-interval={RECONNECT_INTERVAL}",
                    "--log.level=debug",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            processes.append(process)
            stack.callback(stop, process)
        with _client() as client:
            _wait(
                "both alertmanagers ready",
                lambda: all(_ready(client, url) for url in urls),
                processes,
                list(logs),
            )
            _wait(
                "a settled cluster of both alertmanagers",
                lambda: all(_clustered(client, url, 2) for url in urls),
                processes,
                list(logs),
            )
        yield Pair(
            urls=urls,
            logs=logs,
            dedup_window_s=peer_timeout_s + group_interval_s,
            _receiver=receiver,
        )
