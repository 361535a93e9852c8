"""Local endpoints for the demo estate: a few services that answer, and one
that fails, on 127.0.0.1 only; and the order workflow's log, written beside
this file (logs/orders-workflow.log: requests, now and then an error).
Stop with Ctrl-C (make demo does it for you).

    python examples/demo/targets.py [--port 8180]
"""

from __future__ import annotations

import argparse
import random
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOG = Path(__file__).resolve().parent / "logs" / "orders-workflow.log"

# path -> (status, body): the search service is the overloaded one.
ANSWERS = {
    "/farm-oms-1": (200, b"ok\n"),
    "/orders-workflow/health": (200, b"ok: 1,204 orders in flight\n"),
    "/orders-search/health": (503, b"overloaded\n"),
    "/antifraud/health": (200, b"ok\n"),
    "/checkout/health": (200, b"ok\n"),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = ANSWERS.get(self.path, (404, b"no such endpoint\n"))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the daemon's log is the one to read


class Echo(socketserver.StreamRequestHandler):
    """A line-oriented TCP service: answers PING with PONG."""

    def handle(self) -> None:
        line = self.rfile.readline(100)
        if line.strip() == b"PING":
            self.wfile.write(b"PONG\n")


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # restart at once, whatever TIME_WAIT holds
    daemon_threads = True


def write_log(stop: threading.Event) -> None:
    """The workflow's log: a request line every 200 ms, an error now and then."""
    LOG.parent.mkdir(exist_ok=True)
    rng = random.Random()
    with LOG.open("a", buffering=1) as log:
        while not stop.wait(0.2):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            order = rng.randrange(10**6)
            if rng.random() < 0.02:
                log.write(f"{stamp} ERROR order {order}: payment gateway timeout after 3000ms\n")
            else:
                took = rng.randrange(20, 90)
                log.write(f"{stamp} INFO order {order} advanced to shipping in {took}ms\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8180)
    args = parser.parse_args()
    try:
        tcp = _TcpServer(("127.0.0.1", args.port + 1), Echo)
        http = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    except OSError as err:
        # One line, no traceback: another demo (or something else) has the port.
        reason = (err.strerror or str(err)).lower()
        print(f"demo targets: cannot listen on 127.0.0.1:{args.port}-{args.port + 1}: {reason}")
        return 3
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    stop = threading.Event()
    writer = threading.Thread(target=write_log, args=(stop,), daemon=True)
    writer.start()
    print(f"demo targets on http://127.0.0.1:{args.port} and tcp 127.0.0.1:{args.port + 1}")
    print(f"writing {LOG}")
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        http.server_close()
        tcp.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
