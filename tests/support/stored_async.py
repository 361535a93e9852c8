"""The outbox as delivery takes it (async) in tests that hold the
synchronous one: its calls run on one worker thread shared by the tests,
as the daemon's run on the store's thread."""

from __future__ import annotations

from watchdog.outbox import Outbox
from watchdog.stored import ThreadedOutbox, worker

# One thread for the whole session: each call runs there, one at a time.
_WORKER = worker()


def threaded(outbox: Outbox) -> ThreadedOutbox:
    """`outbox`, async, its calls on the shared worker thread."""
    return ThreadedOutbox(outbox, _WORKER)
