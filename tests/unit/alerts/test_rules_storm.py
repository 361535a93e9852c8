"""Alert rules in a storm: one alert per root cause, drift per cause,
unexplained failures folded, a recovering farm that does not page again, and
alert state that outlives a restart."""

from __future__ import annotations

from collections.abc import Sequence

from alerts.model import Alert, Notification
from alerts.rules import Alerting, Failed, Policy
from topology import State

UP, DEGRADED, DOWN = State.UP, State.DEGRADED, State.DOWN
LONG = 14400


def events(notes: list[Notification]) -> list[tuple[str, str]]:
    return [(n.alert.key, n.event) for n in notes]


def down(node: str, *causes: str, critical: bool = False, since: float = 100.0) -> Failed:
    return Failed(node, DOWN, causes or (node,), critical, 600 if critical else LONG, since)


def alone(node: str, since: float, critical: bool = False) -> Failed:
    """A node down on its own while all it needs is up: unexplained."""
    return Failed(node, DOWN, (node,), critical, 600 if critical else LONG, since, unexplained=True)


def farm_storm(
    farm_up: bool = False, dependents: int = 300, lone: int = 40, drifting: int = 500
) -> tuple[list[Failed], list[Failed]]:
    """A farm with its dependents down (some critical), `lone` replicated
    services whose probes fail with it although the topology says their
    other replica carries them (unexplained, some taking a dependent down
    with the farm), and nodes probed up that the topology says are down."""
    failed = [] if farm_up else [down("farm-3")]
    failed += [
        down(f"svc-{i:03}", "farm-3", critical=i % 50 == 0)
        for i in range(dependents if not farm_up else 0)
    ]
    failed += [alone(f"rep-{i:02}", 100 + i * 0.2, critical=i == 7) for i in range(lone)]
    if not farm_up:
        failed += [down("both", "farm-3", "rep-03", critical=True)]
    drift = [
        Failed(f"up-{i:03}", DOWN, ("farm-3",) if i % 4 else ("rep-05",), i == 1, LONG, 100)
        for i in range(drifting)
    ]
    return failed, drift if not farm_up else []


def suspects(names: Sequence[str]) -> list[tuple[str, int]]:
    return [("farm-3", len(names) - 2), ("dc-1", len(names) - 5)]


def test_a_farm_outage_with_unexplained_failures_and_drift_is_a_handful_of_messages() -> None:
    alerting = Alerting(Policy(settle_s=10), suspects=suspects)
    failed, drift = farm_storm()
    assert alerting.update(105, failed, drift) == []

    notes = alerting.update(120, failed, drift)

    assert events(notes) == [
        ("drift:farm-3", "firing"),
        ("drift:unexplained:rep-00", "firing"),
        ("outage:farm-3", "firing"),
        ("outage:unexplained:rep-00", "firing"),
    ]
    by_key = {n.alert.key: n.alert for n in notes}
    farm = by_key["outage:farm-3"]
    assert [i.node for i in farm.critical] == [
        "both",
        *(f"svc-{i:03}" for i in range(0, 300, 50)),
    ]
    folded = by_key["outage:unexplained:rep-00"]
    assert folded.root_cause == tuple(f"rep-{i:02}" for i in range(40))
    # `both` is down for the farm and for rep-03: named under each.
    assert [i.node for i in folded.critical] == ["both", "rep-07"]
    assert len(folded.collateral) == 39
    assert folded.summary == (
        "40 failures within 10s that the topology does not explain (rep-00, rep-01, rep-02, "
        "rep-03, rep-04, rep-05, rep-06, rep-07, rep-08, rep-09 and 30 more) take critical "
        "both down (9m40s left), rep-07 down (9m41s left); they may share a cause the "
        "topology is missing: 38 of the 40 need farm-3 (down), 35 of the 40 need dc-1"
    )
    assert by_key["drift:farm-3"].summary.startswith(
        "375 nodes are probed up, but the topology says farm-3 takes them down: "
        "up-001 (critical), up-002, up-003, up-005,"
    )
    assert by_key["drift:farm-3"].summary.endswith("and 365 more: the topology may be wrong")
    assert by_key["drift:unexplained:rep-00"].summary.startswith(
        "125 nodes are probed up, but the topology says 40 unexplained failures take them "
        "down: up-000, up-004,"
    )
    assert alerting.update(121, failed, drift) == []


def test_too_few_unexplained_failures_are_not_folded() -> None:
    alerting = Alerting(Policy(settle_s=10, fold_at=3))
    notes = alerting.update(200, [alone("a", 100), alone("b", 101)])
    assert events(notes) == [("outage:a", "firing"), ("outage:b", "firing")]


def test_unexplained_failures_further_apart_than_the_settle_window_are_not_folded() -> None:
    alerting = Alerting(Policy(settle_s=10, fold_at=3))
    spread = [alone(name, since) for name, since in (("a", 100), ("b", 120), ("c", 140))]
    assert events(alerting.update(200, spread)) == [
        ("outage:a", "firing"),
        ("outage:b", "firing"),
        ("outage:c", "firing"),
    ]


def test_a_folded_alert_keeps_its_key_as_failures_join_and_leave() -> None:
    alerting = Alerting(Policy(settle_s=10, fold_at=3))
    first = [alone("a", 100), alone("b", 101), alone("c", 102)]
    assert events(alerting.update(112, first)) == [("outage:unexplained:a", "firing")]
    # `a` recovers; `d` fails within a settle window of `c`: same alert.
    later = [alone("b", 101), alone("c", 102), alone("d", 111, critical=True)]
    [repeat] = alerting.update(113, later)
    assert (repeat.alert.key, repeat.event) == ("outage:unexplained:a", "repeat")
    assert repeat.alert.root_cause == ("b", "c", "d")
    assert [i.node for i in repeat.alert.critical] == ["d"]
    [resolved] = alerting.update(114, [])
    assert (resolved.alert.key, resolved.event) == ("outage:unexplained:a", "resolved")


def test_a_failure_whose_own_alert_spoke_is_not_folded_later() -> None:
    alerting = Alerting(Policy(settle_s=10, fold_at=3))
    assert events(alerting.update(111, [alone("a", 100)])) == [("outage:a", "firing")]
    nodes = [alone("a", 100), alone("b", 108), alone("c", 109), alone("d", 110)]
    assert events(alerting.update(125, nodes)) == [("outage:unexplained:b", "firing")]
    assert alerting.update(126, nodes) == []


def test_a_recovering_farm_does_not_page_again_for_what_is_slower_to_recover() -> None:
    alerting = Alerting(Policy(settle_s=10))
    storm = [down("farm-3"), down("web", "farm-3", critical=True), down("batch", "farm-3")]
    assert events(alerting.update(111, storm)) == [("outage:farm-3", "firing")]
    # The farm is back; its services are not yet: each is its own root
    # cause now (and unexplained: what they need is up).
    late = [alone("web", 100, critical=True), alone("batch", 100)]
    assert alerting.update(130, late) == []
    [alert] = alerting.alerts
    assert alert.key == "outage:farm-3"
    assert alert.summary == (
        "recovering: farm-3 up again; still failing: critical web down (9m30s left); 1 other node"
    )
    assert alerting.update(200, late[1:]) == []
    [resolved] = alerting.update(230, [])
    assert (resolved.alert.key, resolved.event) == ("outage:farm-3", "resolved")


def test_what_fails_anew_while_a_farm_recovers_still_alerts() -> None:
    alerting = Alerting(Policy(settle_s=10))
    alerting.update(111, [down("farm-3"), down("web", "farm-3")])
    other = [alone("web", 100), down("db", since=125)]
    assert alerting.update(130, other) == []
    assert events(alerting.update(135, other)) == [("outage:db", "firing")]


def test_an_alert_that_spoke_outlives_a_restart_and_resolves_once() -> None:
    before = Alerting(Policy(settle_s=0))
    storm = [down("farm-3"), down("web", "farm-3", critical=True)]
    before.update(100, storm)
    saved = before.take_changes()
    assert list(saved) == ["outage:farm-3"]
    kept = saved["outage:farm-3"]
    assert kept is not None
    assert kept.members == {"farm-3", "web"}
    assert before.take_changes() == {}

    after = Alerting(Policy(settle_s=0))
    after.restore([kept])
    # Still down after the restart: the same alert goes on, nothing is sent.
    assert after.update(200, storm) == []
    # It recovered: one resolution, with the identity of the first message.
    [resolved] = after.update(300, [])
    assert resolved.id == "outage:farm-3@100.000#2:resolved"
    assert after.take_changes() == {"outage:farm-3": None}
    assert after.update(301, []) == []


def test_an_alert_that_never_spoke_is_not_kept() -> None:
    alerting = Alerting(Policy(settle_s=10))
    alerting.update(100, [down("farm-3")])
    assert alerting.take_changes() == {}


def test_a_restored_folded_alert_keeps_its_members() -> None:
    before = Alerting(Policy(settle_s=10, fold_at=3))
    nodes = [alone("a", 100), alone("b", 101), alone("c", 102)]
    before.update(112, nodes)
    after = Alerting(Policy(settle_s=10, fold_at=3))
    after.restore(t for t in before.take_changes().values() if t is not None)
    assert after.update(200, [*nodes, alone("d", 103)]) == []
    assert [a.key for a in after.alerts] == ["outage:unexplained:a"]


def test_extra_alerts_follow_the_same_lifecycle() -> None:
    alerting = Alerting(Policy(settle_s=10))
    impaired = Alert("impaired:watchdog", "impaired", "warning", (), "out of descriptors", 100)
    assert alerting.update(105, [], extra=[impaired]) == []
    assert events(alerting.update(110, [], extra=[impaired])) == [("impaired:watchdog", "firing")]
    assert events(alerting.update(130, [])) == [("impaired:watchdog", "resolved")]


def test_the_message_names_ten_critical_nodes_and_counts_the_rest_the_alert_keeps_all() -> None:
    nodes = [down("farm-3")] + [down(f"app-{i:02}", "farm-3", critical=True) for i in range(30)]
    [note] = Alerting(Policy(settle_s=0)).update(100, nodes)
    named = ", ".join(f"app-{i:02} down (10m left)" for i in range(10))
    assert note.alert.summary == f"farm-3 down takes critical {named} and 20 more critical nodes"
    assert len(note.alert.critical) == 30
