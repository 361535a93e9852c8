"""The prometheus probe in the file: its query, comparisons, alert mode,
server and credentials, `defaults.prometheus`, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from topology import InvalidInput
from watchdog.config import load_config
from watchdog.preflight import preflight
from watchdog.probes.prometheus import Comparison, PrometheusServer, PrometheusSpec


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


def test_it_reads_a_probe_with_its_own_server(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "version: 1\n"
            "nodes:\n"
            "  orders:\n"
            "    probes:\n"
            "      - prometheus: 'sum(up{job=\"orders\"})'\n"
            "        url: https://prom.example:9090/prom/\n"
            "        down_if: '< 1'\n"
            "        degraded_if: '<= 2.5'\n"
            "        bearer_token_env: PROM_TOKEN\n"
            "        verify_tls: false\n"
            "        timeout: 2s\n"
            "        interval: 1m\n",
        )
    )
    (probe,) = config.probes
    assert probe.kind == "prometheus"
    assert probe.spec == PrometheusSpec(
        'sum(up{job="orders"})',
        PrometheusServer(
            "https://prom.example:9090/prom/", bearer_token_env="PROM_TOKEN", verify_tls=False
        ),
        down_if=Comparison("<", 1.0),
        degraded_if=Comparison("<=", 2.5),
        timeout_s=2.0,
    )
    assert probe.schedule.interval_s == 60.0
    assert config.prometheus is None


def test_probes_without_url_ask_the_files_prometheus(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "version: 1\n"
            "defaults:\n"
            "  prometheus: {url: 'http://prom:9090', username: watchdog, password_env: PROM_PW}\n"
            "nodes:\n"
            "  orders:\n"
            "    probes:\n"
            '      - prometheus: \'ALERTS{alertstate="firing", alertname="OrderWorkflowDown"}\'\n'
            "        alert: true\n"
            "      - prometheus: up\n"
            "        bearer_token_env: OTHER\n"
            "      - prometheus: up\n"
            "        url: 'http://other:9090'\n",
        )
    )
    default = PrometheusServer("http://prom:9090", username="watchdog", password_env="PROM_PW")
    assert config.prometheus == default
    first, second, third = (p.spec for p in config.probes)
    assert isinstance(first, PrometheusSpec)
    assert (first.server, first.alert, first.down_if, first.timeout_s) == (default, True, None, 5.0)
    # Its own credentials for the file's server...
    assert isinstance(second, PrometheusSpec)
    assert second.server == PrometheusServer("http://prom:9090", bearer_token_env="OTHER")
    # ...and never the file's credentials for another server.
    assert isinstance(third, PrometheusSpec)
    assert third.server == PrometheusServer("http://other:9090")


def test_it_refuses_what_it_cannot_use_with_file_and_line(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "nodes:\n"
        "  a:\n"
        "    probes:\n"
        "      - prometheus: up\n"
        "        down_if: '<< 1'\n"
        "        degraded_if: 0.5\n"
        "      - prometheus: up\n"
        "        url: 'http://prom:9090'\n"
        "        down_if: '< one'\n"
        "        alert: maybe\n"
        "      - prometheus: ''\n"
        "        url: 'http://prom:9090'\n"
        "      - prometheus: up\n"
        "        url: 'http://watchdog:hunter22@prom:9090'\n"
        "      - prometheus: up\n"
        "        url: 'http://prom:9090'\n"
        "        password: hunter22\n"
        "        username: watchdog\n"
        "      - prometheus: up\n"
        "        url: 'http://prom:9090'\n"
        "        bearer_token_env: 'not a name'\n"
        "      - prometheus: up\n"
        "        url: 'http://prom:9090'\n"
        "        bearer_token_env: TOKEN\n"
        "        username: watchdog\n"
        "        password_env: PW\n"
        "      - prometheus: up\n"
        "        url: 'http://prom:9090'\n"
        "        username: watchdog\n"
        "      - prometheus: up\n"
        "        url: 'http://prom:9090'\n"
        "        down_when: '< 1'\n"
    )
    found = problems(tmp_path, text)
    assert found == [
        "5: nodes.a.probes[0]: no Prometheus to ask: give its url here, or once for the file "
        "in defaults.prometheus.url",
        "6: nodes.a.probes[0].down_if: expected an operator (<, <=, >, >=, ==, !=) and a "
        "number, e.g. '< 1', got '<< 1'",
        "7: nodes.a.probes[0].degraded_if: expected an operator (<, <=, >, >=, ==, !=) and a "
        "number, in quotes, e.g. '< 1', got 0.5",
        "10: nodes.a.probes[1].down_if: expected an operator (<, <=, >, >=, ==, !=) and a "
        "number, e.g. '< 1', got '< one'",
        "11: nodes.a.probes[1].alert: expected true or false, got 'maybe'",
        "12: nodes.a.probes[2].prometheus: empty query",
        "15: nodes.a.probes[3].url: secrets never sit in the file: give username and name an "
        "environment variable with password_env",
        "18: nodes.a.probes[4].password: secrets never sit in the file: name an environment "
        "variable with password_env",
        "22: nodes.a.probes[5].bearer_token_env: expected the name of an environment variable, "
        "got 'not a name'",
        "25: nodes.a.probes[6]: a bearer token (bearer_token_env) or a user and password "
        "(username, password_env), not both",
        "30: nodes.a.probes[7]: basic authentication needs password_env too",
        "33: nodes.a.probes[8]: unknown key 'down_when' (did you mean 'down_if'?)",
    ]
    assert not any("hunter22" in p for p in found)


def test_defaults_prometheus_is_checked(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "defaults:\n"
        "  prometheus:\n"
        "    verify_tls: false\n"
        "    uri: 'http://prom:9090'\n"
        "nodes:\n"
        "  a:\n"
        "    probes:\n"
        "      - prometheus: up\n"
    )
    # The probe's own problem would only repeat the defaults' one.
    assert problems(tmp_path, text) == [
        "4: defaults.prometheus: missing 'url', the address of the Prometheus",
        "5: defaults.prometheus: unknown key 'uri' (did you mean 'url'?)",
    ]
    assert problems(
        tmp_path, "version: 1\ndefaults: {prometheus: 'http://prom'}\nnodes:\n  a: {}\n"
    ) == [
        "2: defaults.prometheus: expected a mapping, got 'http://prom'",
    ]


def test_preflight_wants_the_credentials_variables_set(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "version: 1\n"
            "defaults:\n"
            "  prometheus:\n"
            "    url: 'http://prom:9090'\n"
            "    bearer_token_env: PROM_TOKEN\n"
            "nodes:\n"
            "  a:\n"
            "    probes:\n"
            "      - prometheus: up\n"
            "      - prometheus: up\n"
            "        url: 'http://other:9090'\n"
            "        username: watchdog\n"
            "        password_env: OTHER_PW\n",
        )
    )
    found = preflight(config, {})
    assert [str(p).removeprefix(f"{tmp_path / 't.yaml'}:") for p in found.environment] == [
        "5: defaults.prometheus.bearer_token_env: the environment variable PROM_TOKEN is not "
        "set or empty",
        "13: nodes.a.probes[1].password_env: the environment variable OTHER_PW is not set or empty",
    ]
    assert preflight(config, {"PROM_TOKEN": "t", "OTHER_PW": "p"}).ok


@pytest.mark.parametrize(
    ("text", "value", "holds"),
    [
        ("< 1", 0.0, True),
        ("<1", 1.0, False),
        ("<= 1", 1.0, True),
        ("> 0.05", 0.07, True),
        (">= -2", -2.0, True),
        ("== 0", 0.0, True),
        ("!= 0", 0.0, False),
        ("> 1e3", 1001.0, True),
        ("< +Inf", 5.0, True),
        ("!= 1", float("nan"), False),
        ("< 1", float("nan"), False),
    ],
)
def test_a_comparison_holds_as_written(text: str, value: float, holds: bool) -> None:
    assert Comparison.parse(text).holds(value) is holds


@pytest.mark.parametrize("text", ["", "1", "=< 1", "< NaN", "< 1 2", "<", "~ 1"])
def test_a_comparison_is_an_operator_and_a_number(text: str) -> None:
    with pytest.raises(ValueError, match="expected an operator"):
        Comparison.parse(text)
