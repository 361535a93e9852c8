"""Replicas of one estate (`cluster:`) as real `watchdog run` processes on
one file and one real Postgres, alerting a Slack-compatible server on
loopback: one Slack message for a farm's death whatever the number of
replicas; a holder killed with SIGKILL while its alert is in flight (Slack
took it, its answer never came) is taken over, the alert is not posted
again, its resolution is sent exactly once, its incident kept; a maneuver refused through one
replica is refused as seen through the other; the store cut off for longer
than the lease leaves the replicas probing, serving and alerting about
critical nodes on their own, and they catch up when it returns. Every wait
is bounded; nothing asserts a duration (the benchmark
`benchmarks/cluster.py` measures them)."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alertmanager_cluster import Pair, alertmanager_pair
from postgres_server import PASSWORD, PostgresServer
from processes import accepting, answers, flagged, stop
from slack_server import Fault, SlackServer
from waiting import WATCHDOG, free_port, until_blocking

PG_VARIABLE = "WATCHDOG_TEST_PG_PASSWORD"
SLACK_VARIABLE = "WATCHDOG_TEST_SLACK_TOKEN"
SLACK_TOKEN = "xoxb-cluster-test-token"
API_TOKEN = "cluster-api-token"
LEASE_S = 3
# How long the store stays cut off (the figure).
CUT_S = 30
# Long enough for a slow CI to start two daemons and reach Postgres.
WAIT_S = 90


@dataclass
class Place:
    """A database of the test's own on the session's Postgres."""

    server: PostgresServer
    database: str

    @property
    def url(self) -> str:
        return self.server.url(self.database)

    def cut(self, *, allow: bool) -> None:
        """Refuse (or allow again) every connection to the database, and end
        those open: to the replicas, the server is gone."""
        self.server.admin(f"ALTER DATABASE {self.database} ALLOW_CONNECTIONS {str(allow).lower()}")
        self.server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (self.database,),
        )

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        return list(self.server.admin(sql, database=self.database) or [])


@pytest.fixture
def place(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Place:
    monkeypatch.setenv(PG_VARIABLE, PASSWORD)
    monkeypatch.setenv(SLACK_VARIABLE, SLACK_TOKEN)
    monkeypatch.setenv("WATCHDOG_API_TOKEN", API_TOKEN)
    return Place(postgres, postgres.create_database())


@pytest.fixture
def slack(no_proxy: None) -> Iterator[SlackServer]:
    with SlackServer(token=SLACK_TOKEN, channels={"#incidents": "C0INC", "#ops": "C0OPS"}) as s:
        yield s


def estate(
    folder: Path, place: Place, slack: SlackServer, alertmanagers: tuple[str, ...] = ()
) -> Path:
    """One file for every replica: a farm whose probe reads a flag file,
    a critical service on it, Slack (and `alertmanagers`) for the alerts."""
    urls = ", ".join(f'"{url}"' for url in alertmanagers)
    alertmanager = f"alertmanager: {{urls: [{urls}]}}" if alertmanagers else ""
    flag = folder / "farm-ok"
    flag.touch()
    probe = flagged(flag)
    path = folder / "estate.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            state:
              url: "{place.url}"
              password_env: {PG_VARIABLE}
            cluster: {{lease: {LEASE_S}s}}
            alerts:
              settle: 0s
              {alertmanager}
              slack:
                token_env: {SLACK_VARIABLE}
                base_url: {slack.base_url}
                channels: {{critical: "#incidents", default: "#ops"}}
            nodes:
              farm:
                kind: farm
                probes:
                  - exec: [/bin/sh, -c, "{probe}"]
                    interval: 200ms
                    failure_threshold: 1
                    success_threshold: 1
              workflow: {{critical: true, runs_on: [farm]}}
              search: {{runs_on: [farm]}}
            """
        )
    )
    return path


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen[bytes]

    def metric(self, name: str) -> float | None:
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=5, trust_env=False).text
        except httpx.TransportError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def total(self, name: str) -> float:
        """The sum of every series of `name` (0 when the replica does not answer)."""
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=5, trust_env=False).text
        except httpx.TransportError:
            return 0.0
        return sum(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{")
        )

    def role(self) -> str | None:
        for role in ("holder", "follower", "alone"):
            if self.metric(f'watchdog_cluster_role{{role="{role}"}}') == 1.0:
                return role
        return None


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[dict[str, Replica]]:
    """Replicas started by `run(path, name)`, all stopped at the end."""
    running: dict[str, Replica] = {}
    yield running
    for replica in running.values():
        stop(replica.process)


def run(running: dict[str, Replica], path: Path, name: str) -> Replica:
    port = free_port()
    log = path.parent / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [WATCHDOG, "run", str(path), "--listen", f"127.0.0.1:{port}", "--replica", name],
            stdout=out,
            stderr=out,
        )
    replica = Replica(name, f"http://127.0.0.1:{port}", process)
    running[name] = replica
    until_blocking(lambda: answers(replica.url), deadline=WAIT_S)
    return replica


def posted(slack: SlackServer) -> list[str]:
    """The top-level messages, by text."""
    return [m.text for m in list(slack.messages) if m.thread_ts is None]


def slack_entries(place: Place) -> list[tuple[object, ...]]:
    """(state, attempts) of each Slack entry of the shared outbox."""
    return place.rows("SELECT state, attempts FROM outbox WHERE sink = 'slack' ORDER BY id")


def open_incidents(place: Place) -> list[tuple[object, ...]]:
    return place.rows("SELECT node, worst FROM incidents WHERE ended_at IS NULL ORDER BY node")


def rounds_pass(*replicas: Replica, count: int = 5) -> None:
    """Wait until every replica has run `count` more alert rounds: what one
    of them would send is sent by then."""
    goals = {r.name: (r.metric("watchdog_alert_rounds_total") or 0) + count for r in replicas}
    for replica in replicas:
        until_blocking(
            lambda r=replica: (r.metric("watchdog_alert_rounds_total") or 0) >= goals[r.name],
            deadline=WAIT_S,
        )


def outage_groups(pair: Pair) -> list[list[str]]:
    """The statuses notified, in order, of each group of outage alerts."""
    return [statuses for key, statuses in pair.notified_groups().items() if "WatchdogOutage" in key]


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[Pair]:
    home = tmp_path / "alertmanagers"
    home.mkdir()
    with alertmanager_pair(home) as pair:
        yield pair


def test_two_replicas_send_one_message_and_a_killed_holder_is_taken_over(
    tmp_path: Path,
    place: Place,
    slack: SlackServer,
    alertmanagers: Pair,
    replicas: dict[str, Replica],
) -> None:
    path = estate(tmp_path, place, slack, alertmanagers.urls)
    a = run(replicas, path, "a")
    until_blocking(lambda: a.role() == "holder", deadline=WAIT_S)
    b = run(replicas, path, "b")
    until_blocking(lambda: b.role() == "follower", deadline=WAIT_S)

    # Slack carries the holder's first message out, but its answer never
    # comes back: the alert is in flight when the holder is killed.
    slack.fail_next(Fault.lost_answer())
    (tmp_path / "farm-ok").unlink()
    until_blocking(lambda: posted(slack), deadline=WAIT_S)
    assert slack_entries(place) == [("pending", 1)]  # claimed, its outcome unknown
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=WAIT_S)

    until_blocking(lambda: b.role() == "holder", deadline=WAIT_S)
    cluster = httpx.get(f"{b.url}/api/v1/status", timeout=10).json()["cluster"]
    assert (cluster["replica"], cluster["role"]) == ("b", "holder")
    # The new holder delivers what was in flight: Slack is asked first, and
    # the message found is not posted again.
    until_blocking(lambda: slack_entries(place) == [("delivered", 2)], deadline=WAIT_S)
    until_blocking(lambda: ("farm", "down") in open_incidents(place), deadline=WAIT_S)
    until_blocking(lambda: outage_groups(alertmanagers), deadline=WAIT_S)
    rounds_pass(b)
    [message] = posted(slack)
    assert "farm" in message
    assert ("workflow", "down") in open_incidents(place)
    # Both replicas posted it to both Alertmanagers: one group, notified once.
    assert outage_groups(alertmanagers) == [["firing"]]
    for url in alertmanagers.urls:
        [held] = alertmanagers.alerts(url, alertname="WatchdogOutage")
        assert held["annotations"]["replica"] in ("a", "b")  # never a label
        assert "replica" not in held["labels"]

    (tmp_path / "farm-ok").touch()
    until_blocking(lambda: slack.calls_to("chat.update"), deadline=WAIT_S)
    until_blocking(lambda: open_incidents(place) == [], deadline=WAIT_S)
    rounds_pass(b)
    assert len(slack.calls_to("chat.update")) == 1  # the resolution, once
    assert len(posted(slack)) == 1
    replies = [m for m in slack.messages if m.thread_ts is not None]
    assert len(replies) == 1  # "resolved", in the alert's thread
    until_blocking(
        lambda: outage_groups(alertmanagers) == [["firing", "resolved"]], deadline=WAIT_S
    )
    ended = place.rows("SELECT node FROM incidents WHERE ended_at IS NOT NULL ORDER BY node")
    assert ended == [("farm",), ("search",), ("workflow",)]  # each once: none lost, none doubled


def test_a_maneuver_refused_through_one_replica_is_refused_through_the_other(
    tmp_path: Path, place: Place, slack: SlackServer, replicas: dict[str, Replica]
) -> None:
    path = estate(tmp_path, place, slack)
    a = run(replicas, path, "a")
    b = run(replicas, path, "b")
    refused = httpx.post(
        f"{b.url}/api/v1/maneuvers",
        json={
            "actions": [{"action": "shutdown", "node": "farm"}],
            "by": "alice",
            "reason": "relieve search",
        },
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=10,
        trust_env=False,
    )
    assert refused.status_code == 409, refused.text
    ident = refused.json()["id"]
    [seen] = httpx.get(f"{a.url}/api/v1/maneuvers", timeout=10).json()["maneuvers"]
    assert (seen["id"], seen["state"], seen["by"]) == (ident, "refused", "alice")


def test_the_store_cut_off_leaves_the_replicas_probing_and_alerting_critical_nodes_alone(
    tmp_path: Path, place: Place, slack: SlackServer, replicas: dict[str, Replica]
) -> None:
    path = estate(tmp_path, place, slack)
    a = run(replicas, path, "a")
    until_blocking(lambda: a.role() == "holder", deadline=WAIT_S)
    b = run(replicas, path, "b")
    until_blocking(lambda: b.role() == "follower", deadline=WAIT_S)

    place.cut(allow=False)
    cut_at = time.monotonic()
    try:
        until_blocking(lambda: a.role() == "alone" and b.role() == "alone", deadline=WAIT_S)
        runs = {r.name: r.total("watchdog_probe_results_total") for r in (a, b)}
        (tmp_path / "farm-ok").unlink()
        # Each replica sends it: a duplicate is better than silence.
        until_blocking(lambda: len(posted(slack)) == 2, deadline=WAIT_S)
        for replica in (a, b):
            assert httpx.get(f"{replica.url}/api/v1/status", timeout=10).status_code == 200
            assert replica.total("watchdog_probe_results_total") > runs[replica.name]
        # The rest of 30 s cut off: they keep probing and answering all along.
        for _ in range(CUT_S):
            if time.monotonic() - cut_at >= CUT_S:
                break
            before = {r.name: r.total("watchdog_probe_results_total") for r in (a, b)}
            time.sleep(1)
            for replica in (a, b):
                assert httpx.get(f"{replica.url}/-/healthy", timeout=10).status_code == 200
                until_blocking(
                    lambda r=replica, was=before: (
                        r.total("watchdog_probe_results_total") > was[r.name]
                    ),
                    deadline=WAIT_S,
                )
    finally:
        place.cut(allow=True)

    until_blocking(lambda: {a.role(), b.role()} == {"holder", "follower"}, deadline=WAIT_S)
    until_blocking(lambda: ("workflow", "down") in open_incidents(place), deadline=WAIT_S)
    rounds_pass(a, b)
    assert len(posted(slack)) == 2  # the holder does not announce it a third time

    (tmp_path / "farm-ok").touch()
    until_blocking(lambda: len(slack.calls_to("chat.update")) == 2, deadline=WAIT_S)
    until_blocking(lambda: open_incidents(place) == [], deadline=WAIT_S)
    rounds_pass(a, b)
    # Each message resolved by the replica that sent it, once.
    assert len(slack.calls_to("chat.update")) == 2
    assert sorted(c.params["ts"] for c in slack.calls_to("chat.update")) == sorted(
        m.ts for m in slack.messages if m.thread_ts is None
    )


def sharded_estate(folder: Path, place: Place, target: int, count: int) -> Path:
    """`count` services, each probed over TCP on `target`, sharded."""
    path = folder / "estate.yaml"
    nodes = "".join(
        f"""
              svc-{i:02d}:
                probes:
                  - tcp: 127.0.0.1:{target}
                    interval: 300ms
                    failure_threshold: 1
                    success_threshold: 1"""
        for i in range(count)
    )
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            state:
              url: "{place.url}"
              password_env: {PG_VARIABLE}
            cluster: {{lease: {LEASE_S}s, shards: auto}}
            nodes:{nodes}
            """
        )
    )
    return path


def last_runs(replica: Replica) -> dict[str, float]:
    """When each probe last ran, as `replica` knows it (its own and the
    others' results)."""
    nodes = httpx.get(f"{replica.url}/api/v1/status", timeout=10).json()["nodes"]
    return {p["probe"]: p["last_at"] or 0.0 for n in nodes for p in n["probes"]}


def test_three_sharded_replicas_split_the_probes_and_a_dead_ones_move(
    tmp_path: Path, place: Place, replicas: dict[str, Replica]
) -> None:
    count = 30
    with accepting() as target:
        path = sharded_estate(tmp_path, place, target, count)
        a, b, c = (run(replicas, path, name) for name in "abc")

        def owned() -> dict[str, float]:
            return {r.name: r.metric("watchdog_probes_owned") or 0 for r in (a, b, c)}

        # Once all three see each other, each probe runs on one of them.
        until_blocking(
            lambda: (
                all(r.metric("watchdog_cluster_members") == 3 for r in (a, b, c))
                and sum(owned().values()) == count
            ),
            deadline=WAIT_S,
        )
        assert all(n > 0 for n in owned().values()), owned()
        # Each sees every probe run, its own and the others'.
        until_blocking(lambda: all(at > 0 for at in last_runs(c).values()), deadline=WAIT_S)

        c.process.send_signal(signal.SIGKILL)
        c.process.wait(timeout=WAIT_S)
        killed_at = time.time()
        until_blocking(
            lambda: (
                (a.metric("watchdog_probes_owned") or 0) + (b.metric("watchdog_probes_owned") or 0)
                == count
            ),
            deadline=WAIT_S,
        )

        # Every probe, the dead replica's too, has run again since (each
        # survivor knows at once when its own probes ran; the other's
        # results reach it when they change, and every minute).
        def ran_since() -> bool:
            seen_a, seen_b = last_runs(a), last_runs(b)
            return all(max(seen_a[key], seen_b[key]) > killed_at for key in seen_a)

        until_blocking(ran_since, deadline=WAIT_S)
