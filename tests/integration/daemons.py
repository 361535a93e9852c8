"""A real daemon in the test's event loop: started on a file with its API on
a free port, stopped (with its writes finished) when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from waiting import DEADLINE_S, until

from watchdog.daemon import Daemon

__all__ = ["started"]


@contextlib.asynccontextmanager
async def started(path: Path, *, ready: bool = True, **options: Any) -> AsyncIterator[Daemon]:
    """`async with started(FILE) as daemon:` a `Daemon` on FILE serving on
    127.0.0.1 (port 0), once it serves and, with `ready`, once every probe
    has reported; `options` go to `Daemon` (a clock, a registry)."""
    daemon = Daemon(path, listen=("127.0.0.1", 0), **options)
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: daemon.port)
        if ready:
            await until(daemon.ready)
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, DEADLINE_S)
