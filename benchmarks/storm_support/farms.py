"""The farms of benchmarks/storm.py: one TCP listener on 127.0.0.1 per farm
that accepts each connection and closes it, in a process of its own so that
its CPU is never charged to the daemon.

    python benchmarks/storm_support/farms.py farm-0000 farm-0001 ...

prints one JSON line `{"farm-0000": PORT, ...}` once every listener is up,
then reads commands on stdin, one per line: `kill NAME` closes that farm's
listener (connections to it are then refused) and answers `killed NAME`.
The end of stdin stops the process. A plain selector loop, not asyncio
streams: a thousand connections per second cost it a few percent of a core.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys
from collections.abc import Sequence

__all__ = ["main"]

BACKLOG = 4096
ACCEPTS_PER_WAKE = 256  # bounded, so a busy farm does not starve the others


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the farms named in `argv` until stdin ends."""
    names = list(sys.argv[1:] if argv is None else argv)
    selector = selectors.DefaultSelector()
    listeners: dict[str, socket.socket] = {}
    for name in names:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, name)
        listeners[name] = sock
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    selector.register(stdin, selectors.EVENT_READ, None)
    ports = {name: sock.getsockname()[1] for name, sock in listeners.items()}
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.data is None:
                try:
                    chunk = os.read(stdin, 4096)
                except BlockingIOError:
                    continue
                if not chunk:
                    return 0
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        _command(line.decode().strip(), listeners, selector)
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            for _ in range(ACCEPTS_PER_WAKE):
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # out of descriptors or the like: the next wake retries
                conn.close()


def _command(
    line: str, listeners: dict[str, socket.socket], selector: selectors.BaseSelector
) -> None:
    verb, _, name = line.partition(" ")
    if verb == "kill" and name in listeners:
        sock = listeners.pop(name)
        selector.unregister(sock)
        sock.close()
        answer = f"killed {name}"
    else:
        answer = f"error: unknown command {line!r}"
    sys.stdout.write(answer + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
