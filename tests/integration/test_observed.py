"""Observed edges from a real Prometheus (tests/integration/
prometheus_server.py): the calls of an OpenTelemetry service graph and of
Istio, compared with a topology; custom queries; a Prometheus that is down
or refuses a query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.model import Alert
from topology import Topology, loads
from watchdog.cli import main
from watchdog.observed import (
    SERVICE_GRAPH,
    EdgeQuery,
    ObservedError,
    fetch_calls,
    observed_findings,
)
from watchdog.probes import HttpClients
from watchdog.probes.prometheus import PrometheusServer

ESTATE = """
version: 1
nodes:
  farm: {kind: farm}
  checkout:
    critical: true
    runs_on: [farm]
    depends_on: [payments, cart]
  payments: {}
  cart: {}
  ledger: {}
  search: {}
  shop/frontend: {depends_on: [shop/catalog]}
  shop/catalog: {}
  reviews: {}
"""


@pytest.fixture(scope="module")
def estate() -> Topology:
    return loads(ESTATE)


@pytest.mark.anyio
async def test_undeclared_calls_are_found_with_their_rate_critical_first(
    prometheus: str, estate: Topology
) -> None:
    report = await observed_findings(estate, prometheus)
    assert [(f.rule, f.severity, f.nodes, f.message) for f in report.findings] == [
        (
            "undeclared-dependency",
            "warning",
            ("checkout", "search"),
            "checkout calls search (60 requests/min over 1h), not in the topology",
        ),
        # Seen by both queries (5/s and 4/s): counted once, the larger.
        (
            "undeclared-dependency",
            "warning",
            ("cart", "ledger"),
            "cart calls ledger (300 requests/min over 1h), not in the topology",
        ),
        # Istio's default/reviews is the node reviews.
        (
            "undeclared-dependency",
            "warning",
            ("shop/frontend", "reviews"),
            "shop/frontend calls reviews (30 requests/min over 1h), not in the topology",
        ),
    ]
    assert [str(n) for n in report.notes] == [
        "info: never-observed: checkout depends_on cart, but no call from checkout to cart "
        "was observed over 1h",
        "info: unmatched-name: no node is named 'unknown/unknown' (in 1 as caller of the "
        "observed calls)",
        "info: unmatched-name: no node is named 'user' (in 1 as caller of the observed calls)",
    ]
    # 5 service-graph series (one without traffic) and 4 of Istio's.
    assert (report.calls, report.matched, report.window_s) == (9, 6, 3600.0)


@pytest.mark.anyio
async def test_custom_queries_name_their_labels(prometheus: str, estate: Topology) -> None:
    mine = EdgeQuery(
        "mine",
        'sum by (client, server) (rate(traces_service_graph_request_total{client="cart"}'
        "[{window}]))",
        ("client",),
        ("server",),
    )
    async with HttpClients() as clients:
        report = await observed_findings(
            estate,
            PrometheusServer(prometheus),
            window_s=7200,
            queries=[mine],
            client=clients.get(verify_tls=True),
        )
    assert [f.message for f in report.findings] == [
        "cart calls ledger (300 requests/min over 2h), not in the topology"
    ]
    assert report.notes == ()


@pytest.mark.anyio
async def test_the_calls_are_read_as_the_telemetry_names_them(prometheus: str) -> None:
    async with HttpClients() as clients:
        calls = await fetch_calls(
            PrometheusServer(prometheus), clients.get(verify_tls=True), queries=[SERVICE_GRAPH]
        )
    assert sorted((c.caller, c.callee, round(c.per_s, 6), c.source) for c in calls) == [
        (("cart",), ("ledger",), 5.0, 0),
        (("cart",), ("search",), 0.0, 0),
        (("checkout",), ("payments",), 2.0, 0),
        (("checkout",), ("search",), 1.0, 0),
        (("user",), ("checkout",), 3.0, 0),
    ]


@pytest.mark.anyio
async def test_a_failed_query_is_an_error_not_a_clean_report(
    prometheus: str, estate: Topology, closed_port: int
) -> None:
    with pytest.raises(ObservedError) as caught:
        await observed_findings(estate, f"http://127.0.0.1:{closed_port}")
    assert caught.value.reasons == (
        "service graph: prometheus unreachable: connect refused",
        "istio: prometheus unreachable: connect refused",
    )
    broken = EdgeQuery("broken", "sum by (a, b) (rate(x[{window}])", ("a",), ("b",))
    with pytest.raises(ObservedError) as caught:
        await observed_findings(estate, prometheus, queries=[SERVICE_GRAPH, broken])
    (reason,) = caught.value.reasons
    assert reason.startswith("broken: prometheus error: bad_data: ")


@pytest.mark.anyio
async def test_missing_credentials_and_bad_windows_are_refused(
    prometheus: str, estate: Topology
) -> None:
    server = PrometheusServer(prometheus, bearer_token_env="PROM_TOKEN")
    with pytest.raises(ObservedError, match="PROM_TOKEN is not set or empty"):
        await observed_findings(estate, server, environ={})
    with pytest.raises(ValueError, match="from 1m to 31d"):
        await observed_findings(estate, prometheus, window_s=10)


def test_check_observed_reports_undeclared_calls_and_gates_on_them(
    prometheus: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    assert main(["check", str(path), "--observed", prometheus]) == 1
    out = capsys.readouterr().out
    assert (
        "warning: undeclared-dependency: checkout calls search (60 requests/min over 1h), "
        "not in the topology"
    ) in out
    assert "info: never-observed:" in out

    # The file's own Prometheus when --observed names none; JSON has notes.
    path.write_text(
        ESTATE.replace(
            "version: 1", f"version: 1\ndefaults:\n  prometheus: {{url: '{prometheus}'}}"
        )
    )
    assert main(["check", str(path), "--observed", "--format", "json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert ("checkout", "search") in [tuple(f["nodes"]) for f in answer["findings"]]
    assert all(n["severity"] == "info" for n in answer["notes"])
    assert answer["notes"]


def test_check_observed_with_a_query_of_ones_own_and_its_mistakes(
    prometheus: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    query = (
        "client->server="
        "sum by (client, server) (rate(traces_service_graph_request_total[{window}]))"
    )
    assert main(["check", str(path), "--observed", prometheus, "--edge-query", query]) == 1
    assert "checkout calls search" in capsys.readouterr().out

    assert main(["check", str(path), "--observed", prometheus, "--edge-query", "client=up"]) == 3
    assert "expected CALLER->CALLEE=QUERY" in capsys.readouterr().err
    assert main(["check", str(path), "--observed", prometheus, "--window", "soon"]) == 3
    assert "bad duration 'soon'" in capsys.readouterr().err
    assert main(["check", str(path), "--observed"]) == 3
    assert "name Prometheus" in capsys.readouterr().err


def test_check_observed_against_a_prometheus_that_is_down_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    assert main(["check", str(path), "--observed", f"http://127.0.0.1:{port}"]) == 3
    err = capsys.readouterr().err
    assert "--observed:" in err
    assert "unreachable" in err


@pytest.mark.anyio
async def test_the_daemon_raises_a_drift_alert_for_undeclared_calls_of_critical_nodes(
    prometheus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemons import started
    from waiting import until

    import watchdog.daemon

    monkeypatch.setattr(watchdog.daemon, "OBSERVED_S", 0.2)
    path = tmp_path / "estate.yaml"
    path.write_text(
        ESTATE.replace(
            "version: 1",
            f"version: 1\nstate: {{path: {tmp_path / 's.db'}}}\n"
            f"alerts: {{settle: 0s}}\ndefaults:\n  prometheus: {{url: '{prometheus}'}}",
        )
    )
    async with started(path) as daemon:

        def keyed() -> dict[str, Alert]:
            return {a.key: a for a in daemon.alerting.alerts}

        await until(lambda: "drift:undeclared:checkout" in keyed(), awaited="the drift alert")
        alert = keyed()["drift:undeclared:checkout"]
        assert alert.kind == "drift"
        assert alert.summary.startswith(
            "checkout calls search (60 requests/min over 1h), not in the topology"
        )
        # Calls between non-critical nodes are for `check`, not for a page.
        assert [k for k in keyed() if k.startswith("drift:undeclared")] == [
            "drift:undeclared:checkout"
        ]
