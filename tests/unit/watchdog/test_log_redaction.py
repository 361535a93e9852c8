"""Secrets in log lines: masked in what anyone may see (samples, templates,
reasons) and in what is saved, kept as read only for trusted callers."""

from __future__ import annotations

import json

import pytest

from watchdog.anomalies import LogAnalyzer, LogRules
from watchdog.logmine import Miner, MinerConfig, redact_secrets

T0 = 1_800_000_000.0
# No learning, so that a template first seen is new at once.
RULES = LogRules(interval_s=10.0, learning_s=0.0, min_count=5, silence_s=0, watched=("FATAL",))


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("ERROR db login password=hunter2 user=bob", "ERROR db login password=*** user=bob"),
        ("db_password: 'two words'", "db_password: '***'"),
        ('{"client_secret": "abc def", "n": 1}', '{"client_secret": "***", "n": 1}'),
        ("PASSWD=x;other=y", "PASSWD=***;other=y"),
        ("X-Auth-Token: t0k3n", "X-Auth-Token: ***"),
        ("api_key=AK1 apikey=AK2 api-key=AK3", "api_key=*** apikey=*** api-key=***"),
        ("access_key=AKIA123", "access_key=***"),
        ("Authorization: Bearer eyJ.abc.def", "Authorization: Bearer ***"),
        ('"authorization": "Basic dXNlcjpwYXNz"', '"authorization": "Basic ***"'),
        ("Proxy-Authorization: s3cr3t", "Proxy-Authorization: ***"),
        ("sent bearer abc.def to upstream", "sent bearer *** to upstream"),
        (
            "GET https://alice:s3cret@api.example/v1?token=abc&page=2 failed",
            "GET https://alice:***@api.example/v1?token=***&page=*** failed",
        ),
        ("INFO 200 GET /health in 3ms", "INFO 200 GET /health in 3ms"),
        ("secret santa draw done", "secret santa draw done"),
    ],
)
def test_it_masks_the_secrets_a_line_carries(line: str, shown: str) -> None:
    assert redact_secrets(line) == shown
    assert redact_secrets(shown) == shown  # masking twice changes nothing


def test_a_miner_never_makes_a_template_of_a_secret() -> None:
    miner = Miner(MinerConfig())
    template = miner.add("ERROR login failed password=hunter user=bob")
    assert template.text == "ERROR login failed password=*** user=bob"
    assert b"hunter" not in miner.state()


def test_the_redacted_sample_has_the_probes_own_masks_too() -> None:
    config = MinerConfig(masks=("ip", ("order", r"ORD-\d+")))
    analyzer = LogAnalyzer(LogRules(miner=config), T0)
    line = "ERROR ORD-991 from 10.1.2.3 token=abc"
    assert analyzer.redact(line) == "ERROR <ORDER> from <IP> token=***"


def fed(*lines: str) -> LogAnalyzer:
    analyzer = LogAnalyzer(RULES, T0)
    analyzer.feed([], T0)
    analyzer.feed(list(lines), T0 + 5)
    return analyzer


def test_a_new_templates_reason_holds_no_secret_but_its_sample_is_as_read() -> None:
    analyzer = fed("ERROR upstream refused password=hunter2")
    [anomaly] = analyzer.active(T0 + 6)
    assert anomaly.kind == "new_error_template"
    assert anomaly.reason == ("new error template: 'ERROR upstream refused password=***' (1 line)")
    assert anomaly.template == "ERROR upstream refused password=***"
    # Kept as read in memory: only trusted callers see it so.
    assert anomaly.sample == "ERROR upstream refused password=hunter2"
    assert analyzer.redact(anomaly.sample) == "ERROR upstream refused password=***"


def test_what_is_saved_holds_no_secret_and_reads_back_masked() -> None:
    analyzer = fed(
        "FATAL config password=hunter2",
        "ERROR call with Authorization: Bearer tok-777",
    )
    saved = json.dumps(analyzer.state())
    miner = analyzer.miner_state()
    for secret in ("hunter2", "tok-777"):
        assert secret not in saved
    assert b"hunter2" not in miner

    again = LogAnalyzer(RULES, T0, json.loads(saved), miner)
    samples = {a.kind: a.sample for a in again.active(T0 + 6)}
    assert samples == {
        "watched_pattern": "FATAL config password=***",
        "new_error_template": "FATAL config password=***",
    }


def test_a_template_saved_by_an_older_version_is_masked_in_the_reason() -> None:
    analyzer = fed("ERROR first failure")
    state = analyzer.state()
    # A template mined before secrets were masked, as an older version saved it.
    [[ident, followed]] = state["new"]
    state["new"] = [[ident, {**followed, "template": "ERROR login secret=opensesame"}]]

    again = LogAnalyzer(RULES, T0, state, analyzer.miner_state())
    [anomaly] = again.active(T0 + 6)
    assert anomaly.reason == "new error template: 'ERROR login secret=***' (1 line)"
