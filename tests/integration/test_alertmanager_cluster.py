"""The pair of clustered Alertmanagers of `alertmanager_cluster`: the same
alert posted to both (as two watchdog replicas would, each with its own
annotations) makes exactly one notification group, notified once firing and
once resolved; another label set is another group; each Alertmanager keeps
the alert as posted to it, since a cluster shares notifications, not
alerts; both Alertmanagers stop when the block using them raises."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alertmanager_cluster import Pair, alertmanager_pair
from waiting import until_blocking

# A bound on waiting for a notification, never an assertion on its timing.
NOTIFY_WAIT_S = 20.0
# Beyond the pair's dedup window, for a duplicate to show if one were sent.
SLACK_S = 1.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    # One pair for the module (settling takes seconds); every test uses an
    # alertname of its own, so its groups are its own.
    with alertmanager_pair(tmp_path_factory.mktemp("alertmanager-pair")) as started:
        yield started


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def alert(
    alertname: str, replica: str, *, starts_at: float, ends_at: float, **labels: str
) -> dict[str, Any]:
    """An alert as a watchdog replica posts it: the same labels whichever
    replica, an annotation naming the replica."""
    return {
        "labels": {"alertname": alertname, "root_cause": "farm-a", **labels},
        "annotations": {"summary": f"{alertname} down", "replica": replica},
        "startsAt": iso(starts_at),
        "endsAt": iso(ends_at),
        "generatorURL": "http://watchdog.example:8080/api/v1/alerts",
    }


def post_from_both_replicas(
    pair: Pair, alertname: str, *, starts_at: float, ends_at: float, **labels: str
) -> None:
    """Each replica posts the alert to both Alertmanagers, one after the
    other, with its own annotation."""
    for replica in ("replica-a", "replica-b"):
        one = alert(alertname, replica, starts_at=starts_at, ends_at=ends_at, **labels)
        for url in pair.urls:
            pair.post_alerts(url, [one])


def notified(pair: Pair, alertname: str) -> dict[str, list[str]]:
    """The groups of this alertname notified so far, and their statuses."""
    return {
        key: statuses
        for key, statuses in pair.notified_groups().items()
        if f'alertname="{alertname}"' in key
    }


def wait_out_a_duplicate(pair: Pair) -> None:
    """Sleep past the moment the other peer would have sent a duplicate: its
    notification log, gossiped from the first, is what keeps it from it."""
    time.sleep(pair.dedup_window_s + SLACK_S)


def test_both_alertmanagers_are_settled_in_one_cluster_of_two(pair: Pair) -> None:
    first, second = (pair.status(url)["cluster"] for url in pair.urls)
    assert len(set(pair.urls)) == 2
    assert all(url.startswith("http://127.0.0.1:") for url in pair.urls)
    assert first["status"] == second["status"] == "ready"
    names = sorted(peer["name"] for peer in first["peers"])
    assert len(names) == 2
    assert sorted(peer["name"] for peer in second["peers"]) == names
    assert sorted([first["name"], second["name"]]) == names


def test_the_same_alert_from_two_replicas_is_one_group_notified_once(pair: Pair) -> None:
    started = time.time() - 60
    post_from_both_replicas(pair, "OrdersDown", starts_at=started, ends_at=started + 3600)

    [(key, statuses)] = until_blocking(lambda: notified(pair, "OrdersDown"), NOTIFY_WAIT_S).items()
    assert statuses == ["firing"]
    wait_out_a_duplicate(pair)
    assert notified(pair, "OrdersDown") == {key: ["firing"]}
    [body] = [body for body in pair.notifications() if body["groupKey"] == key]
    assert body["groupLabels"] == {"alertname": "OrdersDown", "root_cause": "farm-a"}
    [firing] = body["alerts"]
    assert firing["status"] == "firing"
    assert firing["annotations"]["replica"] in {"replica-a", "replica-b"}

    post_from_both_replicas(pair, "OrdersDown", starts_at=started, ends_at=time.time() - 1)

    until_blocking(lambda: notified(pair, "OrdersDown")[key] != ["firing"], NOTIFY_WAIT_S)
    wait_out_a_duplicate(pair)
    assert notified(pair, "OrdersDown") == {key: ["firing", "resolved"]}
    [_, body] = [body for body in pair.notifications() if body["groupKey"] == key]
    [resolved] = body["alerts"]
    assert resolved["status"] == "resolved"


def test_another_label_set_is_another_group(pair: Pair) -> None:
    started = time.time() - 60
    post_from_both_replicas(pair, "SearchDown", starts_at=started, ends_at=started + 3600)
    post_from_both_replicas(
        pair, "SearchDown", starts_at=started, ends_at=started + 3600, root_cause="farm-b"
    )

    until_blocking(lambda: len(notified(pair, "SearchDown")) == 2, NOTIFY_WAIT_S)
    wait_out_a_duplicate(pair)
    groups = notified(pair, "SearchDown")
    assert sorted(groups.values()) == [["firing"], ["firing"]]
    notified_root_causes = [
        body["groupLabels"]["root_cause"]
        for body in pair.notifications()
        if body["groupLabels"].get("alertname") == "SearchDown"
    ]
    assert sorted(notified_root_causes) == ["farm-a", "farm-b"]
    for url in pair.urls:
        held = [g for g in pair.groups(url) if g["labels"].get("alertname") == "SearchDown"]
        assert sorted(g["labels"]["root_cause"] for g in held) == ["farm-a", "farm-b"]


def test_each_alertmanager_keeps_the_alert_as_posted_to_it(pair: Pair) -> None:
    # A cluster gossips silences and the notification log, never alerts:
    # each replica's post stays on the Alertmanager it went to.
    started = time.time() - 60
    first, second = pair.urls
    for url, replica in ((first, "replica-a"), (second, "replica-b")):
        pair.post_alerts(
            url, [alert("CartDown", replica, starts_at=started, ends_at=started + 3600)]
        )

    [on_first] = pair.alerts(first, alertname="CartDown")
    [on_second] = pair.alerts(second, alertname="CartDown", root_cause="farm-a")
    assert on_first["annotations"]["replica"] == "replica-a"
    assert on_second["annotations"]["replica"] == "replica-b"
    assert on_first["labels"] == on_second["labels"]
    assert pair.alerts(first, alertname="NoSuchAlert") == []


def fail_inside(pair: Pair, started: list[Pair]) -> None:
    started.append(pair)
    raise RuntimeError("the body failed")


def test_both_alertmanagers_stop_when_the_block_raises(tmp_path: Path) -> None:
    started: list[Pair] = []
    with pytest.raises(RuntimeError, match="the body failed"), alertmanager_pair(tmp_path) as pair:
        fail_inside(pair, started)

    [stopped] = started
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        for url in stopped.urls:
            with pytest.raises(httpx.TransportError):
                client.get(f"{url}/-/ready")
