"""Raw HTTP/1.1 for the tests' own servers: read a request off a stream,
write an answer, and a keep-alive handler that records what it was sent.
Raw, so that tests can also answer what no framework would send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Recorder", "Request", "read_request", "response"]

# Bounds every keep-alive loop of a test server.
MAX_REQUESTS_PER_CONNECTION = 100


@dataclass(frozen=True)
class Request:
    """One request as received."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request:
    """The next request on `reader` (headers lower-cased, the body read by
    its Content-Length); `IncompleteReadError` when the client hung up."""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, target, headers, body)


def response(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 answer with a Content-Length."""
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Recorder:
    """A keep-alive HTTP/1.1 server's handler that records each request and
    answers it with `route`."""

    route: Callable[[Request], bytes] = lambda _: response(200)
    requests: list[Request] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                return  # the client closed its connection
            self.requests.append(request)
            writer.write(self.route(request))
            await writer.drain()
