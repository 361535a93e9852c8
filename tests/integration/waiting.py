"""Waiting in tests: poll a condition until it holds, within a bound that
fails the test rather than hanging it (a bound on waiting, never an
assertion about how long something took); and a free port on loopback for
a process the test starts."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEADLINE_S = 20.0
# A daemon in a process of its own starts an interpreter first.
PROCESS_DEADLINE_S = 30.0
# The installed command, beside the interpreter running the tests.
WATCHDOG = str(Path(sys.executable).with_name("watchdog"))


async def until(
    what: Callable[[], Any], deadline: float = DEADLINE_S, *, awaited: str = "condition"
) -> Any:
    """Call `what` (sync or async) every 50 ms until it returns something
    truthy, and return that; AssertionError naming what was `awaited` after
    `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        got = what()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if loop.time() > end:
            raise AssertionError(f"{awaited} not met within {deadline}s")
        await asyncio.sleep(0.05)


def until_blocking(what: Callable[[], Any], deadline: float = PROCESS_DEADLINE_S) -> Any:
    """`until` for tests without an event loop (they drive a subprocess):
    poll every 0.1 s, a bounded number of times."""
    for _ in range(int(deadline / 0.1)):
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {deadline}s")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
