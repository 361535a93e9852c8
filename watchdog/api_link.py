"""The API process seen from the daemon: started on a socket bound here (a
busy port is refused before anything else starts), told what changes
(`watchdog.snapshot.Update`), asked for what only the daemon can do (reads
of the store, maneuvers, silences, reload), started again if it dies.

Two threads carry the messages, so that the daemon's loop never waits on
the pipe: a sender (updates not yet taken are merged into one, so a slow
reader costs memory for one update, not a queue) and a receiver (each call
is run on the daemon's loop, its answer queued for the sender)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from watchdog.http_server import ApiLimits, listen
from watchdog.snapshot import Update, merge

__all__ = ["ApiLink", "CallError", "Settings"]

log = logging.getLogger(__name__)

# How long the API process has to stop before it is killed.
_STOP_GRACE_S = 1.5
# Restarts of a dying API process are spaced by at least this.
_RESTART_PAUSE_S = 1.0

# A call from the API process: `await handler(op, args)` on the daemon's loop.
Handler = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


class CallError(Exception):
    """A call the daemon refused, with the HTTP status the API answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Settings:
    """What the API process needs to know besides the updates."""

    limits: ApiLimits
    api_token: str | None
    log_format: str
    secrets: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """For the first message to the API process."""
        limits = self.limits
        return {
            "limits": {
                "max_connections": limits.max_connections,
                "header_timeout_s": limits.header_timeout_s,
                "body_timeout_s": limits.body_timeout_s,
                "idle_timeout_s": limits.idle_timeout_s,
                "max_body_bytes": limits.max_body_bytes,
            },
            "api_token": self.api_token,
            "log_format": self.log_format,
            "secrets": list(self.secrets),
        }


class ApiLink:
    """Runs the API process for the daemon: `start()` (in the daemon's
    loop) binds and spawns it, `publish(update)` sends what changed,
    `stop()` ends it. Calls from it go to `handler`; when it has to start
    again (it died), `resync()` is called for a whole update."""

    def __init__(
        self,
        host: str,
        port: int,
        settings: Settings,
        handler: Handler,
        resync: Callable[[], Update],
    ) -> None:
        self.host = host
        self._port = port
        self._settings = settings
        self._handler = handler
        self._resync = resync
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: deque[tuple[str, Any]] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._watch: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def port(self) -> int:
        """The port bound (the one asked for before `start`)."""
        return self._port

    @property
    def running(self) -> bool:
        """The API process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Bind (`ListenError` when the address is taken) and start the API
        process; call in the daemon's loop."""
        self._loop = asyncio.get_running_loop()
        self._socket = listen(self.host, self._port)
        self._port = int(self._socket.getsockname()[1])
        self._spawn()
        sender = threading.Thread(target=self._send_loop, name="watchdog-api-send", daemon=True)
        sender.start()
        self._threads.append(sender)
        self._watch = asyncio.create_task(self._watch_process())

    def publish(self, update: Update) -> None:
        """Send `update` (merged with one not yet sent); never blocks."""
        with self._wake:
            if self._outbox and self._outbox[-1][0] == "update":
                _, pending = self._outbox.pop()
                update = merge(pending, update)
            self._outbox.append(("update", update))
            self._wake.notify()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the API process to stop, kill it past `timeout_s`."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        with self._wake:
            self._outbox.append(("stop", None))
            self._wake.notify()
        process = self._process
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, min(timeout_s, _STOP_GRACE_S))
            except subprocess.TimeoutExpired:
                log.warning("api process did not stop in time: killed pid=%d", process.pid)
                process.kill()
                await asyncio.to_thread(process.wait, 1.0)
        with self._wake:
            self._wake.notify_all()
        if self._conn is not None:
            self._conn.close()
        if self._socket is not None:
            self._socket.close()

    # --- the process -------------------------------------------------------

    def _spawn(self) -> None:
        assert self._socket is not None
        ours, theirs = socket.socketpair()
        listener = self._socket.fileno()
        command = [
            sys.executable,
            "-m",
            "watchdog.api_process",
            str(theirs.fileno()),
            str(listener),
        ]
        try:
            self._process = subprocess.Popen(
                command, pass_fds=(theirs.fileno(), listener), stdin=subprocess.DEVNULL
            )
        finally:
            theirs.close()
        self._conn = Connection(os.dup(ours.fileno()))
        ours.close()
        # The first messages: the settings, then the whole state.
        with self._wake:
            self._outbox.appendleft(("update", self._resync()))
            self._outbox.appendleft(("settings", json.dumps(self._settings.to_json())))
            self._wake.notify()
        receiver = threading.Thread(
            target=self._receive_loop, args=(self._conn,), name="watchdog-api-recv", daemon=True
        )
        receiver.start()
        self._threads.append(receiver)

    async def _watch_process(self) -> None:
        """Start the API process again when it dies (the daemon goes on)."""
        while not self._stopping:
            await asyncio.sleep(_RESTART_PAUSE_S)
            process = self._process
            if process is None or process.poll() is None or self._stopping:
                continue
            self.restarts += 1
            log.error(
                "api process ended exit=%s: starting it again restarts=%d",
                process.returncode,
                self.restarts,
            )
            with self._wake:
                self._outbox.clear()  # what it did not take is in the resync
                old, self._conn = self._conn, None
            if old is not None:
                old.close()
            self._spawn()

    # --- the threads ---------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            with self._wake:
                while not self._outbox and not self._stopping:
                    self._wake.wait()
                if not self._outbox:
                    return  # stopping, nothing left
                kind, payload = self._outbox.popleft()
                conn = self._conn
            if conn is None:
                continue
            try:
                conn.send((kind, payload))
            except (OSError, ValueError):
                # The process died (the watcher starts another) or the link
                # closed at stop: what was not taken is resent whole.
                if self._stopping:
                    return
            if kind == "stop":
                return

    def _receive_loop(self, conn: Connection) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # it ended: the watcher sees to it
            try:
                kind, ident, op, args = message
            except (TypeError, ValueError):
                log.error("api process sent an unreadable message")
                continue
            if kind != "call":
                continue
            future = asyncio.run_coroutine_threadsafe(self._call(op, args), loop)
            future.add_done_callback(functools.partial(self._answer, ident))

    async def _call(self, op: str, args: Mapping[str, Any]) -> Any:
        return await self._handler(op, args)

    def _answer(self, ident: int, done: Any) -> None:
        try:
            answer = ("ok", done.result())
        except CallError as err:
            answer = ("refused", (err.status, str(err)))
        except Exception as err:  # a bug: the API answers 500, the daemon goes on
            log.error("api call failed ident=%d error=%s", ident, type(err).__name__)
            answer = ("failed", type(err).__name__)
        with self._wake:
            self._outbox.append(("answer", (ident, *answer)))
            self._wake.notify()
