"""Waiting in tests: poll a condition until it holds, within a bound that
fails the test rather than hanging it (a bound on waiting, never an
assertion about how long something took)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

DEADLINE_S = 20.0


async def until(what: Callable[[], Any], deadline: float = DEADLINE_S) -> Any:
    """Call `what` (sync or async) every 50 ms until it returns something
    truthy, and return that; AssertionError after `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        got = what()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if loop.time() > end:
            raise AssertionError(f"condition not met within {deadline}s")
        await asyncio.sleep(0.05)
