"""What every test shares: the process's logging as it was before the test.
`watchdog run` and `check` set up logging for the whole process; a test that
calls them in-process must not leave its handler (and its stream, captured
for that test only) to the tests after it. And the store's two backends: a
session's real Postgres, and `backend`, which runs a test on both."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from postgres_server import backend, postgres  # noqa: F401 (SQLite and a real Postgres)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
