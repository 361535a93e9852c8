"""Templates: the built-in ones, a user's folder overriding them per sink and
kind, strict undefined names reported with file and line, autoescape for
HTML, and the fallback that keeps an alert from being lost to a typo."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from alerts.model import Alert, Impacted, Notification
from alerts.sinks.alertmanager import render_alert
from alerts.sinks.console import ConsoleSink, render_line
from alerts.sinks.slack import blocks, reply_text, text
from alerts.templates import TemplateError, Templates
from topology import State

T0 = 1_000_000.0


def note(kind: str = "outage", event: str = "firing", at: float = T0 + 60) -> Notification:
    alert = Alert(
        key=f"{kind}:farm-oms-1",
        kind=kind,  # type: ignore[arg-type]
        severity="critical",
        root_cause=("farm-oms-1",),
        summary="farm-oms-1 down takes critical orders-workflow down (9m left)",
        started_at=T0,
        critical=(Impacted("orders-workflow", State.DOWN, 600.0, T0),),
        collateral=("orders-search",),
    )
    return Notification(f"{kind}#1:{event}", alert, event, at)  # type: ignore[arg-type]


def test_the_built_in_templates_say_the_summary_once() -> None:
    # The summary names the critical nodes: neither sink lists them again.
    assert render_line(note()) == (
        "FIRING critical outage:farm-oms-1 — farm-oms-1 down takes critical orders-workflow "
        "down (9m left)"
    )
    assert text(note(), T0 + 60) == (
        "critical: farm-oms-1 down takes critical orders-workflow down (9m left) "
        "(root cause farm-oms-1)"
    )
    assert reply_text(note(event="resolved"), T0 + 90) == (
        ":white_check_mark: Resolved after 1m30s: root cause `farm-oms-1`"
    )


def test_a_users_folder_overrides_one_sink_and_kind_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "outage.j2").write_text(
        "{% set line %}{{ event | upper }} {{ alert.root_cause | join('+') }} "
        "{% for c in critical %}{{ c.node }}:{{ c.left_s | whole }}{% endfor %}{% endset %}"
    )
    templates = Templates(tmp_path)
    assert render_line(note(), templates) == "FIRING farm-oms-1 orders-workflow:9m"
    # Another kind, and another sink, keep the built-in words.
    assert render_line(note("drift"), templates) == render_line(note("drift"))
    assert text(note(), T0 + 60, templates) == text(note(), T0 + 60)


def test_a_kind_template_is_preferred_to_the_sinks_default(tmp_path: Path) -> None:
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "anomaly.j2").write_text(
        "{% set title %}log trouble on {{ alert.root_cause[0] }}{% endset %}"
        "{% set text %}t{% endset %}{% set reply %}r{% endset %}"
    )
    templates = Templates(tmp_path)
    [header, *_] = blocks(note("anomaly"), T0 + 60, "http://127.0.0.1:9120", templates)
    assert header["text"]["text"] == "log trouble on farm-oms-1"
    [header, *_] = blocks(note("outage"), T0 + 60, "http://127.0.0.1:9120", templates)
    assert header["text"]["text"].startswith(":red_circle: farm-oms-1 down")


def test_an_undefined_name_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "alertmanager").mkdir()
    broken = tmp_path / "alertmanager" / "default.j2"
    broken.write_text(
        "{% set summary %}ok{% endset %}\n{% set description %}\n{{ alert.sumary }}{% endset %}\n"
    )
    templates = Templates(tmp_path)
    with pytest.raises(TemplateError) as caught:
        templates.parts("alertmanager", note(), T0)
    assert str(caught.value) == f"{broken}:3: 'alerts.model.Alert object' has no attribute 'sumary'"
    assert templates.check(("console", "alertmanager")) == [str(caught.value)]


def test_a_syntax_error_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "default.j2").write_text("{% set line %}\n{{ event }\n{% endset %}")
    problems = Templates(tmp_path).check(("console",))
    assert problems == [f"{tmp_path / 'console' / 'default.j2'}:2: unexpected '}}'"]


def test_a_failing_user_template_falls_back_to_the_built_in_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "alertmanager").mkdir()
    (tmp_path / "alertmanager" / "default.j2").write_text("{% set summary %}{{ nope }}{% endset %}")
    with caplog.at_level(logging.ERROR, logger="alerts.templates"):
        body = render_alert(note(), {}, T0 + 300, "", Templates(tmp_path))
    assert body["annotations"]["summary"] == note().alert.summary
    assert "'nope' is undefined" in caplog.text


def test_html_templates_are_autoescaped_and_text_ones_are_not(tmp_path: Path) -> None:
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "outage.j2").write_text("{% set line %}{{ value }}{% endset %}")
    (tmp_path / "console" / "page.html.j2").write_text("{% set line %}{{ value }}{% endset %}")
    templates = Templates(tmp_path)
    env = templates._env  # the autoescape choice is the environment's
    assert (
        env.get_template("console/page.html.j2").make_module({"value": "<b>"}).line == "&lt;b&gt;"
    )
    assert env.get_template("console/outage.j2").make_module({"value": "<b>"}).line == "<b>"


@pytest.mark.anyio
async def test_the_console_sink_writes_what_the_users_template_says(tmp_path: Path) -> None:
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "default.j2").write_text("{% set line %}[{{ alert.key }}]{% endset %}")
    stream = io.StringIO()
    await ConsoleSink(stream, templates=Templates(tmp_path)).send(note(), None)
    assert stream.getvalue() == "1970-01-12T13:47:40Z [outage:farm-oms-1]\n"


def test_a_notice_reads_as_an_announcement_in_every_built_in_template() -> None:
    started = Notification(
        "maneuver:3:running",
        Alert("maneuver:3", "maneuver", "warning", ("kv-a",), "alice started drain kv-a", T0),
        "notice",
        T0,
    )
    assert render_line(started) == "NOTICE warning maneuver:3 — alice started drain kv-a"
    assert text(started, T0) == ":loudspeaker: warning: alice started drain kv-a"
    assert Templates().check(("console", "slack", "alertmanager")) == []


def test_words_about_critical_nodes_only_degraded_never_say_down() -> None:
    alert = Alert(
        key="outage:farm-x",
        kind="outage",
        severity="warning",
        root_cause=("farm-x",),
        summary="farm-x down degrades critical checkout (4m50s left)",
        started_at=T0,
        critical=(Impacted("checkout", State.DEGRADED, 300.0, T0 + 10),),
    )
    firing = Notification("outage:farm-x#1:firing", alert, "firing", T0 + 20)
    description = render_alert(firing, {}, T0 + 300, "")["annotations"]["description"]
    assert description == (
        "root cause: farm-x\n"
        "critical nodes degraded (1):\n"
        "- checkout degraded, recovery target 5m, 4m50s left\n"
        "other nodes failing: 0"
    )
    [_, _, section, *_] = blocks(firing, T0 + 20, "http://127.0.0.1:9120")
    assert section["text"]["text"].startswith("*Critical nodes degraded (1)*\n")
    assert "outage" not in render_line(firing).removeprefix("FIRING warning outage:farm-x")


# -- the sandbox ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "attribute"),
    [
        ("''.__class__.__mro__", "__class__"),
        ("alert['__class__']['__subclasses__']()", "__class__"),
        ("whole | attr('__globals__')", "__globals__"),
        ("alert.key.format.__self__", "__self__"),
        ("critical.mro", "mro"),
    ],
)
def test_a_template_reaching_for_internals_is_refused_with_its_file_and_line(
    tmp_path: Path, expression: str, attribute: str
) -> None:
    (tmp_path / "console").mkdir()
    evil = tmp_path / "console" / "default.j2"
    # In a branch no sample takes: refused as it is read, not as it runs.
    evil.write_text(
        "{% set line %}ok{% endset %}\n"
        "{% if event == 'never' %}\n"
        f"{{{{ {expression} }}}}\n"
        "{% endif %}\n"
    )
    problems = Templates(tmp_path).check(("console",))
    assert problems == [f"{evil}:3: access to attribute {attribute!r} is not allowed in a template"]


def test_a_refused_template_never_runs_and_the_built_in_one_speaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "console").mkdir()
    evil = tmp_path / "console" / "default.j2"
    evil.write_text(
        "{% set line %}{{ ''.__class__.__mro__[1].__subclasses__() | length }}{% endset %}"
    )
    templates = Templates(tmp_path)
    with pytest.raises(TemplateError) as caught:
        templates.parts("console", note(), T0)
    assert str(caught.value) == (
        f"{evil}:1: access to attribute '__class__' is not allowed in a template"
    )
    with caplog.at_level(logging.ERROR, logger="alerts.templates"):
        line = render_line(note(), templates)
    assert line == render_line(note())
    assert "access to attribute '__class__' is not allowed" in caplog.text


def test_an_included_template_is_held_to_the_same_rule(tmp_path: Path) -> None:
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "default.j2").write_text(
        '{% set line %}{% include "console/part.j2" %}{% endset %}'
    )
    part = tmp_path / "console" / "part.j2"
    part.write_text("ok\n{{ now.__class__ }}")
    problems = Templates(tmp_path).check(("console",))
    assert problems == [f"{part}:2: access to attribute '__class__' is not allowed in a template"]


def test_an_attribute_named_at_run_time_is_stopped_by_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "console").mkdir()
    sly = tmp_path / "console" / "default.j2"
    sly.write_text("{% set line %}\n{{ now | attr('__cla' ~ 'ss__') }}{% endset %}")
    problems = Templates(tmp_path).check(("console",))
    assert problems == [f"{sly}:2: access to attribute '__class__' of 'float' object is unsafe."]


def test_a_template_cannot_change_what_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "console").mkdir()
    mutating = tmp_path / "console" / "default.j2"
    mutating.write_text("{% set line %}{{ critical.append(1) }}{% endset %}")
    problems = Templates(tmp_path).check(("console",))
    assert problems == [f"{mutating}:1: access to attribute 'append' of 'list' object is unsafe."]
