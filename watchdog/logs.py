"""Logging to stderr: readable lines by default, one JSON object per line
for log shippers (`--log-format json`)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Literal

__all__ = ["LogFormat", "configure"]

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(fmt: LogFormat = "text", level: int = logging.INFO) -> None:
    """Send the process's logs to stderr in `fmt`."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print a line per scrape of /metrics,
    # APScheduler two lines per probe run, httpx one per HTTP probe.
    for noisy in ("uvicorn.access", "apscheduler", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
