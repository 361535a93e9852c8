"""The API process: the HTTP API served on its own core, from a mirror of
the daemon's state that the daemon keeps up to date, so that no request,
however large its answer, takes time from the probes.

Started by the daemon (`watchdog.api_link`) as `python -m
watchdog.api_process CONN_FD LISTEN_FD`: CONN_FD is its end of a socket
pair to the daemon, LISTEN_FD the socket the daemon bound for the API. It
ends when the daemon says so or goes away (the pair closes); it ignores
SIGTERM and SIGINT, which the daemon gets too and answers by stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from watchdog.api import Busy, CallRefused, create_app
from watchdog.http_server import ApiCounts, ApiServer
from watchdog.logs import Secrets, configure
from watchdog.snapshot import Mirror, Update, View, view_of

__all__ = ["STALE_S", "Remote", "main"]

log = logging.getLogger(__name__)

# The daemon sends an update at least every second: past this without one,
# its loop is stuck (or it is gone), and /-/healthy says so.
STALE_S = 10.0
# How long a call waits for the daemon before the API answers 503.
CALL_TIMEOUT_S = 10.0


class Remote:
    """The daemon as the API sees it from its own process: a `Mirror` of
    its state (updates applied on the API's loop) and calls carried over
    the socket pair. Implements `watchdog.api.Backend`."""

    def __init__(self, conn: Connection, api_token: str | None) -> None:
        self.api_token = api_token
        self._conn = conn
        self._send_lock = threading.Lock()
        self._mirror = Mirror()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._idents = itertools.count(1)
        self._view: View | None = None
        self._lock: asyncio.Lock | None = None
        self._first = asyncio.Event()  # set on the API's loop at the first update
        self.server: ApiServer | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Apply updates and answers on `loop` (the API server's)."""
        self._loop = loop

    # --- Backend ---------------------------------------------------------

    def healthy(self) -> bool:
        """The daemon was heard from lately and says its loop and scheduler
        tick."""
        mirror = self._mirror
        update, received = mirror.update, mirror.received_at
        if update is None or received is None:
            return False
        return update.healthy and time.monotonic() - received <= STALE_S

    def ready(self) -> bool:
        """The daemon says every probe has reported."""
        return self._mirror.ready

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def api_counts(self) -> ApiCounts | None:
        """What the HTTP server's defences did, for /metrics."""
        return self.server.counts() if self.server is not None else None

    async def view(self) -> View:
        """The daemon's state as of the latest update, worked out once per
        update (in a worker thread: evaluating 10,000 nodes takes a while)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self._mirror.update is None:
            # Just started: the daemon's first update is on its way.
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await self._first.wait()
            except TimeoutError:
                raise Busy("the daemon has not sent its state yet") from None
        async with self._lock:  # one at a time: the next caller takes the same
            mirror = self._mirror
            if self._view is not None and self._view.version == mirror.version:
                return self._view
            copied = mirror.copy()
            if copied is None:
                raise Busy("the daemon has not sent its state yet")
            self._view = await asyncio.to_thread(view_of, *copied)
            return self._view

    async def call(self, op: str, **args: Any) -> Any:
        """Have the daemon do `op`; its answer, `CallRefused` when it
        refuses, `Busy` when it does not answer within CALL_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        ident = next(self._idents)
        future: asyncio.Future[Any] = loop.create_future()
        self._calls[ident] = future
        try:
            with self._send_lock:
                self._conn.send(("call", ident, op, args))
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await future
        except TimeoutError:
            raise Busy(f"the daemon did not answer within {CALL_TIMEOUT_S:g}s") from None
        except OSError:
            raise Busy("the daemon is gone") from None
        finally:
            self._calls.pop(ident, None)

    # --- from the daemon -----------------------------------------------------

    def receive(self) -> None:
        """Take the daemon's messages until it says stop or goes away."""
        while True:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                return
            if kind == "stop":
                return
            if kind == "update" and isinstance(payload, Update):
                self._on_loop(self._apply, payload, time.monotonic())
            elif kind == "answer":
                self._on_loop(self._answered, *payload)

    def _on_loop(self, function: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # The loop may close meanwhile: stopping.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(function, *args)

    def _apply(self, update: Update, at: float) -> None:
        self._mirror.apply(update, at)
        self._first.set()

    def _answered(self, ident: int, status: str, value: Any) -> None:
        future = self._calls.get(ident)
        if future is None or future.done():
            return  # it timed out meanwhile
        if status == "ok":
            future.set_result(value)
        elif status == "refused":
            code, message = value
            future.set_exception(CallRefused(code, message))
        else:
            future.set_exception(RuntimeError(f"the daemon failed: {value}"))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the API until the daemon says stop or goes away."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The daemon gets these too (a terminal's Ctrl-C, systemd's stop) and
    # stops this process itself, after its own writes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Threads here build large answers while /-/healthy waits for its turn:
    # a shorter turn (5 ms by default) keeps health answers quick.
    sys.setswitchinterval(0.001)
    conn = Connection(int(args[0]))
    listener = socket.socket(fileno=int(args[1]))
    try:
        kind, text = conn.recv()
    except (EOFError, OSError):
        return 0  # the daemon went away before it said anything
    settings = json.loads(text) if kind == "settings" else {}
    configure(settings.get("log_format", "text"), secrets=Secrets(settings.get("secrets", ())))
    remote = Remote(conn, settings.get("api_token"))
    host, port = listener.getsockname()[:2]
    server = ApiServer(create_app(remote), host, port, sock=listener, **settings.get("limits", {}))
    remote.server = server
    server.start()
    remote.attach(server.loop)
    try:
        remote.receive()
    finally:
        server.stop(1.0)
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
