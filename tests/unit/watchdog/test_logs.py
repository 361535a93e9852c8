"""The daemon's log handler: the flood limit (one line per distinct message
per window, the count of those held back told after), one line without a
traceback for the daemon's own resource exhaustion, and secrets masked in
text and JSON lines (message, arguments, `extra=` fields, exception text)."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from clocks import Clock

from watchdog.logs import BURST, LogHandler, Secrets, configure

EMFILE = OSError(errno.EMFILE, os.strerror(errno.EMFILE))


class Captured:
    """A logger of its own writing through a LogHandler into a buffer."""

    def __init__(self, name: str, handler: LogHandler, stream: io.StringIO) -> None:
        self.log = logging.getLogger(name)
        self.handler = handler
        self._stream = stream

    def lines(self) -> list[str]:
        """Every line written so far, the time stripped off text lines."""
        text = self._stream.getvalue().splitlines()
        return [line.split(" ", 1)[1] if line[:2].isdigit() else line for line in text]

    def records(self) -> list[dict[str, Any]]:
        """The JSON lines written so far."""
        return [json.loads(line) for line in self._stream.getvalue().splitlines()]


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def capture(clock: Clock, request: pytest.FixtureRequest) -> Iterator[Any]:
    """`capture(fmt="text", secrets=None, burst=1)`: a Captured on a fresh
    logger (one line per message per window unless told)."""
    made: list[logging.Logger] = []

    def make(fmt: str = "text", secrets: Secrets | None = None, burst: int = 1) -> Captured:
        stream = io.StringIO()
        handler = LogHandler(
            stream, "json" if fmt == "json" else "text", secrets=secrets, clock=clock, burst=burst
        )
        name = f"test.logs.{request.node.name}.{len(made)}"
        captured = Captured(name, handler, stream)
        captured.log.handlers[:] = [handler]
        captured.log.propagate = False
        captured.log.setLevel(logging.DEBUG)
        made.append(captured.log)
        return captured

    yield make
    for logger in made:
        logger.handlers.clear()


def test_it_shows_one_line_of_a_flood_then_how_many_were_held_back(
    capture: Any, clock: Clock
) -> None:
    out = capture()
    for i in range(1234):
        out.log.error("probe failed host=%s", f"h{i}")
        clock.now += 0.01  # all within the minute
    assert out.lines() == [f"ERROR {out.log.name}: probe failed host=h0"]

    clock.now = 1060.0
    out.log.error("probe failed host=%s", "again")
    assert out.lines()[1:] == [
        f"ERROR {out.log.name}: probe failed host=again (1,233 more like this in the last 60s)"
    ]
    # A new window: the next one is held back again.
    out.log.error("probe failed host=%s", "held")
    assert len(out.lines()) == 2


def test_by_default_a_few_lines_pass_before_the_rest_are_held_back(
    capture: Any, clock: Clock
) -> None:
    out = capture(burst=BURST)
    for node in ("a", "b", "c", "d", "e", "f", "g"):
        out.log.warning("transition node=%s %s -> %s", node, "up", "down")
    assert out.lines() == [
        f"WARNING {out.log.name}: transition node={node} up -> down" for node in "abcde"
    ]
    clock.now += 60
    out.log.warning("transition node=%s %s -> %s", "a", "down", "up")
    assert out.lines()[5:] == [
        f"WARNING {out.log.name}: transition node=a down -> up (2 more like this in the last 60s)"
    ]


def test_it_tells_distinct_messages_apart_by_logger_template_and_exception_type(
    capture: Any,
) -> None:
    out, other = capture(), capture()
    out.log.error("probe failed host=%s", "a")
    out.log.error("probe failed host=%s", "b")  # same: held back
    other.log.error("probe failed host=%s", "a")  # another logger
    out.log.error("store failed path=%s", "x")  # another template
    for exc in (ValueError("v"), KeyError("k"), ValueError("w")):
        try:
            raise exc
        except Exception:
            out.log.exception("probe failed host=%s", "c")
    shown = [line.splitlines()[0] for line in out.lines() if line.startswith("ERROR")]
    assert shown == [
        f"ERROR {out.log.name}: probe failed host=a",
        f"ERROR {out.log.name}: store failed path=x",
        f"ERROR {out.log.name}: probe failed host=c",  # ValueError
        f"ERROR {out.log.name}: probe failed host=c",  # KeyError; the second ValueError held
    ]
    assert other.lines() == [f"ERROR {other.log.name}: probe failed host=a"]


def test_it_leaves_lines_below_warning_alone(capture: Any) -> None:
    out = capture()
    out.log.info("reloaded nodes=%d", 3)
    out.log.info("reloaded nodes=%d", 4)
    assert out.lines() == [
        f"INFO {out.log.name}: reloaded nodes=3",
        f"INFO {out.log.name}: reloaded nodes=4",
    ]


def test_it_tells_the_end_of_a_flood_at_the_next_line_or_when_flushed(
    capture: Any, clock: Clock
) -> None:
    out = capture()
    for i in range(5):
        out.log.warning("probe run cut off key=%s", f"k{i}")
    clock.now += 61
    out.log.info("something else")
    assert out.lines() == [
        f"WARNING {out.log.name}: probe run cut off key=k0",
        f"INFO {out.log.name}: something else",
        # The last one held back, with the others counted.
        f"WARNING {out.log.name}: probe run cut off key=k4 (3 more like this in the last 61s)",
    ]

    flushed = capture()
    flushed.log.error("boom %d", 1)
    flushed.log.error("boom %d", 2)
    flushed.handler.flush_pending()  # the window is not over: nothing yet
    assert len(flushed.lines()) == 1
    clock.now += 60
    flushed.handler.flush_pending()
    assert flushed.lines() == [
        f"ERROR {flushed.log.name}: boom 1",
        f"ERROR {flushed.log.name}: boom 2",
    ]


def test_it_tells_everything_held_back_when_closed(capture: Any, clock: Clock) -> None:
    out = capture()
    for i in range(3):
        out.log.error("boom %d", i)
    clock.now += 5  # the window is not over: at exit nothing else would tell
    out.handler.close()
    assert out.lines()[1:] == [f"ERROR {out.log.name}: boom 2 (1 more like this in the last 5s)"]


def test_the_daemons_own_exhaustion_is_one_line_without_traceback(capture: Any) -> None:
    out = capture()
    try:
        raise EMFILE
    except OSError:
        out.log.exception("probe=tcp host=%s unexpected error", "db")
    try:
        try:
            raise EMFILE
        except OSError as err:
            raise RuntimeError("connect failed") from err  # as httpx wraps it
    except RuntimeError:
        out.log.exception("probe=http host=%s unexpected error", "web")
    try:
        raise ValueError("a bug")
    except ValueError:
        out.log.exception("alert loop failed")
    text = "\n".join(out.lines())
    assert out.lines()[:2] == [
        f"ERROR {out.log.name}: probe=tcp host=db unexpected error"
        " (OSError: [Errno 24] Too many open files)",
        f"ERROR {out.log.name}: probe=http host=web unexpected error"
        " (OSError: [Errno 24] Too many open files)",
    ]
    # Any other error keeps its traceback.
    assert text.count("Traceback") == 1
    assert "ValueError: a bug" in text


def test_exhaustion_in_json_is_one_line_too(capture: Any) -> None:
    out = capture("json")
    try:
        raise EMFILE
    except OSError:
        out.log.exception("api accept failed")
    [record] = out.records()
    assert record["message"] == "api accept failed (OSError: [Errno 24] Too many open files)"
    assert "error" not in record


def test_secrets_are_masked_in_text_lines(capture: Any) -> None:
    secrets = Secrets(["xoxb-123-secret"])
    out = capture(secrets=secrets)
    secrets.add("p@ss word")  # added later, and as it appears in a URL
    out.log.warning("slack said %s", "invalid_auth for Bearer xoxb-123-secret")
    out.log.warning("probe url=%s", "https://u:p%40ss%20word@db.example/health")
    out.log.warning("probe target=%s", "https://u:p%40ss+word@db.example/health")
    try:
        raise RuntimeError("server answered: Authorization: Bearer xoxb-123-secret")
    except RuntimeError:
        out.log.exception("delivery failed sink=%s", "slack")
    text = "\n".join(out.lines())
    assert "xoxb-123-secret" not in text
    assert "p%40ss" not in text
    assert "p@ss" not in text
    assert out.lines()[:3] == [
        f"WARNING {out.log.name}: slack said invalid_auth for Bearer ***",
        f"WARNING {out.log.name}: probe url=https://u:***@db.example/health",
        f"WARNING {out.log.name}: probe target=https://u:***@db.example/health",
    ]
    assert "RuntimeError: server answered: Authorization: Bearer ***" in text


def test_secrets_are_masked_in_json_lines_and_extra_fields(capture: Any) -> None:
    secret = 'Zq"7\\w'  # JSON escapes it: masked before the line is made
    out = capture("json", Secrets([secret]))

    class Url:
        def __str__(self) -> str:
            return f"https://hooks.example/{secret}"

    try:
        raise RuntimeError(f"rejected {secret}")
    except RuntimeError:
        out.log.exception(
            "webhook failed token=%s",
            secret,
            extra={"url": Url(), "headers": {"authorization": f"Bearer {secret}"}, "tries": 3},
        )
    line = out._stream.getvalue()
    assert "Zq" not in line
    [record] = out.records()
    assert record["message"] == "webhook failed token=***"
    assert record["url"] == "https://hooks.example/***"
    assert record["headers"] == {"authorization": "Bearer ***"}
    assert record["tries"] == 3
    assert record["error"].endswith("RuntimeError: rejected ***")


def test_an_empty_secret_masks_nothing(capture: Any) -> None:
    secrets = Secrets([""])
    out = capture(secrets=secrets)
    out.log.warning("nothing to hide")
    assert len(secrets) == 0
    assert out.lines() == [f"WARNING {out.log.name}: nothing to hide"]


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_restored")
def test_configure_keeps_its_signature_and_returns_the_handler(clock: Clock) -> None:
    stream = io.StringIO()
    handler = configure("json", logging.INFO, stream=stream, clock=clock)
    assert logging.getLogger().handlers == [handler]
    handler.secrets.add("s3cret")
    logging.getLogger("watchdog.test").warning("token=%s", "s3cret")
    logging.getLogger("watchdog.test").debug("not shown")
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "token=***"
    assert isinstance(configure("text"), LogHandler)  # as the CLI calls it


def record_at(logger: logging.Logger, created: float, msg: str, *args: Any, **extra: Any) -> None:
    """Log `msg % args` at WARNING as if it were made at `created`."""
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, args, None)
    record.created = created
    record.__dict__.update(extra)
    logger.handle(record)


def test_every_line_starts_with_its_time_in_rfc3339_utc(capture: Any) -> None:
    text, js = capture(), capture("json")
    for out in (text, js):
        record_at(out.log, 1_714_557_600.25, "probe failed")  # 2024-05-01T10:00:00.25Z
    assert text._stream.getvalue() == (
        f"2024-05-01T10:00:00Z WARNING {text.log.name}: probe failed\n"
    )
    [record] = js.records()
    assert record["time"] == "2024-05-01T10:00:00.250Z"


def test_json_lifts_the_pairs_of_a_message_into_keys_and_keeps_the_message(
    capture: Any,
) -> None:
    out = capture("json", Secrets(["s3cret"]))
    out.log.warning(
        "delivery failed sink=%s attempt=%d retry_in_s=%.1f error=%s",
        "slack",
        2,
        4.96,
        "timeout after 30s token=s3cret",
    )
    out.log.info("transition node=%s %s -> %s cause=%s", "farm", "up", "down", "-")
    out.log.info("descriptor limit raised soft=%d->%d", 1024, 4096)
    out.log.info("named pid=%(pid)d who=%(who)s", {"pid": 7, "who": "me"})
    out.log.info("literal a=b at https://x.example/?q=1")
    out.log.info("reloaded nodes=%d", 3, extra={"nodes": "from extra"})
    out.log.info("spoof time=%s level=%s message=%s logger=%s", "t", "l", "m", "g")
    fields = [
        {k: v for k, v in r.items() if k not in ("time", "level", "logger")} for r in out.records()
    ]
    assert fields == [
        {
            "message": "delivery failed sink=slack attempt=2 retry_in_s=5.0"
            " error=timeout after 30s token=***",
            "sink": "slack",
            "attempt": 2,
            "retry_in_s": 5.0,
            # A value with spaces stays whole; a pair inside a value adds no key.
            "error": "timeout after 30s token=***",
        },
        {"message": "transition node=farm up -> down cause=-", "node": "farm", "cause": "-"},
        {"message": "descriptor limit raised soft=1024->4096", "soft": "1024->4096"},
        {"message": "named pid=7 who=me", "pid": 7, "who": "me"},
        {"message": "literal a=b at https://x.example/?q=1", "a": "b"},
        {"message": "reloaded nodes=3", "nodes": "from extra"},
        {"message": "spoof time=t level=l message=m logger=g"},
    ]
    spoof = out.records()[-1]
    assert (spoof["level"], spoof["logger"]) == ("info", out.log.name)
    assert spoof["time"] != "t"


def test_json_drops_uvicorns_coloured_copy_of_its_message(capture: Any) -> None:
    out = capture("json")
    out.log.info(
        "Uvicorn running on %s",
        "http://127.0.0.1:9120",
        extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m"},
    )
    [record] = out.records()
    assert "color_message" not in record
    line = out._stream.getvalue()
    assert "\x1b" not in line
    assert "\\u001b" not in line
    assert record["message"] == "Uvicorn running on http://127.0.0.1:9120"
