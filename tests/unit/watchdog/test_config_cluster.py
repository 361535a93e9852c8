"""The settings of a daemon that is one replica of several: `cluster:`
(replica, lease, shards; only with a Postgres `state.url`), and several
Alertmanagers of one cluster (`alerts.alertmanager: {urls: [...]}`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from topology import InvalidInput
from watchdog.config import DEFAULT_LEASE_S, ClusterConfig, DaemonConfig, load_config

URL = "postgresql://watchdog@db.internal:5432/estate?sslmode=require"
STATE = f"state: {{url: '{URL}'}}\n"
NODES = "nodes:\n  a: {}\n"


def load(tmp_path: Path, text: str) -> DaemonConfig:
    path = tmp_path / "estate.yaml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "estate.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


# --- cluster: -----------------------------------------------------------------


def test_it_reads_the_cluster_section_with_a_postgres_state(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "version: 1\n"
        "state:\n"
        f"  url: '{URL}'\n"
        "  password_env: WATCHDOG_DB_PASSWORD\n"
        "cluster:\n"
        "  replica: wd-1.example:9120\n"
        "  lease: 30s\n"
        "  shards: auto\n" + NODES,
    )
    assert config.cluster == ClusterConfig(replica="wd-1.example:9120", lease_s=30.0, shards=True)
    assert (config.state_url, config.state_password_env) == (URL, "WATCHDOG_DB_PASSWORD")


def test_a_cluster_without_settings_takes_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "version: 1\n" + STATE + "cluster: {}\n" + NODES)
    assert config.cluster == ClusterConfig(None, DEFAULT_LEASE_S, False)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("shards: 'off'", ClusterConfig(shards=False)),
        ("shards: auto", ClusterConfig(shards=True)),
        ("lease: 2s", ClusterConfig(lease_s=2.0)),
        ("lease: 5m", ClusterConfig(lease_s=300.0)),
        ("lease: 1m30s", ClusterConfig(lease_s=90.0)),
        (f"replica: {'r' * 64}", ClusterConfig(replica="r" * 64)),
        ("replica: ops@host_1-b.c", ClusterConfig(replica="ops@host_1-b.c")),
    ],
)
def test_each_cluster_setting_within_its_bounds(
    tmp_path: Path, setting: str, expected: ClusterConfig
) -> None:
    config = load(tmp_path, "version: 1\n" + STATE + f"cluster: {{{setting}}}\n" + NODES)
    assert config.cluster == expected


def test_a_daemon_on_its_own_has_no_cluster(tmp_path: Path) -> None:
    assert load(tmp_path, "version: 1\n" + STATE + NODES).cluster is None
    assert load(tmp_path, "version: 1\n" + NODES).cluster is None


@pytest.mark.parametrize("state", ["", "state: {path: history.db}\n"])
def test_a_cluster_needs_a_postgres_state_url(tmp_path: Path, state: str) -> None:
    line = 3 if state else 2
    found = problems(tmp_path, "version: 1\n" + state + "cluster: {shards: auto}\n" + NODES)
    assert len(found) == 1
    assert found[0].startswith(f"{line}: cluster: ")
    assert "set state.url" in found[0]


def test_a_cluster_whose_state_url_is_refused_says_so_too(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "version: 1\nstate: {url: 'postgresql://watchdog:hunter2@db/estate'}\n"
        "cluster: {shards: auto}\n" + NODES,
    )
    assert [p.split(":")[0:2] for p in found] == [["2", " state.url"], ["3", " cluster"]]
    assert not any("hunter2" in p for p in found)


def test_bad_cluster_settings_are_each_a_problem_at_their_path(tmp_path: Path) -> None:
    text = (
        "version: 1\n" + STATE + "cluster:\n"
        "  replica: 'has space'\n"
        "  lease: 1s\n"
        "  shards: yes\n"
        "  colour: red\n" + NODES
    )
    found = problems(tmp_path, text)
    assert [p.split(":")[:2] for p in found] == [
        ["4", " cluster.replica"],
        ["5", " cluster.lease"],
        ["6", " cluster.shards"],
        ["7", " cluster"],
    ]
    assert "'has space'" in found[0]
    assert "at least 2s" in found[1]
    assert "auto" in found[2]
    assert "off" in found[2]
    assert "unknown key 'colour'" in found[3]


@pytest.mark.parametrize(
    ("setting", "path", "said"),
    [
        ("lease: 6m", "cluster.lease", "at most 5m"),
        ("lease: 1999ms", "cluster.lease", "at least 2s"),
        ("lease: soon", "cluster.lease", "bad duration"),
        ("shards: 3", "cluster.shards", "expected auto"),
        ("shards: [auto]", "cluster.shards", "expected auto"),
        ("shards: true", "cluster.shards", "expected auto"),
        (f"replica: {'r' * 65}", "cluster.replica", "expected 1 to 64"),
        ("replica: 'a/b'", "cluster.replica", "expected 1 to 64"),
        ("replica: ''", "cluster.replica", ""),
    ],
)
def test_a_value_out_of_bounds_is_a_problem(
    tmp_path: Path, setting: str, path: str, said: str
) -> None:
    [found] = problems(tmp_path, "version: 1\n" + STATE + f"cluster: {{{setting}}}\n" + NODES)
    assert found.startswith(f"3: {path}: ")
    assert said in found


def test_a_cluster_that_is_not_a_mapping_is_a_problem(tmp_path: Path) -> None:
    [found] = problems(tmp_path, "version: 1\n" + STATE + "cluster: [a, b]\n" + NODES)
    assert found.startswith("3: cluster: ")


# --- several Alertmanagers ------------------------------------------------------


def alertmanager(tmp_path: Path, setting: str) -> list[str]:
    return problems(tmp_path, f"version: 1\nalerts:\n  alertmanager: {setting}\n" + NODES)


def test_the_first_of_several_alertmanagers_is_the_url_the_others_its_peers(
    tmp_path: Path,
) -> None:
    config = load(
        tmp_path,
        "version: 1\nalerts:\n  alertmanager:\n    urls:\n"
        "      - 'http://am-1:9093'\n"
        "      - 'https://am-2:9093/'\n"
        "      - 'http://am-3:9093'\n" + NODES,
    )
    assert config.alerts.alertmanager_url == "http://am-1:9093"
    assert config.alerts.alertmanager_peers == ("https://am-2:9093/", "http://am-3:9093")
    assert "alertmanager" in config.alerts.sink_names


@pytest.mark.parametrize("setting", ["{urls: ['http://am-1:9093']}", "{url: 'http://am-1:9093'}"])
def test_one_alertmanager_has_no_peers(tmp_path: Path, setting: str) -> None:
    config = load(tmp_path, f"version: 1\nalerts:\n  alertmanager: {setting}\n" + NODES)
    assert (config.alerts.alertmanager_url, config.alerts.alertmanager_peers) == (
        "http://am-1:9093",
        (),
    )


def test_url_and_urls_together_are_a_problem(tmp_path: Path) -> None:
    assert alertmanager(tmp_path, "{url: 'http://am-1:9093', urls: ['http://am-2:9093']}") == [
        "3: alerts.alertmanager.urls: url or urls, not both"
    ]


def test_a_url_listed_twice_is_a_problem(tmp_path: Path) -> None:
    found = alertmanager(
        tmp_path, "{urls: ['http://am-1:9093', 'http://am-2:9093', 'http://am-1:9093']}"
    )
    assert found == ["3: alerts.alertmanager.urls[2]: listed twice"]


def test_an_empty_list_is_a_problem(tmp_path: Path) -> None:
    [found] = alertmanager(tmp_path, "{urls: []}")
    assert found.startswith("3: alerts.alertmanager.urls: ")
    assert "one URL or more" in found


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("{urls: 'http://am-1:9093'}", "alerts.alertmanager.urls"),
        ("{urls: ['http://am-1:9093', 'ftp://x']}", "alerts.alertmanager.urls[1]"),
        ("{urls: ['http://am-1:9093', 42]}", "alerts.alertmanager.urls[1]"),
    ],
)
def test_what_is_not_a_list_of_urls_is_a_problem(tmp_path: Path, setting: str, path: str) -> None:
    [found] = alertmanager(tmp_path, setting)
    assert found.startswith(f"3: {path}: ")
