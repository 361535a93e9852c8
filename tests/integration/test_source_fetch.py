"""The live fetchers against loopback servers that answer as the real APIs
do: a Kubernetes API server's lists at their real paths, paged with
`continue` tokens, and a Backstage catalog's by-query pages and plain list.
What they fetch converts to what the exported files convert to."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from json_server import Route, Server

from topology.sources import backstage, kubernetes
from watchdog.source_fetch import (
    KUBERNETES_EXTRA_MISSING,
    FetchError,
    fetch_backstage,
    fetch_kubernetes,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "sources"
ZONE = "topology.kubernetes.io/zone"
TOKEN = "t0ken-of-the-test"
API_PATHS = {
    "Node": ("/api/v1/nodes", "v1"),
    "Pod": ("/api/v1/pods", "v1"),
    "ReplicaSet": ("/apis/apps/v1/replicasets", "apps/v1"),
    "Deployment": ("/apis/apps/v1/deployments", "apps/v1"),
    "StatefulSet": ("/apis/apps/v1/statefulsets", "apps/v1"),
    "DaemonSet": ("/apis/apps/v1/daemonsets", "apps/v1"),
    "PodDisruptionBudget": ("/apis/policy/v1/poddisruptionbudgets", "policy/v1"),
}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fetchers honour proxy variables; the tests' traffic stays on loopback.
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# Kubernetes


def kube_api(export: dict[str, Any], page: int = 2, forbidden: str | None = None) -> Route:
    """The API server's lists at their paths, items without kind and
    apiVersion as the API sends them, `page` at a time with `continue`."""
    lists: dict[str, tuple[str, str, list[Any]]] = {
        path: (f"{kind}List", api, []) for kind, (path, api) in API_PATHS.items()
    }
    for item in export["items"]:
        path, _ = API_PATHS[item["kind"]]
        lists[path][2].append({k: v for k, v in item.items() if k not in ("kind", "apiVersion")})

    def route(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path == forbidden:
            return 403, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": 'poddisruptionbudgets.policy is forbidden: User "system:serviceaccount:'
                'ops:watchdog" cannot list resource "poddisruptionbudgets" in API group '
                '"policy" at the cluster scope',
                "reason": "Forbidden",
                "details": {"group": "policy", "kind": "poddisruptionbudgets"},
                "code": 403,
            }
        if path not in lists:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
        kind, api, items = lists[path]
        start = int(query.get("continue", ["0"])[0])
        size = min(page, int(query.get("limit", [str(page)])[0]))
        meta: dict[str, Any] = {"resourceVersion": "4242"}
        if start + size < len(items):
            meta["continue"] = str(start + size)
        return 200, {
            "kind": kind,
            "apiVersion": api,
            "metadata": meta,
            "items": items[start : start + size],
        }

    return route


@pytest.fixture
def lightkube_installed() -> None:
    pytest.importorskip("lightkube", reason="the kubernetes extra (lightkube) is not installed")


@pytest.fixture
def cluster() -> dict[str, Any]:
    export: dict[str, Any] = json.loads((DATA / "kubernetes" / "cluster.json").read_text())
    return export


@pytest.fixture
def api(cluster: dict[str, Any]) -> Iterator[Server]:
    server = Server(kube_api(cluster))
    yield server
    server.close()


def kubeconfig(tmp_path: Path, server: str, current: str = "test") -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""\
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {{server: "{server}"}}
- name: gone
  cluster: {{server: "http://127.0.0.1:{closed_port()}"}}
users:
- name: watchdog
  user: {{token: {TOKEN}}}
contexts:
- name: test
  context: {{cluster: test, user: watchdog}}
- name: gone
  context: {{cluster: gone, user: watchdog}}
current-context: {current}
"""
    )
    return str(path)


@pytest.mark.usefixtures("lightkube_installed")
def test_the_cluster_read_live_converts_as_its_export_does(
    api: Server, cluster: dict[str, Any], tmp_path: Path
) -> None:
    fetched = fetch_kubernetes(kubeconfig(tmp_path, api.url))

    assert fetched["kind"] == "List"
    assert len(fetched["items"]) == len(cluster["items"])
    assert all("kind" in item and "apiVersion" in item for item in fetched["items"])
    live = kubernetes.convert([("live", fetched)], farm_label=ZONE)
    exported = kubernetes.convert([("live", cluster)], farm_label=ZONE)
    assert live == exported

    # Every list at its real path, all namespaces at once, paged, with the token.
    assert {s.path for s in api.seen} == {path for path, _ in API_PATHS.values()}
    assert all(s.authorization == f"Bearer {TOKEN}" for s in api.seen)
    pods = [s for s in api.seen if s.path == "/api/v1/pods"]
    assert len(pods) > 1
    assert [s.query.get("continue") for s in pods[:2]] == [None, ["2"]]


@pytest.mark.usefixtures("lightkube_installed")
def test_a_context_other_than_the_current_one_can_be_named(api: Server, tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, api.url, current="gone")
    assert fetch_kubernetes(config, context="test")["items"]

    with pytest.raises(FetchError, match=r"^cannot list nodes at http://127\.0\.0\.1:\d+: "):
        fetch_kubernetes(config)
    with pytest.raises(FetchError, match=r"^cannot use .*kubeconfig: Context 'prod' not found$"):
        fetch_kubernetes(config, context="prod")


@pytest.mark.usefixtures("lightkube_installed")
def test_a_refused_listing_says_which_and_why(cluster: dict[str, Any], tmp_path: Path) -> None:
    server = Server(kube_api(cluster, forbidden="/apis/policy/v1/poddisruptionbudgets"))
    try:
        with pytest.raises(FetchError) as caught:
            fetch_kubernetes(kubeconfig(tmp_path, server.url))
    finally:
        server.close()
    assert str(caught.value) == (
        f"cannot list poddisruptionbudgets at {server.url}: poddisruptionbudgets.policy is "
        'forbidden: User "system:serviceaccount:ops:watchdog" cannot list resource '
        '"poddisruptionbudgets" in API group "policy" at the cluster scope'
    )


@pytest.mark.usefixtures("lightkube_installed")
def test_a_missing_kubeconfig_is_a_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"^cannot use .*nowhere: Configuration file .* not found"):
        fetch_kubernetes(str(tmp_path / "nowhere"))


def test_without_lightkube_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightkube", None)
    with pytest.raises(FetchError) as caught:
        fetch_kubernetes()
    assert str(caught.value) == KUBERNETES_EXTRA_MISSING
    assert str(caught.value) == (
        "watchdog import kubernetes --live needs the kubernetes extra: "
        "pip install 'service-watchdog[kubernetes]'"
    )


# Backstage


ENTITIES: list[dict[str, Any]] = json.loads((DATA / "backstage" / "entities.json").read_text())


def catalog(page: int = 3, by_query: bool = True) -> Route:
    """A catalog backend: by-query pages of `page` entities with cursors
    (when `by_query`), and the plain list."""

    def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if by_query and path == "/api/catalog/entities/by-query":
            start = int(query.get("cursor", ["0"])[0].removeprefix("c"))
            info = {"nextCursor": f"c{start + page}"} if start + page < len(ENTITIES) else {}
            return 200, {
                "items": ENTITIES[start : start + page],
                "totalItems": len(ENTITIES),
                "pageInfo": info,
            }
        if path == "/api/catalog/entities":
            return 200, ENTITIES
        return 404, {"error": {"name": "NotFoundError"}}

    return answer


@pytest.fixture
def backend() -> Iterator[Server]:
    server = Server(catalog())
    yield server
    server.close()


def test_the_catalog_is_read_page_after_page_by_its_cursor(backend: Server) -> None:
    fetched = fetch_backstage(backend.url + "/")

    assert fetched == ENTITIES
    paths = [s.path for s in backend.seen]
    assert paths == ["/api/catalog/entities/by-query"] * 3
    first, second = backend.seen[0].query, backend.seen[1].query
    assert first == {"limit": ["500"], "filter": ["kind=component", "kind=resource", "kind=system"]}
    assert second == {"limit": ["500"], "cursor": ["c3"]}
    expected = backstage.convert([("file", ENTITIES)])
    assert backstage.convert([("live", fetched)]).nodes == expected.nodes


def test_an_older_backend_without_by_query_gives_its_plain_list() -> None:
    server = Server(catalog(by_query=False))
    try:
        assert fetch_backstage(server.url) == ENTITIES
    finally:
        server.close()
    assert [s.path for s in server.seen] == [
        "/api/catalog/entities/by-query",
        "/api/catalog/entities",
    ]
    assert server.seen[1].query == {"filter": ["kind=component", "kind=resource", "kind=system"]}


def test_the_token_comes_from_the_variable_named(
    backend: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKSTAGE_TOKEN", TOKEN)
    fetch_backstage(backend.url, token_env="BACKSTAGE_TOKEN")
    assert {s.authorization for s in backend.seen} == {f"Bearer {TOKEN}"}

    monkeypatch.delenv("BACKSTAGE_TOKEN")
    with pytest.raises(FetchError) as caught:
        fetch_backstage(backend.url, token_env="BACKSTAGE_TOKEN")
    assert str(caught.value) == (
        "$BACKSTAGE_TOKEN is empty or not set: it should hold the Backstage token"
    )


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            lambda path, query: (401, {"error": {"name": "AuthenticationError"}}),
            "{url}/api/catalog/entities/by-query refused the request (status 401): "
            "set the Backstage token in the variable named by token_env",
        ),
        (
            lambda path, query: (503, {}),
            "{url}/api/catalog/entities/by-query answered status 503",
        ),
        (
            lambda path, query: (200, ["not", "a", "page"]),
            "{url}/api/catalog/entities/by-query: expected {{items: [...]}} in JSON",
        ),
        (
            lambda path, query: (200, {"items": [], "pageInfo": {"nextCursor": "same"}}),
            "{url}/api/catalog/entities/by-query: the same page cursor twice",
        ),
    ],
)
def test_a_catalog_that_answers_badly_is_a_fetch_error(route: Route, message: str) -> None:
    server = Server(route)
    try:
        with pytest.raises(FetchError) as caught:
            fetch_backstage(server.url)
    finally:
        server.close()
    assert str(caught.value) == message.format(url=server.url)


def test_an_unreachable_catalog_is_a_fetch_error_with_the_url_redacted() -> None:
    url = f"http://user:secret@127.0.0.1:{closed_port()}"
    with pytest.raises(FetchError) as caught:
        fetch_backstage(url)
    port = url.rsplit(":", 1)[1]
    shown = f"http://user:***@127.0.0.1:{port}/api/catalog/entities/by-query"
    assert str(caught.value).startswith(f"cannot read {shown}: ")
    assert "secret" not in str(caught.value)
