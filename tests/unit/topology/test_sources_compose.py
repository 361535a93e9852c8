"""The compose importer: one host per project, its services on it, their
depends_on hard or soft, files merged as `docker compose -f a -f b` does,
and bad files refused with the path named. Every result loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from imported import as_topology

from topology import InvalidInput
from topology.sources import Imported
from topology.sources.compose import convert

DATA = Path(__file__).resolve().parents[2] / "data" / "sources" / "compose"


def files(*names: str) -> list[tuple[str, Any]]:
    return [(str(DATA / name), yaml.safe_load((DATA / name).read_text())) for name in names]


def imported(*documents: tuple[str, Any], project: str | None = None) -> Imported:
    result = convert(list(documents), project=project)
    as_topology(result)
    return result


def test_a_project_is_one_host_running_every_service() -> None:
    result = imported(*files("docker-compose.yml"))

    assert list(result.nodes) == [
        "shop",
        "shop/cache",
        "shop/db",
        "shop/migrate",
        "shop/proxy",
        "shop/queue",
        "shop/web",
        "shop/worker",
    ]
    assert result.nodes["shop"] == {
        "kind": "host",
        "description": "Docker host of compose project shop",
    }
    assert all(result.nodes[n]["runs_on"] == ["shop"] for n in result.nodes if n != "shop")
    assert result.nodes["shop/web"] == {
        "kind": "service",
        "description": "compose service web of project shop, "
        "image registry.example.com/shop/web:7.0.3, 2 replicas",
        "runs_on": ["shop"],
        # cache is not required: soft; migrate must have completed, not run.
        "depends_on": ["shop/db", {"any_of": ["shop/cache"], "soft": True}],
    }
    assert result.nodes["shop/worker"]["depends_on"] == ["shop/db", "shop/queue"]
    assert result.nodes["shop/proxy"]["depends_on"] == ["shop/web"]
    assert "depends_on" not in result.nodes["shop/db"]
    assert result.findings == ()
    assert result.origin == f"compose {DATA / 'docker-compose.yml'}"


def test_later_files_override_and_add_as_docker_compose_merges_them() -> None:
    result = imported(*files("docker-compose.yml", "docker-compose.prod.yml"))

    assert "shop/search" in result.nodes
    web = result.nodes["shop/web"]
    assert web["description"].endswith(", 4 replicas")
    assert web["depends_on"] == [
        "shop/db",
        {"any_of": ["shop/cache"], "soft": True},
        {"any_of": ["shop/search"], "soft": True},
    ]
    assert result.nodes["shop/worker"]["description"].endswith(", 3 replicas")
    assert result.origin == (
        f"compose {DATA / 'docker-compose.yml'}, {DATA / 'docker-compose.prod.yml'}"
    )


def test_an_override_can_make_a_dependency_optional_or_required_again() -> None:
    base = {"services": {"web": {"depends_on": {"db": {"condition": "service_healthy"}}}, "db": {}}}
    soft = {"services": {"web": {"depends_on": {"db": {"required": False}}}}}
    result = imported(("a/compose.yml", base), ("a/override.yml", soft))
    assert result.nodes["a/web"]["depends_on"] == [{"any_of": ["a/db"], "soft": True}]

    # The short form is the long one with its defaults: required again.
    hard = {"services": {"web": {"depends_on": ["db"]}}}
    result = imported(("a/compose.yml", base), ("a/override.yml", soft), ("a/last.yml", hard))
    assert result.nodes["a/web"]["depends_on"] == ["a/db"]


def test_the_project_is_named_by_the_file_then_the_argument_then_the_folder() -> None:
    body = {"services": {"web": {"image": "nginx"}}}
    assert (
        "blog" in imported(("/srv/x/compose.yml", dict(body, name="blog")), project="other").nodes
    )
    assert "other" in imported(("/srv/x/compose.yml", body), project="other").nodes
    # As compose does with a folder's name: lower case, only a-z 0-9 _ -.
    assert list(imported(("/srv/My Shop.v2/compose.yml", body)).nodes) == [
        "myshopv2",
        "myshopv2/web",
    ]


def test_scale_counts_replicas_like_deploy_replicas() -> None:
    result = imported(("p/compose.yml", {"services": {"web": {"image": "nginx", "scale": 3}}}))
    assert result.nodes["p/web"]["description"] == (
        "compose service web of project p, image nginx, 3 replicas"
    )


def test_a_dependency_on_an_unknown_service_is_an_error_finding_not_a_crash() -> None:
    document = {
        "name": "shop",
        "services": {
            "web": {"depends_on": ["db", "dbb"]},
            "db": {"depends_on": {"db": {"condition": "service_started"}}},
        },
    }
    result = imported(("compose.yml", document))

    assert result.nodes["shop/web"]["depends_on"] == ["shop/db"]
    assert "depends_on" not in result.nodes["shop/db"]
    assert [str(f) for f in result.findings] == [
        "error: unknown-service: shop/db depends on itself: compose refuses to start it; left out",
        "error: unknown-service: shop/web depends on 'dbb', which is not defined: compose "
        "refuses to start it; left out",
    ]


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        ([("c.yml", ["web"])], [("c.yml", "", "expected a mapping, got a list")]),
        ([("c.yml", None)], [("c.yml", "", "missing")]),
        (
            [("c.yml", {"name": "shop", "services": ["web"]})],
            [("c.yml", "services", "expected a mapping, got a list")],
        ),
        ([("c.yml", {"name": "shop"})], [("c.yml", "services", "no service defined")]),
        (
            [("c.yml", {"name": "Shop!", "services": {"web": {}}})],
            [
                (
                    "c.yml",
                    "name",
                    "project name 'Shop!': use lower-case letters, digits, - and _, "
                    "starting with a letter or digit",
                )
            ],
        ),
        (
            [("c.yml", {"name": "shop", "services": {"web": {"depends_on": "db"}}})],
            [
                (
                    "c.yml",
                    "services.web.depends_on",
                    "expected a list of services or a mapping, got the text 'db'",
                )
            ],
        ),
        (
            [
                ("c.yml", {"name": "shop", "services": {"web": {}}}),
                (
                    "o.yml",
                    {
                        "services": {
                            "web": {
                                "deploy": {"replicas": -1},
                                "depends_on": {"db": {"required": "no", "condition": "up"}},
                            }
                        }
                    },
                ),
            ],
            [
                (
                    "o.yml",
                    "services.web.deploy.replicas",
                    "expected a whole number of 0 or more, got the number -1",
                ),
                (
                    "o.yml",
                    "services.web.depends_on.db.required",
                    "expected true or false, got the text 'no'",
                ),
                (
                    "o.yml",
                    "services.web.depends_on.db.condition",
                    "unknown condition 'up': one of service_started, service_healthy, "
                    "service_completed_successfully",
                ),
            ],
        ),
        (
            [("compose.yml", {"services": {"web": {}}})],
            [
                (
                    "compose.yml",
                    "name",
                    "no project name: '' leaves nothing a project name may hold; "
                    "add 'name:' to the file, or give the project",
                )
            ],
        ),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_the_path(
    documents: list[tuple[str, Any]], expected: list[tuple[str, str, str]]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        convert(documents)
    assert [(p.source, p.path, p.message) for p in caught.value.problems] == expected
