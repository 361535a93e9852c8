"""`watchdog import` and `sources:` end to end: the example cluster of the
README, compose files from standard input, an overlay that names nothing,
sources that cannot be read; and a daemon that reads a live catalog again
on reload."""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from json_server import Server

from topology import load
from watchdog.cli import main

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "examples" / "k8s"
DATA = ROOT / "tests" / "data" / "sources"


def test_the_readme_example_imports_the_cluster_and_check_names_the_shared_fate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "import",
            "kubernetes",
            str(K8S / "cluster.json"),
            "--overlay",
            str(K8S / "overlay.yaml"),
            "--farm-label",
            "topology.kubernetes.io/zone",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"# Imported from kubernetes {K8S / 'cluster.json'} by `watchdog")
    assert "Overlay:" in lines[1]
    data = yaml.safe_load(out)
    assert data["version"] == 1
    assert "sources" not in data  # the printed file stands on its own
    workflow = data["nodes"]["shop/order-workflow"]
    assert workflow["critical"] is True
    assert workflow["depends_on"] == ["shop/orders-db"]
    assert data["nodes"]["node-1"]["runs_on"] == ["eu-west-1a"]
    # What the source gives rise to is said on stderr.
    assert "warning: no-disruption-budget: shop/search has no PodDisruptionBudget" in err

    estate = tmp_path / "estate.yaml"
    estate.write_text(out)
    assert main(["check", str(estate)]) == 1
    found = capsys.readouterr().out
    assert "error: shared-fate: node-1 runs critical" in found
    assert "shop/order-workflow" in found
    assert "non-critical" in found
    assert "shop/search" in found


def test_a_file_that_names_its_sources_is_checked_and_asked_as_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", str(K8S / "overlay.yaml"), "--format", "json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    rules = {f["rule"] for f in answer["findings"]}
    assert {"shared-fate", "no-disruption-budget"} <= rules
    # Draining node-1 to relieve search takes the critical workflow down.
    code = main(["blast-radius", str(K8S / "overlay.yaml"), "--drain", "node-1"])
    assert code == 2
    assert "shop/order-workflow" in capsys.readouterr().out
    assert load(K8S / "overlay.yaml").node("node-1").groups[0].members == ("eu-west-1a",)


def test_compose_from_standard_input_with_an_orphan_in_the_overlay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "version: 1\nnodes:\n  shop/web: {critical: true}\n  shop/gone: {critical: true}\n"
        "  payments-saas: {kind: saas}\n"
    )
    data = (DATA / "compose" / "docker-compose.yml").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["import", "compose", "-", "--overlay", str(overlay)]) == 0
    out, err = capsys.readouterr()
    nodes = yaml.safe_load(out)["nodes"]
    assert nodes["shop/web"]["critical"] is True
    assert nodes["shop/web"]["runs_on"] == ["shop"]
    assert "payments-saas" in nodes
    assert "warning: overlay-orphan: shop/gone is in the overlay but not in compose" in err
    assert "payments-saas" not in err


def test_what_cannot_be_imported_is_said_and_nothing_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.json"
    assert main(["import", "kubernetes", str(missing)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{missing}: cannot read: No such file or directory" in err

    garbage = tmp_path / "cluster.json"
    garbage.write_text("{not json")
    assert main(["import", "kubernetes", str(garbage)]) == 3
    assert "not JSON" in capsys.readouterr().err

    assert main(["import", "kubernetes", str(garbage), "--project", "x"]) == 3
    assert "--project is not an option of kubernetes" in capsys.readouterr().err
    assert main(["import", "compose", "--live"]) == 3
    assert "compose is read from files" in capsys.readouterr().err
    assert main(["import", "compose"]) == 3
    assert "name the docker-compose files" in capsys.readouterr().err

    # An overlay that would make a file check refuses: every problem, exit 3.
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("version: 1\nnodes:\n  shop/web: {depends_on: [nowhere]}\n")
    compose = DATA / "compose" / "docker-compose.yml"
    assert main(["import", "compose", str(compose), "--overlay", str(overlay)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{overlay}:3: nodes.shop/web.depends_on[0]: unknown node 'nowhere'" in err


def test_a_source_that_cannot_be_read_is_a_problem_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(
        "version: 1\nsources:\n  - compose: missing.yml\n  - kubernets: x.json\nnodes: {}\n"
    )
    assert main(["check", str(path)]) == 3
    err = capsys.readouterr().err
    assert f"{path}:4: sources[1]: unknown source 'kubernets'" in err
    path.write_text("version: 1\nsources:\n  - compose: missing.yml\nnodes: {}\n")
    assert main(["check", str(path)]) == 3
    err = capsys.readouterr().err
    assert f"{path}:3: sources (compose missing.yml):" in err
    assert "cannot read: No such file or directory" in err


def test_two_sources_that_give_one_node_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(DATA / "compose" / "docker-compose.yml", tmp_path / "a.yml")
    shutil.copy(DATA / "compose" / "docker-compose.yml", tmp_path / "b.yml")
    path = tmp_path / "estate.yaml"
    path.write_text("version: 1\nsources: [{compose: a.yml}, {compose: b.yml}]\n")
    assert main(["check", str(path)]) == 3
    err = capsys.readouterr().err
    assert f"{path}:2: sources: 8 nodes come from both compose {tmp_path / 'a.yml'} and " in err
    assert "(shop, shop/cache, shop/db, shop/migrate, shop/proxy, shop/queue" in err
    assert "1 problem, nothing loaded" in err


# --- a live source, read again on reload ---------------------------------------


class Catalog:
    """A Backstage backend on loopback whose entities the test changes."""

    def __init__(self) -> None:
        self.entities: list[dict[str, Any]] = []
        self.server = Server(self._route)
        self.url = self.server.url

    def _route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path == "/api/catalog/entities/by-query":
            return 200, {"items": self.entities, "pageInfo": {}}
        if path == "/api/catalog/entities":
            return 200, self.entities
        return 404, {"error": {"message": "not found"}}


def component(name: str, depends_on: list[str], critical: bool = False) -> dict[str, Any]:
    annotations = {"watchdog.io/critical": "true"} if critical else {}
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "type": "service",
            "lifecycle": "production",
            "owner": "team-a",
            "dependsOn": depends_on,
        },
    }


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    served = Catalog()
    yield served
    served.server.close()


@pytest.mark.anyio
async def test_a_daemon_reads_a_live_catalog_again_on_reload_and_keeps_it_when_it_fails(
    tmp_path: Path, catalog: Catalog
) -> None:
    from watchdog.daemon import Daemon

    catalog.entities = [
        component("checkout", ["component:default/payments"], critical=True),
        component("payments", []),
    ]
    path = tmp_path / "estate.yaml"
    path.write_text(
        f"version: 1\nstate: {{path: {tmp_path / 's.db'}}}\n"
        f"sources:\n  - backstage: {{url: '{catalog.url}'}}\n    refresh: 1m\n"
        "nodes:\n  payments: {recovery_target: 30m}\n"
    )
    daemon = Daemon(path)
    try:
        topology = daemon.config.topology
        assert set(topology.nodes) == {"checkout", "payments"}
        assert topology.node("checkout").critical
        assert topology.recovery_target_s("payments") == 1800.0
        assert [s.refresh_s for s in daemon.config.sources] == [60.0]

        catalog.entities.append(component("ledger", []))
        catalog.entities[0]["spec"]["dependsOn"].append("component:default/ledger")
        assert (await daemon.reload()).ok
        assert daemon.config.topology.node("checkout").requirements == {"payments", "ledger"}

        # The catalog gone: the reload is refused, the running topology stays.
        catalog.server.close()
        refused = await daemon.reload()
        assert not refused.ok
        assert "sources (backstage (live))" in json.dumps(refused.problems)
        assert "ledger" in daemon.config.topology.nodes
    finally:
        daemon.store.close()
