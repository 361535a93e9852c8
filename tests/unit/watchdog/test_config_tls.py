"""An http probe's `tls_expiry_warning`: read, bounded, and refused where
there is no certificate to check."""

from __future__ import annotations

from pathlib import Path

import pytest

from topology import InvalidInput
from watchdog.config import load_config
from watchdog.probes import HttpSpec


def write(tmp_path: Path, probe: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(f"version: 1\nnodes:\n  shop:\n    probes:\n      - {probe}\n")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("", 14 * 86400.0),
        (", tls_expiry_warning: 30d", 30 * 86400.0),
        (", tls_expiry_warning: 0s", 0.0),
    ],
)
def test_it_reads_the_warning_of_an_https_probe(
    tmp_path: Path, written: str, seconds: float
) -> None:
    config = load_config(write(tmp_path, f"{{http: 'https://shop.example/health'{written}}}"))
    (probe,) = config.probes
    assert isinstance(probe.spec, HttpSpec)
    assert probe.spec.tls_expiry_warning_s == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "2 weeks",
            "bad duration '2 weeks': expected a number and a unit (ms, s, m, h, d, w), "
            "e.g. '10m' or '1h30m'",
        ),
        ("366d", "duration '366d' is too long: at most 365d"),
        ("-1d", "bad duration '-1d'"),
    ],
)
def test_it_refuses_a_bad_warning_with_its_line(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f"{{http: 'https://shop.example/', tls_expiry_warning: {value}}}")
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(f"5: nodes.shop.probes[0].tls_expiry_warning: {message}")


def test_it_refuses_the_warning_on_a_plain_http_url_saying_why(tmp_path: Path) -> None:
    path = write(tmp_path, "{http: 'http://shop.example/', tls_expiry_warning: 7d}")
    assert problems(path) == [
        "5: nodes.shop.probes[0].tls_expiry_warning: only an https:// URL has a certificate "
        "to check: probe the https:// URL or remove the key"
    ]


def test_the_spec_refuses_a_warning_out_of_bounds() -> None:
    with pytest.raises(ValueError, match="tls_expiry_warning must be from 0 to 365 days"):
        HttpSpec("https://shop.example/", tls_expiry_warning_s=400 * 86400.0)
    with pytest.raises(ValueError, match="tls_expiry_warning must be from 0 to 365 days"):
        HttpSpec("https://shop.example/", tls_expiry_warning_s=-1.0)
