"""A real daemon in the test's event loop: started on a file with its API on
a free port, stopped (with its writes finished) when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from waiting import DEADLINE_S, until

from watchdog.daemon import Daemon

__all__ = ["started"]


@contextlib.asynccontextmanager
async def started(path: Path, *, ready: bool = True, **options: Any) -> AsyncIterator[Daemon]:
    """`async with started(FILE) as daemon:` a `Daemon` on FILE serving on
    127.0.0.1 (port 0), once its API answers /-/healthy (with `ready`,
    /-/ready: every probe has reported); `options` go to `Daemon` (a clock,
    a registry, where it listens)."""
    daemon = Daemon(path, **{"listen": ("127.0.0.1", 0), **options})
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: daemon.port)
        # The API answers from its own process, a moment behind the daemon.
        url = f"http://127.0.0.1:{daemon.port}/-/{'ready' if ready else 'healthy'}"
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:

            async def answering() -> bool:
                try:
                    return (await client.get(url)).status_code == 200
                except httpx.TransportError:
                    return False

            await until(answering, awaited=f"{url} answering 200")
        if ready:
            await until(daemon.ready)
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, DEADLINE_S)
