"""Observed calls against a topology, without a network: what is a finding,
what is information, how names match and how rates are told."""

from __future__ import annotations

import math

import pytest

from topology import loads
from topology.observed import Call, candidates, compare

ESTATE = loads(
    """
version: 1
nodes:
  farm: {kind: farm}
  db: {kind: database}
  api:
    runs_on: [farm]
    depends_on: [db, {any_of: [cache-a, cache-b]}]
  cache-a: {}
  cache-b: {}
  pay: {critical: true}
  web: {}
  team/web: {}
"""
)


def call(caller: str, callee: str, per_s: float, source: int = 0) -> Call:
    return Call(tuple(caller.split("|")), tuple(callee.split("|")), per_s, source)


def test_a_call_to_a_direct_requirement_is_declared() -> None:
    calls = [call("api", "db", 1), call("api", "cache-b", 1), call("api", "farm", 1)]
    report = compare(ESTATE, calls, 3600)
    assert report.findings == ()
    assert [n.message for n in report.notes] == [
        "api depends_on cache-a, but no call from api to cache-a was observed over 1h"
    ]


def test_undeclared_calls_sort_critical_first_then_busiest() -> None:
    calls = [
        call("web", "db", 10),
        call("api", "web", 0.5),
        call("web", "pay", 0.01),
        call("web", "api", 20.567),
    ]
    report = compare(ESTATE, calls, 600)
    assert [f.message for f in report.findings] == [
        "web calls pay (0.6 requests/min over 10m), not in the topology",
        "web calls api (1,234 requests/min over 10m), not in the topology",
        "web calls db (600 requests/min over 10m), not in the topology",
        "api calls web (30 requests/min over 10m), not in the topology",
    ]
    assert {f.rule for f in report.findings} == {"undeclared-dependency"}
    assert {f.severity for f in report.findings} == {"warning"}


@pytest.mark.parametrize(
    ("per_s", "shown"),
    [(0.0005, "0.03"), (0.04, "2.4"), (1 / 60, "1"), (0.2, "12"), (100, "6,000")],
)
def test_rates_are_told_per_minute_with_the_digits_people_read(per_s: float, shown: str) -> None:
    (finding,) = compare(ESTATE, [call("web", "db", per_s)], 3600).findings
    assert f"({shown} requests/min over 1h)" in finding.message


def test_no_traffic_self_calls_and_unnamed_ends_are_left_out() -> None:
    calls = [
        call("web", "db", 0.0),
        call("web", "db", math.nan),
        call("web", "web", 5.0),
        call("", "db", 5.0),
    ]
    report = compare(ESTATE, calls, 3600)
    assert (report.findings, report.notes, report.calls, report.matched) == ((), (), 4, 0)


def test_one_source_sums_its_series_and_sources_count_once() -> None:
    calls = [
        call("web", "db", 1.0, source=0),
        call("web", "db", 1.0, source=0),  # two series of one query: both calls
        call("web", "db", 1.5, source=1),  # the same calls, seen by another query
    ]
    (finding,) = compare(ESTATE, calls, 3600).findings
    assert "(120 requests/min over 1h)" in finding.message


def test_names_match_joined_first_then_the_last_value() -> None:
    assert candidates(("team", "web")) == ("team/web", "web")
    assert candidates(("", "web")) == ("web",)
    assert candidates(("", "")) == ()
    calls = [call("team|web", "other|db", 1.0), call("team|web", "db", 1.0)]
    report = compare(ESTATE, calls, 3600)
    assert [f.nodes for f in report.findings] == [("team/web", "db")]


def test_unmatched_names_are_told_once_each_with_their_roles() -> None:
    calls = [
        call("ingress|gw", "web", 1.0),
        call("ingress|gw", "api", 1.0),
        call("web", "ingress|gw", 1.0),
        call("user", "web", 1.0),
    ]
    report = compare(ESTATE, calls, 3600)
    assert [(n.rule, n.nodes, n.message) for n in report.notes] == [
        (
            "unmatched-name",
            ("ingress/gw",),
            "no node is named 'ingress/gw' (in 2 as caller, 1 as callee of the observed calls)",
        ),
        (
            "unmatched-name",
            ("user",),
            "no node is named 'user' (in 1 as caller of the observed calls)",
        ),
    ]
    assert report.notes[0].to_json()["severity"] == "info"


def test_never_observed_is_told_only_for_nodes_seen_calling() -> None:
    # api is never seen calling: its telemetry may be missing, nothing is said.
    report = compare(ESTATE, [call("web", "pay", 1.0)], 3600)
    assert report.notes == ()
