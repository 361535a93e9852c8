"""A real `watchdog run` process for the tests that need one (signals,
descriptor limits, a kill, a restart): started with its output in a log
file, asked over HTTP whether it answers, and always stopped (SIGTERM,
then SIGKILL past the deadline) when the block ends; and a TCP target on
loopback that accepts every connection and closes it."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
from waiting import PROCESS_DEADLINE_S, WATCHDOG

__all__ = ["accepting", "answers", "daemon", "flagged", "start", "stop"]


def flagged(flag: Path) -> str:
    """A shell check in the Nagios convention for an `exec:` probe: up
    (exit 0) while the file `flag` exists, down (exit 2) once it is gone, so
    that a test turns a target off and on with `unlink()` and `touch()`."""
    return f"[ -e {flag} ] && echo 'OK - fine' || {{ echo 'CRITICAL - off'; exit 2; }}"


def start(path: Path, log: Path, *, prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`watchdog run FILE` (after `prefix`, e.g. a shell setting a limit),
    its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen([*prefix, WATCHDOG, "run", str(path)], stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL if it has not ended by the deadline; its exit
    status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=PROCESS_DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=PROCESS_DEADLINE_S)


@contextlib.contextmanager
def daemon(
    path: Path, log: Path, *, prefix: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """`with daemon(FILE, LOG) as process:` a running `watchdog run`,
    stopped when the block ends."""
    process = start(path, log, prefix=prefix)
    try:
        yield process
    finally:
        stop(process)


def answers(url: str, path: str = "/-/ready") -> bool:
    """Whether the daemon at `url` answers `path` with 200 (False while it
    is not listening yet)."""
    try:
        return httpx.get(f"{url}{path}", timeout=5, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def accepting() -> Iterator[int]:
    """A TCP server on loopback, on a thread of its own, that accepts every
    connection and closes it: a target that is always up. Its port."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()
