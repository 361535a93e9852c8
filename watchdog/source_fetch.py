"""Reading the sources of `topology.sources` from the systems themselves: a
Kubernetes cluster's API and a Backstage catalog's. The network lives here,
not in `topology`: these return the documents the pure converters take
(`topology.sources.kubernetes.convert`, `topology.sources.backstage.convert`).

Both are blocking (run them in a thread from the daemon's loop), bounded by a
timeout per request and a number of pages, and raise `FetchError` with a
message for people, URLs redacted, for anything that goes wrong. Like
kubectl and curl they honour the proxy variables (`HTTPS_PROXY`,
`NO_PROXY`) of the environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx
import yaml

from topology.document import redact_url, redact_urls

__all__ = ["KUBERNETES_EXTRA_MISSING", "FetchError", "fetch_backstage", "fetch_kubernetes"]

KUBERNETES_EXTRA_MISSING = (
    "watchdog import kubernetes --live needs the kubernetes extra: "
    "pip install 'service-watchdog[kubernetes]'"
)
# Per request: a catalog or a cluster slower than this is not answering.
TIMEOUT_S = 30.0
# Objects or entities asked for per request, and how many pages of a
# catalog are read: a catalog whose cursors never end is cut off.
PAGE_SIZE = 500
MAX_PAGES = 10_000
# What the importers read from a cluster: `kubectl get` of these, in order.
KUBERNETES_KINDS = (
    "nodes",
    "pods",
    "replicasets",
    "deployments",
    "statefulsets",
    "daemonsets",
    "poddisruptionbudgets",
)
# The catalog kinds that become nodes: only those are asked for.
BACKSTAGE_FILTERS = (
    ("filter", "kind=component"),
    ("filter", "kind=resource"),
    ("filter", "kind=system"),
)


class FetchError(Exception):
    """A source could not be read; the message says which and why, for
    people (URLs redacted)."""


def fetch_kubernetes(kubeconfig: str | None = None, context: str | None = None) -> dict[str, Any]:
    """The cluster's nodes, pods, replicasets, deployments, statefulsets,
    daemonsets and poddisruptionbudgets of every namespace, as the `List`
    that `kubectl get ... -A -o json` prints (each item with its `kind` and
    `apiVersion`), read from the cluster of `context` (default: the current
    one) in the kubeconfig file `kubeconfig` (default: the in-cluster
    service account, else `$KUBECONFIG`, first file of a list, else
    `~/.kube/config`). Needs the `kubernetes` extra (lightkube); raises
    `FetchError` without it, and for a bad kubeconfig, an unknown context,
    an unreachable cluster or a refused listing."""
    try:
        from lightkube import Client, KubeConfig
        from lightkube.core.exceptions import ConfigError
        from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
        from lightkube.resources.core_v1 import Node, Pod
        from lightkube.resources.policy_v1 import PodDisruptionBudget
    except ImportError:
        raise FetchError(KUBERNETES_EXTRA_MISSING) from None

    where = kubeconfig or "the kubeconfig"
    try:
        if kubeconfig is None and os.pathsep in os.environ.get("KUBECONFIG", ""):
            paths = os.environ["KUBECONFIG"].split(os.pathsep)
            config = KubeConfig.from_file(next((p for p in paths if p), ""))
        elif kubeconfig is None:
            config = KubeConfig.from_env()
        else:
            config = KubeConfig.from_file(kubeconfig)
        client = Client(config.get(context), timeout=httpx.Timeout(TIMEOUT_S))
    # A malformed file surfaces as whatever lightkube met first: YAML or
    # type errors, a missing key, an assertion for a context without a user.
    except (ConfigError, OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        raise FetchError(f"cannot use {where}: {redact_urls(_reason(err))}") from None
    except yaml.YAMLError as err:
        raise FetchError(f"cannot use {where}: not YAML ({_reason(err)})") from None

    server = redact_url(str(client.config.cluster.server))
    items: list[dict[str, Any]] = []
    resources = (Node, Pod, ReplicaSet, Deployment, StatefulSet, DaemonSet, PodDisruptionBudget)
    with client:
        for plural, resource in zip(KUBERNETES_KINDS, resources, strict=True):
            try:
                # Nodes are cluster-wide; `*` lists the others in every
                # namespace. lightkube asks PAGE_SIZE at a time and follows
                # the API's `continue` tokens; objects stay unparsed (lazy)
                # and `to_dict` gives back what the API sent.
                listing = (
                    client.list(resource, chunk_size=PAGE_SIZE)
                    if resource is Node
                    else client.list(resource, namespace="*", chunk_size=PAGE_SIZE)
                )
                items.extend(_plain(obj) for obj in listing)
            # lightkube reads an error answer's Content-Type without checking
            # that it is there (KeyError), and its JSON without checking it is
            # JSON (ValueError).
            except (httpx.HTTPError, ValueError, KeyError) as err:
                raise FetchError(
                    f"cannot list {plural} at {server}: {redact_urls(_reason(err))}"
                ) from None
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def fetch_backstage(url: str, token_env: str | None = None) -> list[dict[str, Any]]:
    """The Component, Resource and System entities of the Backstage catalog
    whose backend is at `url` (e.g. `https://backstage.example.com`): from
    `URL/api/catalog/entities/by-query`, page after page by its cursor, or,
    from a backend that has no by-query endpoint (404), from the plain list
    at `URL/api/catalog/entities`. With `token_env`, the bearer token is the
    value of that environment variable (never a file or an argument, which
    would end up in shell histories and process lists); raises `FetchError`
    if it is unset, and for an unreachable catalog, an answer that is not a
    success, not JSON or not of the documented shape."""
    headers = {"Accept": "application/json"}
    if token_env:
        token = os.environ.get(token_env, "")
        if not token:
            raise FetchError(
                f"${token_env} is empty or not set: it should hold the Backstage token"
            )
        headers["Authorization"] = f"Bearer {token}"
    base = url.rstrip("/") + "/api/catalog/entities"
    with httpx.Client(timeout=TIMEOUT_S, headers=headers) as client:
        params: Sequence[tuple[str, str | int]] = (("limit", PAGE_SIZE), *BACKSTAGE_FILTERS)
        answer = _get(client, f"{base}/by-query", params, allow_missing=True)
        if answer is None:
            listed = _get(client, base, BACKSTAGE_FILTERS)
            assert listed is not None  # only by-query may be missing
            return _entities(listed, base)
        entities: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = _json(answer)
            items = page.get("items") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise FetchError(f"{redact_url(base)}/by-query: expected {{items: [...]}} in JSON")
            entities.extend(items)
            info = page.get("pageInfo") if isinstance(page, dict) else None
            cursor = info.get("nextCursor") if isinstance(info, dict) else None
            if not cursor:
                return entities
            if cursor in seen:
                raise FetchError(f"{redact_url(base)}/by-query: the same page cursor twice")
            seen.add(cursor)
            answer = _get(client, f"{base}/by-query", (("limit", PAGE_SIZE), ("cursor", cursor)))
            assert answer is not None
        raise FetchError(f"{redact_url(base)}/by-query: more than {MAX_PAGES:,} pages")


def _get(
    client: httpx.Client,
    url: str,
    params: Sequence[tuple[str, str | int]],
    *,
    allow_missing: bool = False,
) -> httpx.Response | None:
    """A successful answer to GET `url` (None for a 404 when
    `allow_missing`), or `FetchError`."""
    shown = redact_url(url)
    try:
        answer = client.get(url, params=list(params))
    except httpx.HTTPError as err:
        raise FetchError(f"cannot read {shown}: {redact_urls(_reason(err))}") from None
    if answer.status_code == 404 and allow_missing:
        return None
    if answer.status_code in (401, 403):
        raise FetchError(
            f"{shown} refused the request (status {answer.status_code}): "
            "set the Backstage token in the variable named by token_env"
        )
    if not answer.is_success:
        raise FetchError(f"{shown} answered status {answer.status_code}")
    return answer


def _json(answer: httpx.Response) -> Any:
    """The answer's JSON, or None if it is not JSON."""
    try:
        return answer.json()
    except ValueError:
        return None


def _entities(answer: httpx.Response, base: str) -> list[dict[str, Any]]:
    body = _json(answer)
    if not isinstance(body, list):
        raise FetchError(f"{redact_url(base)}: expected a JSON list of entities")
    return body


def _plain(obj: Any) -> dict[str, Any]:
    """A lightkube object as the API sent it (lightkube's `to_dict` is untyped)."""
    plain: dict[str, Any] = obj.to_dict()
    return plain


def _reason(err: BaseException) -> str:
    """What went wrong, in a few words."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text or type(err).__name__
