"""Local endpoints for the demo estate: a few services that answer, and one
that fails, on 127.0.0.1 only. Stop with Ctrl-C (make demo does it for you).

    python examples/demo/targets.py [--port 8180]
"""

from __future__ import annotations

import argparse
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8180)
    args = parser.parse_args()
    tcp = _TcpServer(("127.0.0.1", args.port + 1), Echo)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    http = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"demo targets on http://127.0.0.1:{args.port} and tcp 127.0.0.1:{args.port + 1}")
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        http.server_close()
        tcp.shutdown()


if __name__ == "__main__":
    main()
