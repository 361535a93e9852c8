"""Alert rules one tick at a time: one alert per root cause, settle, repeat,
escalation, resolution."""

from __future__ import annotations

from alerts.model import Notification
from alerts.rules import Alerting, Failed, Policy
from topology import State

UP, DEGRADED, DOWN = State.UP, State.DEGRADED, State.DOWN


def farm_down(since: float = 100.0, extra: int = 50) -> list[Failed]:
    """A farm with 50 dependents down, two of them critical."""
    nodes = [
        Failed("farm-oms-1", DOWN, ("farm-oms-1",), False, 14400, since),
        Failed("orders-workflow", DOWN, ("farm-oms-1",), True, 600, since),
        Failed("checkout", DEGRADED, ("farm-oms-1",), True, 300, since),
    ]
    nodes += [
        Failed(f"svc-{i:02}", DOWN, ("farm-oms-1",), False, 14400, since) for i in range(extra)
    ]
    return nodes


def events(notes: list[Notification]) -> list[tuple[str, str, str]]:
    return [(n.alert.key, n.event, n.alert.severity) for n in notes]


def test_a_farm_with_fifty_dependents_gives_one_alert_naming_the_critical_ones() -> None:
    alerting = Alerting(Policy(settle_s=10))
    assert alerting.update(100, farm_down()) == []  # settling

    [note] = alerting.update(110, farm_down())

    assert (note.event, note.alert.key, note.alert.severity) == (
        "firing",
        "outage:farm-oms-1",
        "critical",
    )
    assert note.alert.root_cause == ("farm-oms-1",)
    assert [(i.node, i.state) for i in note.alert.critical] == [
        ("orders-workflow", DOWN),
        ("checkout", DEGRADED),
    ]
    assert len(note.alert.collateral) == 50
    assert note.alert.summary == (
        "farm-oms-1 down takes critical orders-workflow down (9m50s left) "
        "and degrades critical checkout (4m50s left); 50 other nodes"
    )
    assert alerting.update(111, farm_down()) == []


def test_a_cause_that_only_degrades_critical_nodes_says_degrades_not_down() -> None:
    alerting = Alerting(Policy(settle_s=10, repeat_interval_s=86400))
    failed = [
        Failed("farm-x", DOWN, ("farm-x",), False, 14400, 100),
        Failed("checkout", DEGRADED, ("farm-x",), True, 300, 100),
    ]
    assert alerting.update(100, failed) == []
    [note] = alerting.update(110, failed)
    assert (note.alert.kind, note.alert.severity, note.alert.summary) == (
        "outage",  # the key stays that of the cause's outage, whatever it does
        "warning",
        "farm-x down degrades critical checkout (4m50s left)",
    )
    [escalated] = alerting.update(400, failed)
    assert escalated.alert.summary == "checkout degraded for 5m, over its recovery target of 5m"


def test_a_flap_shorter_than_the_settle_window_says_nothing() -> None:
    alerting = Alerting(Policy(settle_s=10))
    assert alerting.update(100, farm_down()) == []
    assert alerting.update(105, []) == []
    assert alerting.alerts == []


def test_it_resolves_with_a_message() -> None:
    alerting = Alerting(Policy(settle_s=0))
    [firing] = alerting.update(100, farm_down())
    [resolved] = alerting.update(200, [])
    assert (resolved.event, resolved.alert.key) == ("resolved", "outage:farm-oms-1")
    assert resolved.alert.summary == firing.alert.summary  # the event says it is over
    assert resolved.id != firing.id


def test_one_alert_per_root_cause_and_a_node_two_causes_take_down_is_named_under_each() -> None:
    alerting = Alerting(Policy(settle_s=0))
    failed = [
        Failed("kv-a", DOWN, ("kv-a",), False, 14400, 100),
        Failed("kv-b", DOWN, ("kv-b",), False, 14400, 100),
        Failed("store", DOWN, ("kv-a", "kv-b"), True, 600, 100),
        Failed(
            "search", DEGRADED, ("search",), False, 14400, 100
        ),  # degraded, not critical: silent
    ]
    notes = alerting.update(100, failed)
    assert events(notes) == [
        ("outage:kv-a", "firing", "critical"),
        ("outage:kv-b", "firing", "critical"),
    ]
    for note in notes:
        assert [i.node for i in note.alert.critical] == ["store"]
    assert notes[0].alert.summary == "kv-a down takes critical store down (10m left)"


def test_it_repeats_on_schedule_and_at_once_for_a_new_critical_node() -> None:
    alerting = Alerting(Policy(settle_s=0, repeat_interval_s=3600, escalate_at=()))
    alerting.update(100, farm_down()[:2])
    assert alerting.update(200, farm_down()[:2]) == []
    assert events(alerting.update(300, farm_down())) == [
        ("outage:farm-oms-1", "repeat", "critical")
    ]
    assert alerting.update(3800, farm_down()) == []
    assert events(alerting.update(3900, farm_down())) == [
        ("outage:farm-oms-1", "repeat", "critical")
    ]


def test_it_escalates_past_the_recovery_target_and_again_at_twice_it() -> None:
    alerting = Alerting(Policy(settle_s=0, repeat_interval_s=86400))
    failed = [Failed("antifraud", DOWN, ("antifraud",), True, 600, 100)]
    assert events(alerting.update(100, failed)) == [("outage:antifraud", "firing", "critical")]
    assert alerting.update(699, failed) == []
    [first] = alerting.update(700, failed)
    assert (first.event, first.alert.summary) == (
        "escalated",
        "antifraud down for 10m, over its recovery target of 10m",
    )
    assert alerting.update(1000, failed) == []
    [second] = alerting.update(1300, failed)
    assert second.alert.summary == "antifraud down for 20m, over its recovery target of 10m"
    assert alerting.update(5000, failed) == []


def test_drift_is_an_alert_of_its_own() -> None:
    alerting = Alerting(Policy(settle_s=0))
    drift = [Failed("workflow", DOWN, ("farm",), True, 600, 100)]
    [note] = alerting.update(100, [], drift)
    assert (note.alert.key, note.alert.kind, note.alert.severity) == (
        "drift:farm",
        "drift",
        "warning",
    )
    assert note.alert.summary == (
        "workflow is probed up, but the topology says farm takes it down: the topology may be wrong"
    )


def test_notification_ids_are_unique_and_stable_per_occurrence() -> None:
    alerting = Alerting(Policy(settle_s=0))
    ids = [n.id for n in alerting.update(100, farm_down())]
    ids += [n.id for n in alerting.update(200, [])]
    ids += [n.id for n in alerting.update(300, farm_down(since=300))]
    assert ids == [
        "outage:farm-oms-1@100.000#1:firing",
        "outage:farm-oms-1@100.000#2:resolved",
        "outage:farm-oms-1@300.000#1:firing",
    ]


def test_the_settle_window_counts_from_the_failure_not_from_when_it_was_seen() -> None:
    alerting = Alerting(Policy(settle_s=10))
    assert alerting.update(105, farm_down(since=100)) == []
    assert alerting.next_due() == 110
    assert events(alerting.update(110, farm_down(since=100))) == [
        ("outage:farm-oms-1", "firing", "critical")
    ]
    assert alerting.next_due() is None


def test_firing_lists_the_alerts_that_fired_for_sinks_to_refresh_them() -> None:
    alerting = Alerting(Policy(settle_s=10))
    alerting.update(100, farm_down())
    assert alerting.firing(105) == []  # still settling: nothing fired yet
    [fired] = alerting.update(110, farm_down())
    [refresh] = alerting.firing(170)
    assert (refresh.event, refresh.alert, refresh.at) == ("repeat", fired.alert, 170)
    assert refresh.id == "outage:farm-oms-1@100.000#refresh"
    # Not a reminder: asking does not move the repeat schedule or send anything.
    assert alerting.update(171, farm_down()) == []
    alerting.update(200, [])
    assert alerting.firing(201) == []


def test_an_alert_on_a_watched_critical_node_skips_the_settle_window() -> None:
    alerting = Alerting(Policy(settle_s=10))
    [note] = alerting.update(100, farm_down(), watched=frozenset({"orders-workflow"}))
    assert (note.event, note.alert.key) == ("firing", "outage:farm-oms-1")
    # Watching a node the alert does not take down changes nothing.
    other = Alerting(Policy(settle_s=10))
    assert other.update(100, farm_down(), watched=frozenset({"svc-01", "billing"})) == []


def test_early_signs_make_an_anomaly_alert_for_any_node() -> None:
    spike = "error rate spike: 58 error lines in 1m vs usual 2±1"
    search = Failed("search", DEGRADED, ("search",), False, 14400, 100, anomalies=(spike,))
    plain = Failed("reports", DEGRADED, ("reports",), False, 14400, 100)
    alerting = Alerting(Policy(settle_s=0))
    [note] = alerting.update(100, [search, plain])
    assert (note.alert.key, note.alert.kind, note.alert.severity) == (
        "anomaly:search",
        "anomaly",
        "warning",
    )
    assert note.alert.summary == f"search degraded: {spike}"
    # The signs gone, the node up again: resolved.
    [resolved] = alerting.update(160, [plain])
    assert (resolved.event, resolved.alert.key) == ("resolved", "anomaly:search")


def test_a_critical_node_degraded_by_its_signs_gives_one_anomaly_alert_not_two() -> None:
    slow = "latency regression: p95 180ms vs usual 42ms±6ms for 3 ticks"
    workflow = Failed(
        "orders-workflow", DEGRADED, ("orders-workflow",), True, 600, 100, anomalies=(slow,)
    )
    alerting = Alerting(Policy(settle_s=0))
    [note] = alerting.update(100, [workflow])
    assert (note.alert.key, note.alert.severity) == ("anomaly:orders-workflow", "warning")
    assert [i.node for i in note.alert.critical] == ["orders-workflow"]
    assert note.alert.summary == f"orders-workflow degraded (10m left): {slow}"


def test_a_node_down_with_signs_is_an_outage_that_says_them() -> None:
    silent = "no log line for 12m (usual gap under 2m)"
    node = Failed("batch", DOWN, ("batch",), False, 14400, 100, anomalies=(silent,))
    [note] = Alerting(Policy(settle_s=0)).update(100, [node])
    assert (note.alert.key, note.alert.kind) == ("outage:batch", "outage")
    assert note.alert.summary == f"batch down: {silent}"


def test_ten_critical_nodes_are_named_those_down_first_and_the_rest_counted() -> None:
    failed = [Failed("farm", DOWN, ("farm",), False, 14400, 100)]
    failed += [Failed(f"down-{i}", DOWN, ("farm",), True, 600, 100) for i in range(9)]
    failed += [Failed(f"slow-{i}", DEGRADED, ("farm",), True, 600, 100) for i in range(3)]
    [note] = Alerting(Policy(settle_s=0)).update(100, failed)
    named = ", ".join(f"down-{i} down (10m left)" for i in range(9))
    assert note.alert.summary == (
        f"farm down takes critical {named} and degrades critical slow-0 (10m left),"
        " and 2 more critical nodes"
    )
    assert len(note.alert.critical) == 12
