"""The alert rules of a replica that takes the lease over or cannot save:
`Alerting.adopt` (forget what it saw, go on from what the last holder
sent), `Alerting.unsaved` (changes a failed save gives back, newer ones
winning) and `Alerting.tracked` (what `restore` takes, of the alerts that
have spoken)."""

from __future__ import annotations

from alerts.model import Notification
from alerts.rules import Alerting, Failed, Policy, TrackedAlert
from topology import State

DOWN = State.DOWN


def down(node: str, cause: str | None = None, since: float = 100.0) -> Failed:
    return Failed(node, DOWN, (cause or node,), cause is not None, 600.0, since)


FARM = [down("farm-1"), down("web", "farm-1")]
DB = [down("db", since=120.0)]


def events(notes: list[Notification]) -> list[tuple[str, str]]:
    return [(n.alert.key, n.event) for n in notes]


def spoken(alerting: Alerting) -> dict[str, TrackedAlert]:
    """What the alerting gave to keep, the alerts that have spoken."""
    return {k: v for k, v in alerting.take_changes().items() if v is not None}


def holder_with_both() -> tuple[Alerting, dict[str, TrackedAlert]]:
    """An alerting that has sent the farm's and the database's alerts."""
    alerting = Alerting(Policy(settle_s=0))
    assert events(alerting.update(130, FARM + DB)) == [
        ("outage:db", "firing"),
        ("outage:farm-1", "firing"),
    ]
    return alerting, spoken(alerting)


# --- adopt ----------------------------------------------------------------------


def test_after_adopting_an_alert_it_did_not_get_fires_anew() -> None:
    replica, kept = holder_with_both()
    replica.adopt([kept["outage:farm-1"]])
    assert [a.key for a in replica.alerts] == ["outage:farm-1"]

    notes = replica.update(200, FARM + DB)

    # The database's alert was forgotten: its failure makes a first message
    # again; the farm's goes on without one.
    assert events(notes) == [("outage:db", "firing")]
    assert notes[0].id == kept["outage:db"].alert.occurrence + "#1:firing"


def test_a_forgotten_alert_does_not_resolve() -> None:
    replica, _ = holder_with_both()
    replica.adopt([])
    assert replica.alerts == []
    assert replica.update(200, []) == []
    assert replica.take_changes() == {}


def test_an_adopted_alert_resolves_once_when_its_failure_is_gone() -> None:
    last_holder, kept = holder_with_both()
    replica = Alerting(Policy(settle_s=0))
    replica.update(125, DB)  # what this replica saw, then let go
    replica.adopt(kept.values())

    assert replica.update(200, FARM + DB) == []  # both go on: no first message again
    notes = replica.update(300, DB)
    assert events(notes) == [("outage:farm-1", "resolved")]
    assert notes[0].id == kept["outage:farm-1"].alert.occurrence + "#2:resolved"
    assert replica.take_changes() == {"outage:farm-1": None}
    assert replica.update(301, DB) == []
    assert last_holder.alerts  # the last holder's own state is its own


def test_adopting_forgets_changes_not_yet_taken() -> None:
    replica = Alerting(Policy(settle_s=0))
    replica.update(130, DB)  # spoke: a change to keep
    replica.adopt([])
    assert replica.take_changes() == {}


def test_adopting_takes_what_another_replica_saw_even_if_this_one_saw_nothing() -> None:
    _, kept = holder_with_both()
    replica = Alerting(Policy(settle_s=0))
    replica.adopt([kept["outage:db"]])
    assert [a.key for a in replica.alerts] == ["outage:db"]
    assert events(replica.update(200, [])) == [("outage:db", "resolved")]


# --- unsaved ----------------------------------------------------------------------


def test_changes_a_save_lost_are_given_again() -> None:
    alerting = Alerting(Policy(settle_s=0))
    alerting.update(130, FARM + DB)
    changes = alerting.take_changes()
    assert set(changes) == {"outage:farm-1", "outage:db"}
    assert alerting.take_changes() == {}

    alerting.unsaved(changes)

    assert alerting.take_changes() == changes
    assert alerting.take_changes() == {}


def test_newer_changes_win_over_those_given_back() -> None:
    alerting = Alerting(Policy(settle_s=0))
    alerting.update(130, FARM + DB)
    lost = alerting.take_changes()
    alerting.update(200, DB)  # the farm's alert resolves meanwhile

    alerting.unsaved(lost)

    assert alerting.take_changes() == {"outage:farm-1": None, "outage:db": lost["outage:db"]}


def test_a_newer_state_of_the_same_alert_wins() -> None:
    alerting = Alerting(Policy(settle_s=0, repeat_interval_s=60))
    alerting.update(130, DB)
    lost = alerting.take_changes()
    assert events(alerting.update(200, DB)) == [("outage:db", "repeat")]
    alerting.unsaved(lost)
    [(key, newer)] = alerting.take_changes().items()
    assert key == "outage:db"
    assert newer is not None
    assert (newer.sent, newer.last_sent) == (2, 200)


# --- tracked ----------------------------------------------------------------------


def test_tracked_gives_only_the_alerts_that_have_spoken() -> None:
    alerting = Alerting(Policy(settle_s=60))
    alerting.update(100, FARM)
    alerting.update(160, FARM)  # the farm's alert fires
    alerting.update(165, FARM + DB)  # the database's settles (since 120, until 180)
    kept = spoken(alerting)
    assert list(kept) == ["outage:farm-1"]

    found = alerting.tracked(["outage:farm-1", "outage:db", "outage:nowhere"])

    assert [t.alert.key for t in found] == ["outage:farm-1"]
    [farm] = found
    saved = kept["outage:farm-1"]
    # As it was kept when it spoke (its summary is of now: the time left runs).
    assert (farm.alert.occurrence, farm.fired_at, farm.last_sent, farm.sent) == (
        saved.alert.occurrence,
        160,
        160,
        1,
    )
    assert (farm.members, farm.critical_named) == (saved.members, saved.critical_named)
    assert alerting.tracked([]) == []
    assert alerting.take_changes() == {}  # reading them changes nothing


def test_restoring_what_tracked_gives_goes_on_without_a_second_first_message() -> None:
    before = Alerting(Policy(settle_s=0))
    [firing] = before.update(100, FARM)
    after = Alerting(Policy(settle_s=0))

    after.restore(before.tracked(["outage:farm-1"]))

    assert after.update(200, FARM) == []
    [resolved] = after.update(300, [])
    assert resolved.id == firing.alert.occurrence + "#2:resolved"
    assert after.update(301, []) == []
