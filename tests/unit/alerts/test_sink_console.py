"""The console sink: the exact line for each event (its time first, the
summary once), the JSON line for `--log-format json`, and the one way it
fails (a closed stream), with a message that says nothing of the alert."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import replace
from types import MappingProxyType

import pytest

from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from alerts.sinks.console import ConsoleSink
from topology import State

pytestmark = pytest.mark.anyio

STARTED = 1_714_557_480.0  # 2024-05-01T09:58:00Z
AT = STARTED + 120

OUTAGE = Alert(
    key="outage:farm-oms-1",
    kind="outage",
    severity="critical",
    root_cause=("farm-oms-1",),
    summary="farm-oms-1 down takes critical orders-workflow down (10m left); 3 other nodes",
    started_at=STARTED,
    critical=(Impacted("orders-workflow", State.DOWN, 720.0, STARTED),),
    collateral=("farm-oms-2", "orders-batch", "orders-api"),
    labels=MappingProxyType({"token": "s3cret-label"}),
)


async def lines_for(*notifications: Notification, fmt: str = "text") -> list[str]:
    stream = io.StringIO()
    sink = ConsoleSink(stream, fmt=fmt)  # type: ignore[arg-type]
    for notification in notifications:
        assert await sink.send(notification, None) == Receipt("console")
    await sink.aclose()
    return stream.getvalue().splitlines(keepends=True)


async def test_it_writes_one_line_with_its_time_that_says_the_summary_once() -> None:
    [line] = await lines_for(Notification("n-1", OUTAGE, "firing", AT))
    assert line == (
        "2024-05-01T10:00:00Z FIRING critical outage:farm-oms-1 — farm-oms-1 down takes"
        " critical orders-workflow down (10m left); 3 other nodes\n"
    )
    # The summary names the critical nodes and counts the rest: not again.
    assert (line.count("orders-workflow"), line.count("other nodes")) == (1, 1)


async def test_reminders_and_escalations_carry_the_time_of_their_notification() -> None:
    assert await lines_for(
        Notification("n-2", OUTAGE, "repeat", AT + 300.4),
        Notification("n-3", OUTAGE, "escalated", AT + 900),
    ) == [
        "2024-05-01T10:05:00Z REPEAT critical outage:farm-oms-1 — farm-oms-1 down takes"
        " critical orders-workflow down (10m left); 3 other nodes\n",
        "2024-05-01T10:15:00Z ESCALATED critical outage:farm-oms-1 — farm-oms-1 down takes"
        " critical orders-workflow down (10m left); 3 other nodes\n",
    ]


async def test_a_cause_that_only_degrades_critical_nodes_is_not_said_to_take_them_down() -> None:
    alert = Alert(
        "outage:db-1",
        "outage",
        "warning",
        ("db-1",),
        "db-1 down degrades critical billing (58m left); 1 other node",
        STARTED,
        critical=(Impacted("billing", State.DEGRADED, 3600.0, STARTED),),
        collateral=("reports",),
    )

    assert await lines_for(Notification("n-1", alert, "firing", AT)) == [
        "2024-05-01T10:00:00Z FIRING warning outage:db-1 — db-1 down degrades critical"
        " billing (58m left); 1 other node\n"
    ]


async def test_an_announcement_is_a_notice_not_an_alert() -> None:
    started = Alert("maneuver:3", "maneuver", "info", ("kv-a",), "alice started drain kv-a", AT)

    assert await lines_for(Notification("maneuver:3:running", started, "notice", AT)) == [
        "2024-05-01T10:00:00Z NOTICE info maneuver:3 — alice started drain kv-a\n"
    ]


async def test_it_writes_just_the_summary_of_an_alert_without_impact() -> None:
    drift = Alert("drift", "drift", "info", (), "2 nodes not in the topology", STARTED)

    assert await lines_for(Notification("n-1", drift, "firing", AT)) == [
        "2024-05-01T10:00:00Z FIRING info drift — 2 nodes not in the topology\n"
    ]


async def test_it_writes_how_long_a_resolved_alert_lasted() -> None:
    assert await lines_for(Notification("n-9", OUTAGE, "resolved", STARTED + 725.2)) == [
        "2024-05-01T10:10:05Z RESOLVED critical outage:farm-oms-1 — farm-oms-1 down takes"
        " critical orders-workflow down (10m left); 3 other nodes; resolved after 12m5s\n"
    ]


async def test_in_json_each_notification_is_one_object_like_the_daemons_json_log() -> None:
    degraded = Impacted("billing", State.DEGRADED, 60.0, STARTED)
    alert = replace(OUTAGE, critical=(*OUTAGE.critical, degraded))
    lines = await lines_for(
        Notification("n-1", alert, "firing", AT + 0.25),
        Notification("n-9", alert, "resolved", STARTED + 725),
        fmt="json",
    )

    assert [json.loads(line) for line in lines] == [
        {
            "time": "2024-05-01T10:00:00.250Z",
            "level": "critical",
            "logger": "watchdog.alerts",
            "message": "FIRING critical outage:farm-oms-1 — farm-oms-1 down takes critical"
            " orders-workflow down (10m left); 3 other nodes",
            "event": "firing",
            "id": "n-1",
            "key": "outage:farm-oms-1",
            "kind": "outage",
            "severity": "critical",
            "summary": OUTAGE.summary,
            "root_cause": ["farm-oms-1"],
            "critical": [
                {"node": "orders-workflow", "state": "down", "left_s": 600},
                {"node": "billing", "state": "degraded", "left_s": -60},
            ],
            "collateral": 3,
        },
        {
            "time": "2024-05-01T10:10:05.000Z",
            "level": "info",
            "logger": "watchdog.alerts",
            "message": "RESOLVED critical outage:farm-oms-1 — farm-oms-1 down takes critical"
            " orders-workflow down (10m left); 3 other nodes; resolved after 12m5s",
            "event": "resolved",
            "id": "n-9",
            "key": "outage:farm-oms-1",
            "kind": "outage",
            "severity": "critical",
            "summary": OUTAGE.summary,
            "root_cause": ["farm-oms-1"],
            "critical": [
                {"node": "orders-workflow", "state": "down", "left_s": -5},
                {"node": "billing", "state": "degraded", "left_s": -665},
            ],
            "collateral": 3,
        },
    ]
    assert all(line.endswith("}\n") and line.count("\n") == 1 for line in lines)


async def test_it_escapes_what_the_stream_cannot_encode() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", write_through=True)
    sink = ConsoleSink(stream)
    drift = Alert("drift:farm", "drift", "warning", ("farm",), "farm-ø drifts", STARTED)

    await sink.send(Notification("n-1", drift, "resolved", STARTED + 60), None)

    assert raw.getvalue() == (
        b"2024-05-01T09:59:00Z RESOLVED warning drift:farm \\u2014 farm-\\xf8 drifts;"
        b" resolved after 1m\n"
    )
    stream.close()


async def test_it_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    drift = Alert("drift:farm", "drift", "warning", ("farm",), "farm drifts", STARTED)
    await ConsoleSink().send(Notification("n-1", drift, "resolved", STARTED + 60), None)

    assert capsys.readouterr().err == (
        "2024-05-01T09:59:00Z RESOLVED warning drift:farm — farm drifts; resolved after 1m\n"
    )


async def test_it_fails_for_good_on_a_closed_stream_without_naming_the_alert() -> None:
    stream = io.StringIO()
    stream.close()

    with pytest.raises(SinkError) as caught:
        await ConsoleSink(stream).send(Notification("n-1", OUTAGE, "firing", AT), None)

    assert str(caught.value) == "console: stream is closed"
    assert caught.value.permanent
    assert "s3cret-label" not in str(caught.value)


async def test_it_fails_for_good_when_the_reader_went_away() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed below, whatever happens
    try:
        with pytest.raises(SinkError) as caught:
            await ConsoleSink(stream).send(Notification("n-1", OUTAGE, "firing", AT), None)
    finally:
        # The line it still holds has nowhere to go.
        with contextlib.suppress(BrokenPipeError):
            stream.close()

    assert str(caught.value) == "console: stream is closed"
    assert caught.value.permanent
