"""The `tcp` probe: connect to host:port, optionally send a line and expect a
reply line containing some text, then close."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from topology import State
from watchdog.probes.result import (
    ProbeResult,
    apply_latency_threshold,
    describe_os_error,
    inconclusive,
    local_trouble,
    shorten,
    timeout_reason,
)

__all__ = ["TcpProbe", "TcpSpec"]

log = logging.getLogger(__name__)

# A reply line is judged on its first bytes; a peer that never sends a
# newline cannot make the probe buffer without bound.
_MAX_REPLY_BYTES = 4096
_MAX_QUOTED_REPLY = 60
# Closing waits this long for the peer to take the close; past it, the
# connection is dropped, so the probe ends close to its timeout.
_CLOSE_GRACE_S = 0.25


@dataclass(frozen=True, slots=True)
class TcpSpec:
    """Where a `tcp` probe connects and what it says.

    `host` is a name or an address, IPv6 literals with or without brackets
    (`::1`, `[::1]`). `send` is sent as one line, ended with CRLF unless it
    already ends with a newline; `expect` is looked for in the first reply line
    (with no `send`, the line the server greets with). `timeout_s` bounds the
    whole exchange.
    """

    host: str
    port: int
    send: str | None = None
    expect: str | None = None
    timeout_s: float = 5.0
    latency_threshold_s: float | None = None

    def __post_init__(self) -> None:
        if self.host.startswith("[") and self.host.endswith("]"):
            object.__setattr__(self, "host", self.host[1:-1])
        if not self.host:
            raise ValueError("host must not be empty")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range 1-65535")
        # `not x > 0` refuses NaN too; infinity has no deadline to compute.
        if not 0 < self.timeout_s < math.inf:
            raise ValueError(f"timeout must be positive and finite, not {self.timeout_s}")
        if self.latency_threshold_s is not None and not 0 < self.latency_threshold_s < math.inf:
            raise ValueError(f"latency_threshold must be positive, not {self.latency_threshold_s}")


class TcpProbe:
    """Checks one TCP endpoint per `TcpSpec`."""

    def __init__(self, spec: TcpSpec) -> None:
        self.spec = spec

    async def check(self) -> ProbeResult:
        """Connect (and converse, when the spec says so), judged: `up`,
        `degraded` when slow, `down` with the reason (`connect refused`,
        `timeout after 3s`, `reply lacks "PONG" (got "-ERR")`...)."""
        spec = self.spec
        writer: asyncio.StreamWriter | None = None
        clean = False
        start = time.perf_counter()
        try:
            async with asyncio.timeout(spec.timeout_s):
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
                result = await self._converse(reader, writer, start)
                clean = True
        except TimeoutError:
            return ProbeResult(State.DOWN, timeout_reason(spec.timeout_s))
        except OSError as exc:
            local = local_trouble(exc)
            if local is not None:
                return inconclusive(*local)
            reason = describe_os_error(exc, spec.host) or shorten(str(exc)) or "connect failed"
            return ProbeResult(State.DOWN, reason)
        except Exception as exc:
            log.exception("probe=tcp host=%s port=%d unexpected error", spec.host, spec.port)
            return ProbeResult(State.UNKNOWN, f"probe error: {type(exc).__name__}")
        finally:
            if writer is not None:
                await _close(writer, abort=not clean)
        return apply_latency_threshold(result, spec.latency_threshold_s)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: float
    ) -> ProbeResult:
        spec = self.spec
        if spec.send is not None:
            line = spec.send if spec.send.endswith("\n") else spec.send + "\r\n"
            writer.write(line.encode())
            await writer.drain()
        if spec.expect is None:
            return ProbeResult(State.UP, "ok", time.perf_counter() - start)
        reply = await _read_line(reader)
        if reply is None:
            return ProbeResult(State.DOWN, "connection closed without a reply")
        latency = time.perf_counter() - start
        if spec.expect not in reply:
            expected = shorten(spec.expect, 40)
            got = shorten(reply, _MAX_QUOTED_REPLY)
            return ProbeResult(State.DOWN, f'reply lacks "{expected}" (got "{got}")', latency)
        return ProbeResult(State.UP, "ok", latency)


async def _read_line(reader: asyncio.StreamReader) -> str | None:
    """The first line the peer sends (or its first bytes, when it closes or
    sends too much before a newline); `None` when it closes having sent nothing."""
    data = bytearray()
    while b"\n" not in data and len(data) < _MAX_REPLY_BYTES:
        chunk = await reader.read(_MAX_REPLY_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    if not data:
        return None
    line = bytes(data).split(b"\n", 1)[0]
    return line.decode(errors="replace").rstrip("\r")


async def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Close the connection and wait until it is closed: gracefully after a
    good exchange, at once after a failure (the peer may not be reading)."""
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    try:
        async with asyncio.timeout(_CLOSE_GRACE_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass  # the peer reset a connection we were closing anyway
