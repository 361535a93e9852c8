"""The status page's pure parts: uptime from incidents, the root-cause and
public sentences, public filtering, Statuspage's summary.json shape, and
the layered layout of the picture."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from status_estate import (
    ESTATE,
    INTERNAL,
    NOW,
    RUNNING,
    farm_down,
    healthy,
    incident,
    live_view,
    snapshot,
)

from topology import State, Topology, loads
from watchdog.web import layout as drawing
from watchdog.web.model import (
    DAY_S,
    OTHERS_SHOWN,
    History,
    blast,
    cause_sentence,
    component_status,
    page_model,
    public_sentence,
    summary_json,
    uptime,
)

UP, UNKNOWN, DEGRADED, DOWN = State.UP, State.UNKNOWN, State.DEGRADED, State.DOWN


@pytest.fixture
def estate() -> Topology:
    return loads(ESTATE, "estate.yaml")


# --- uptime ------------------------------------------------------------------


def test_uptime_without_incidents_is_whole() -> None:
    record = uptime([], NOW)
    assert (record.percent, record.downtime_s, record.incidents) == (100.0, 0.0, 0)
    assert record.days == "u" * 90


def test_uptime_counts_a_down_incident_on_its_day() -> None:
    # One hour down, two and a half days ago: 3,600 s of 90 days.
    start = NOW - 2.5 * DAY_S
    record = uptime([incident("a", start, start + 3600)], NOW)
    assert record.downtime_s == 3600
    assert record.percent == 99.95  # 99.9537..., rounded down
    assert record.incidents == 1
    assert record.days[87] == "x"
    assert record.days.count("u") == 89


def test_any_downtime_shows_below_one_hundred() -> None:
    record = uptime([incident("a", NOW - 100, NOW - 99)], NOW)
    assert record.percent == 99.99


def test_degraded_incidents_mark_their_days_but_cost_no_uptime() -> None:
    record = uptime([incident("a", NOW - 3 * DAY_S, NOW - 2.9 * DAY_S, "degraded")], NOW)
    assert (record.percent, record.downtime_s) == (100.0, 0.0)
    assert record.days[87] == "d"


def test_an_open_incident_counts_until_now_and_overlaps_count_once() -> None:
    records = [
        incident("a", NOW - 600, None),
        incident("a", NOW - 900, NOW - 300),  # overlaps the open one
    ]
    record = uptime(records, NOW)
    assert record.downtime_s == 900
    assert record.days[-1] == "x"


def test_incidents_are_clipped_to_the_window() -> None:
    start = NOW - 90 * DAY_S
    records = [
        incident("a", start - 3600, start + 3600),  # half inside
        incident("a", start - 7200, start - 3600),  # before the window
    ]
    record = uptime(records, NOW)
    assert record.downtime_s == 3600
    assert record.incidents == 1
    assert record.days[0] == "x"


# --- sentences -----------------------------------------------------------------


def test_the_cause_sentence_names_the_root_cause(estate: Topology) -> None:
    live = farm_down(estate)
    assert cause_sentence(live, "orders-workflow") == "down because farm-oms-1 is down"
    assert cause_sentence(live, "checkout") == "down because farm-oms-1 is down"
    assert cause_sentence(live, "farm-oms-1") == "down: connect refused"
    assert cause_sentence(live, "antifraud") == "up"


def test_the_cause_sentence_says_what_is_known(estate: Topology) -> None:
    spare = live_view(estate, {**healthy(estate), "farm-pay-2": DOWN})
    assert cause_sentence(spare, "antifraud") == "up, but one failure away: lost its last spare"
    starting = live_view(estate, dict.fromkeys(healthy(estate), UNKNOWN), ready=False)
    assert cause_sentence(starting, "farm-oms-1") == "unknown: no result yet"


def test_soft_requirements_degrade_as_a_partial_outage(estate: Topology) -> None:
    observed = {**healthy(estate), "farm-pay-1": DOWN, "farm-pay-2": DOWN}
    live = live_view(estate, observed)
    assert live.states["orders-workflow"] == DEGRADED
    assert cause_sentence(live, "orders-workflow") == (
        "degraded because farm-pay-1 and farm-pay-2 are down"
    )
    assert component_status(live, "orders-workflow") == "partial_outage"
    assert component_status(live, "checkout") == "major_outage"
    assert component_status(live, "orders-search") == "operational"


def test_public_sentences_name_only_public_causes(estate: Topology) -> None:
    live = farm_down(estate)
    public = frozenset({"orders-search", "orders-workflow", "checkout"})
    assert public_sentence(live, "orders-workflow", public) == "Major outage: not working"
    assert public_sentence(live, "checkout", public) == (
        "Major outage: not working, because Orders is not working normally"
    )


def test_the_blast_radius_of_a_root_cause(estate: Topology) -> None:
    takes = blast(farm_down(estate))
    assert takes == {"farm-oms-1": ["checkout", "orders-workflow", "orders-search"]}


# --- the page model ---------------------------------------------------------------


def test_the_internal_page_puts_critical_services_first_worst_first(estate: Topology) -> None:
    model = page_model(snapshot(farm_down(estate), History((), (RUNNING,), fetched_at=NOW)))
    names = [s["node"] for s in model["services"]]
    assert names == ["checkout", "orders-workflow", "antifraud", "farm-oms-1", "orders-search"]
    checkout = model["services"][0]
    assert checkout["sentence"] == "down because farm-oms-1 is down"
    assert checkout["recovery_target_s"] == 300
    assert checkout["left_s"] == pytest.approx(300 - 600)  # down for 10 minutes: over
    assert model["headline"] == {
        "indicator": "critical",
        "text": "2 critical services down: checkout and orders-workflow",
    }
    (outage,) = model["incidents"]
    assert outage["root"] == "farm-oms-1"
    assert outage["critical"] == ["checkout", "orders-workflow"]
    assert outage["others"] == ["orders-search"]
    (maneuver,) = model["maneuvers"]
    assert (maneuver["by"], maneuver["reason"], maneuver["what"]) == (
        "alice",
        "rack move",
        "drain farm-pay-1",
    )


def test_a_failure_the_store_has_not_written_yet_counts_in_the_uptime(estate: Topology) -> None:
    model = page_model(snapshot(farm_down(estate), History(fetched_at=NOW)))
    checkout = model["services"][0]
    assert checkout["uptime"]["incidents"] == 1
    assert checkout["uptime"]["downtime_s"] == 600
    assert checkout["uptime"]["days"][-1] == "x"


def test_uptime_waits_for_the_history(estate: Topology) -> None:
    model = page_model(snapshot(farm_down(estate)))
    assert all(s["uptime"] is None for s in model["services"])


def test_the_public_page_shows_only_labelled_nodes_in_public_words(estate: Topology) -> None:
    history = History(
        (incident("orders-workflow", NOW - 5 * DAY_S, NOW - 5 * DAY_S + 60),),
        (RUNNING,),
        fetched_at=NOW,
    )
    model = page_model(snapshot(farm_down(estate), history), public=True)
    assert [s["name"] for s in model["services"]] == ["checkout", "Orders", "Order search"]
    text = json.dumps(model)
    for word in INTERNAL:
        assert word not in text
    assert "source" not in model
    for service in model["services"]:
        assert "causes" not in service
        assert "recovery_target_s" not in service
    assert model["headline"]["text"] == "Major outage: checkout, Orders and Order search"
    (outage,) = model["incidents"]
    assert outage["name"] == "Major outage: Order search, Orders and checkout"
    (maintenance,) = model["maneuvers"]
    assert maintenance["name"] == "Maintenance: checkout may be affected"


# --- summary.json ---------------------------------------------------------------

STATUSES = {"operational", "degraded_performance", "partial_outage", "major_outage"}
SUMMARY_KEYS = {"page", "components", "incidents", "scheduled_maintenances", "status"}
COMPONENT_KEYS = {
    "id",
    "name",
    "status",
    "created_at",
    "updated_at",
    "position",
    "description",
    "showcase",
    "start_date",
    "group_id",
    "page_id",
    "group",
    "only_show_if_degraded",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_summary_json_has_statuspages_shape(estate: Topology) -> None:
    history = History((), (RUNNING,), fetched_at=NOW)
    summary = summary_json(snapshot(farm_down(estate), history), public=False, url="http://x/")
    assert set(summary) == SUMMARY_KEYS
    assert set(summary["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    assert RFC3339.match(summary["page"]["updated_at"])
    for component in summary["components"]:
        assert set(component) == COMPONENT_KEYS
        assert component["status"] in STATUSES
        assert RFC3339.match(component["updated_at"])
    by_name = {c["name"]: c for c in summary["components"]}
    assert by_name["orders-workflow"]["status"] == "major_outage"
    assert by_name["antifraud"]["status"] == "operational"
    assert [c["position"] for c in summary["components"]] == list(range(1, 8))
    assert summary["status"] == {"indicator": "critical", "description": "Major Service Outage"}
    (outage,) = summary["incidents"]
    assert outage["impact"] == "critical"
    assert outage["status"] == "investigating"
    assert outage["incident_updates"][0]["body"] == "farm-oms-1 down: connect refused"
    assert {c["name"] for c in outage["components"]} == {
        "farm-oms-1",
        "checkout",
        "orders-workflow",
        "orders-search",
    }
    (maintenance,) = summary["scheduled_maintenances"]
    assert maintenance["status"] == "in_progress"
    assert maintenance["impact"] == "maintenance"
    assert maintenance["incident_updates"][0]["body"] == "drain farm-pay-1 by alice: rack move"


def test_the_public_summary_says_nothing_internal(estate: Topology) -> None:
    history = History((), (RUNNING,), fetched_at=NOW)
    summary = summary_json(snapshot(farm_down(estate), history), public=True, url="http://x/")
    assert [c["name"] for c in summary["components"]] == ["checkout", "Orders", "Order search"]
    text = json.dumps(summary)
    for word in (*INTERNAL, "orders-workflow", "orders-search"):
        assert word not in text
    (outage,) = summary["incidents"]
    assert outage["name"] == "Major outage: Order search, Orders and checkout"
    assert len(summary["scheduled_maintenances"]) == 1


@pytest.mark.parametrize(
    ("observed", "indicator"),
    [
        ({}, "none"),
        ({"farm-pay-2": DOWN}, "major"),  # a farm down; what runs on it lost a spare only
        ({"farm-pay-1": DOWN, "farm-pay-2": DOWN}, "critical"),
        ({"farm-oms-1": DEGRADED}, "major"),  # the critical workflow degraded with its farm
    ],
)
def test_the_indicator_follows_the_worst_component(
    estate: Topology, observed: dict[str, State], indicator: str
) -> None:
    live = live_view(estate, {**healthy(estate), **observed})
    summary = summary_json(snapshot(live), public=False, url="http://x/")
    assert summary["status"]["indicator"] == indicator


def test_the_summary_says_when_the_daemon_is_not_ready(estate: Topology) -> None:
    live = live_view(estate, dict.fromkeys(healthy(estate), UNKNOWN), ready=False)
    summary = summary_json(snapshot(live), public=True, url="http://x/")
    assert summary["status"]["indicator"] == "none"
    assert summary["status"]["description"] == "Checking: not every service has reported yet"


# --- layout ---------------------------------------------------------------------


def draw(
    names: Sequence[str], needs: Mapping[str, Sequence[str]], **options: Any
) -> drawing.Layout:
    depth = drawing.depths(names, needs)
    return drawing.layered(list(names), needs, depth.__getitem__, **options)


def test_layers_put_what_is_needed_below(estate: Topology) -> None:
    needs = {n: [m for g in node.groups for m in g.members] for n, node in estate.nodes.items()}
    shown = drawing.layered(list(estate.nodes), needs, estate.depth)
    boxes = shown.boxes
    assert set(boxes) == set(estate.nodes)
    for node, members in shown.needs.items():
        for member in members:
            assert boxes[member].y > boxes[node].y, (node, member)
    assert {boxes[f].y for f in ("farm-oms-1", "farm-pay-1", "farm-pay-2")} == {
        max(b.y for b in boxes.values())
    }


def test_the_barycenter_ordering_removes_crossings() -> None:
    # By name, a-top needs z-bottom and z-top needs a-bottom: the edges cross.
    needs = {"a-top": ["z-bottom"], "z-top": ["a-bottom"], "a-bottom": [], "z-bottom": []}
    unordered = draw(needs, needs, sweeps=0)
    ordered = draw(needs, needs)
    assert drawing.crossings(unordered) == 1
    assert drawing.crossings(ordered) == 0


def test_wide_layers_wrap_into_rows() -> None:
    names = [f"svc-{i:02}" for i in range(30)]
    shown = draw(names, {}, per_row=14)
    rows = {b.y for b in shown.boxes.values()}
    assert len(rows) == 3
    assert shown.width < 15 * (drawing.NODE_W + 20)


def test_cycles_are_laid_out() -> None:
    needs = {"a": ["b"], "b": ["a"], "c": ["a"]}
    assert set(draw(needs, needs).boxes) == {"a", "b", "c"}


def test_the_public_picture_joins_public_nodes_through_hidden_ones(estate: Topology) -> None:
    shown = ["checkout", "orders-search", "orders-workflow"]
    assert drawing.public_needs(estate, shown) == {
        "checkout": ("orders-workflow",),
        "orders-search": (),
        "orders-workflow": (),
    }
    chain = loads(
        "version: 1\nnodes:\n  a: {depends_on: [b]}\n  b: {depends_on: [c]}\n"
        "  c: {depends_on: [d]}\n  d: {}\n"
    )
    # a needs c through b (hidden), and d only through c: no edge a -> d.
    assert drawing.public_needs(chain, ["a", "c", "d"]) == {"a": ("c",), "c": ("d",), "d": ()}


def test_the_svg_says_each_state_in_words(estate: Topology) -> None:
    live = farm_down(estate)
    needs = {n: [m for g in node.groups for m in g.members] for n, node in estate.nodes.items()}
    shown = drawing.layered(list(estate.nodes), needs, estate.depth)
    text = drawing.svg(
        shown,
        state=lambda n: str(live.states[n]),
        classes=lambda n: "crit" if estate.node(n).critical else "",
        label=lambda n: f"{n}: {live.states[n]}",
        name=lambda n: "<&>" if n == "antifraud" else n,
        hot=[("orders-workflow", "farm-oms-1")],
    )
    assert text.count('class="node ') == len(estate.nodes)
    assert 'class="node st-down crit" data-node="orders-workflow"' in text
    assert 'aria-label="orders-workflow: down"' in text
    assert "&lt;&amp;&gt;" in text
    assert "<&>" not in text
    assert re.search(r'<path class="hot" aria-hidden="true" d="M[\d.]+ [\d.]+L', text)


def test_a_farm_taking_hundreds_down_lists_the_worst_and_counts_the_rest() -> None:
    many = "".join(f"  svc-{i:03}: {{runs_on: [farm]}}\n" for i in range(120))
    topology = loads("version: 1\nnodes:\n  farm: {kind: farm}\n  pay: {critical: true}\n" + many)
    live = live_view(topology, {"farm": DOWN, "pay": UP})
    model = page_model(snapshot(live))
    others = [s for s in model["services"] if not s["critical"]]
    assert len(others) == OTHERS_SHOWN
    assert others[0]["node"] == "farm"
    assert model["others_not_shown"] == 121 - OTHERS_SHOWN
    assert model["services"][0]["node"] == "pay"
