"""The console sink: the exact line for each event, and the one way it
fails (a closed stream), with a message that says nothing of the alert."""

from __future__ import annotations

import contextlib
import io
import os
from types import MappingProxyType

import pytest

from alerts.model import Alert, Impacted, Notification, Receipt, SinkError
from alerts.sinks.console import ConsoleSink
from topology import State

pytestmark = pytest.mark.anyio

STARTED = 1_714_557_480.0
AT = STARTED + 120

OUTAGE = Alert(
    key="outage:farm-oms-1",
    kind="outage",
    severity="critical",
    root_cause=("farm-oms-1",),
    summary="farm-oms-1 down",
    started_at=STARTED,
    critical=(Impacted("orders-workflow", State.DOWN, 720.0, STARTED),),
    collateral=("farm-oms-2", "orders-batch", "orders-api"),
    labels=MappingProxyType({"token": "s3cret-label"}),
)


async def lines_for(*notifications: Notification) -> list[str]:
    stream = io.StringIO()
    sink = ConsoleSink(stream)
    for notification in notifications:
        assert await sink.send(notification, None) == Receipt("console")
    await sink.aclose()
    return stream.getvalue().splitlines(keepends=True)


async def test_it_writes_one_line_naming_the_cause_and_the_critical_nodes() -> None:
    assert await lines_for(Notification("n-1", OUTAGE, "firing", AT)) == [
        "FIRING critical outage:farm-oms-1 — farm-oms-1 down;"
        " takes down critical orders-workflow (10m left); 3 other nodes\n"
    ]


async def test_it_writes_reminders_and_escalations_with_the_time_left_then() -> None:
    assert await lines_for(
        Notification("n-2", OUTAGE, "repeat", AT + 300.4),
        Notification("n-3", OUTAGE, "escalated", AT + 900),
    ) == [
        "REPEAT critical outage:farm-oms-1 — farm-oms-1 down;"
        " takes down critical orders-workflow (5m left); 3 other nodes\n",
        "ESCALATED critical outage:farm-oms-1 — farm-oms-1 down;"
        " takes down critical orders-workflow (overdue by 5m); 3 other nodes\n",
    ]


async def test_it_names_the_state_of_a_critical_node_that_is_only_degraded() -> None:
    alert = Alert(
        "outage:db-1",
        "outage",
        "warning",
        ("db-1",),
        "db-1 degraded",
        STARTED,
        critical=(
            Impacted("billing", State.DEGRADED, 3600.0, STARTED),
            Impacted("orders-workflow", State.DOWN, 600.0, STARTED),
        ),
        collateral=("reports",),
    )

    assert await lines_for(Notification("n-1", alert, "firing", AT)) == [
        "FIRING warning outage:db-1 — db-1 degraded; takes down critical"
        " billing degraded (58m left), orders-workflow (8m left); 1 other node\n"
    ]


async def test_it_writes_just_the_summary_of_an_alert_without_impact() -> None:
    drift = Alert("drift", "drift", "info", (), "2 nodes not in the topology", STARTED)

    assert await lines_for(Notification("n-1", drift, "firing", AT)) == [
        "FIRING info drift — 2 nodes not in the topology\n"
    ]


async def test_it_writes_how_long_a_resolved_alert_lasted() -> None:
    assert await lines_for(Notification("n-9", OUTAGE, "resolved", STARTED + 725.2)) == [
        "RESOLVED critical outage:farm-oms-1 — farm-oms-1 down; resolved after 12m5s\n"
    ]


async def test_it_escapes_what_the_stream_cannot_encode() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", write_through=True)
    sink = ConsoleSink(stream)

    await sink.send(Notification("n-1", OUTAGE, "resolved", STARTED + 60), None)

    assert raw.getvalue() == (
        b"RESOLVED critical outage:farm-oms-1 \\u2014 farm-oms-1 down; resolved after 1m\n"
    )
    stream.close()


async def test_it_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    await ConsoleSink().send(Notification("n-1", OUTAGE, "resolved", STARTED + 60), None)

    assert capsys.readouterr().err == (
        "RESOLVED critical outage:farm-oms-1 — farm-oms-1 down; resolved after 1m\n"
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


async def test_it_names_ten_critical_nodes_and_counts_the_rest() -> None:
    many = tuple(Impacted(f"app-{i:02}", State.DOWN, 720.0, STARTED) for i in range(12))
    alert = Alert("outage:farm", "outage", "critical", ("farm",), "farm down", STARTED, many)
    [line] = await lines_for(Notification("n-9", alert, "firing", AT))
    named = ", ".join(f"app-{i:02} (10m left)" for i in range(10))
    assert (
        line == f"FIRING critical outage:farm — farm down; takes down critical {named} and 2 more\n"
    )
