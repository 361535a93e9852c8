"""What a probe returns, and the words its reasons share: timeouts, slowness,
socket errors, shortened text. A failed probe is a result, never an exception."""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, replace

from topology import State, format_duration

__all__ = [
    "LOCAL_CAUSES",
    "ProbeResult",
    "apply_latency_threshold",
    "describe_os_error",
    "inconclusive",
    "is_timeout",
    "local_trouble",
    "shorten",
    "timeout_reason",
]

# Reasons are read by people in alerts and on the status page: one short line.
_MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one check of a target.

    `reason` is short and for people (`ok`, `connect refused`, `status 503`,
    `timeout after 3s`); `latency_s` is how long the target took to answer in
    full, `None` when it did not answer (refused, reset, timed out).
    `anomalies` are the early signs behind a degraded result (log anomalies,
    a latency regression), each one line, which make it an anomaly alert
    rather than an outage. `tls_expires_at` is when the certificate of an
    https target's connection expires (seconds since the epoch), `None`
    without one.
    """

    state: State
    reason: str
    latency_s: float | None = None
    anomalies: tuple[str, ...] = ()
    # Non-empty when the run says nothing about the target because of the
    # watchdog's own trouble (one of LOCAL_CAUSES): the state is unknown and
    # the probe keeps its verdict.
    inconclusive: str = ""
    tls_expires_at: float | None = None


def apply_latency_threshold(result: ProbeResult, threshold_s: float | None) -> ProbeResult:
    """`result`, made `degraded` when it is otherwise `up` and its latency is
    over `threshold_s` (`slow: 812ms over 500ms`); failures are left as they are."""
    if (
        threshold_s is None
        or result.state is not State.UP
        or result.latency_s is None
        or result.latency_s <= threshold_s
    ):
        return result
    reason = f"slow: {format_duration(result.latency_s)} over {format_duration(threshold_s)}"
    return replace(result, state=State.DEGRADED, reason=reason)


def timeout_reason(timeout_s: float) -> str:
    """`timeout after 3s`, the timeout written the way the file writes it."""
    return f"timeout after {format_duration(timeout_s)}"


def is_timeout(result: ProbeResult) -> bool:
    """Whether `result` is a target that did not answer within the probe's
    timeout (the words of `timeout_reason`)."""
    return result.state == State.DOWN and result.reason.startswith("timeout after ")


# Errors about the watchdog's own resources, never the target's: the
# metrics' `cause` label and the words for people.
_LOCAL_ERRNOS = {
    errno.EMFILE: ("descriptors", "the watchdog is out of file descriptors (EMFILE)"),
    errno.ENFILE: ("descriptors", "the system is out of file descriptors (ENFILE)"),
    errno.ENOBUFS: ("buffers", "the system is out of socket buffers (ENOBUFS)"),
    errno.ENOMEM: ("memory", "the watchdog is out of memory (ENOMEM)"),
    errno.EADDRNOTAVAIL: ("ports", "no local address or port left (EADDRNOTAVAIL)"),
    errno.EAGAIN: ("processes", "the watchdog cannot start a process now (EAGAIN)"),
}
# Every cause a run can be inconclusive for; bounded, for metrics labels.
LOCAL_CAUSES = (
    "descriptors",
    "buffers",
    "memory",
    "ports",
    "processes",
    "connections",
    "stall",
    "cut_off",
)


def local_trouble(exc: BaseException, *, spawning: bool = False) -> tuple[str, str] | None:
    """(cause, words) when the failure behind `exc` is the watchdog's own:
    out of descriptors, buffers, memory or local ports (and, when
    `spawning` a command, of processes); None when it may be the target's."""
    for error in _chain(exc):
        if not isinstance(error, OSError):
            continue
        codes = (
            [error.errno]
            if error.errno is not None
            else [int(c) for c in _ERRNO_IN_TEXT.findall(str(error))]
        )
        for code in codes:
            if code == errno.EAGAIN and not spawning:
                continue  # a socket's EAGAIN is not a shortage
            if code in _LOCAL_ERRNOS:
                return _LOCAL_ERRNOS[code]
    return None


def inconclusive(cause: str, words: str) -> ProbeResult:
    """A run that says nothing about its target: the watchdog's own
    trouble (`cause`, one of LOCAL_CAUSES) is to blame."""
    return ProbeResult(State.UNKNOWN, f"no verdict: {words}", None, inconclusive=cause)


def shorten(text: str, limit: int = _MAX_REASON) -> str:
    """`text` on one line, at most `limit` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connect refused",
    errno.ECONNRESET: "connection reset",
    errno.EPIPE: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.ETIMEDOUT: "connect timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTDOWN: "host down",
    errno.EADDRNOTAVAIL: "address not available",
}

# asyncio (before Python 3.12) folds the failures of every address of a host
# into one `OSError('Multiple exceptions: [Errno 111] ..., [Errno 111] ...')`
# without an errno; the codes survive only in the text.
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")


def describe_os_error(exc: BaseException, host: str | None = None) -> str | None:
    """A short reason for the socket-level failure behind `exc` (found in its
    causes, contexts and exception groups): `connect refused`, `connection
    reset`, `cannot resolve HOST`, `tls: certificate has expired`...; `None`
    when no such failure is behind it."""
    reasons: list[str] = []
    for error in _chain(exc):
        reason = _describe_one(error, host)
        if reason is not None and reason not in reasons:
            reasons.append(reason)
    return ", ".join(reasons) if reasons else None


def _describe_one(error: BaseException, host: str | None) -> str | None:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"tls: {error.verify_message or 'certificate verify failed'}"
    if isinstance(error, ssl.SSLError):
        detail = (error.reason or error.strerror or "handshake failed").lower()
        return f"tls: {detail.replace('_', ' ')}"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host}" if host else "cannot resolve host"
    if not isinstance(error, OSError):
        return None
    if error.errno is not None:
        return _ERRNO_REASONS.get(error.errno) or (error.strerror or str(error)).lower()
    codes = [int(code) for code in _ERRNO_IN_TEXT.findall(str(error))]
    described = [_ERRNO_REASONS.get(code, f"errno {code}") for code in codes]
    return ", ".join(dict.fromkeys(described)) or None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The innermost failures behind `exc`: leaves of its cause/context chain,
    every member of an exception group."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup):
            stack.extend(reversed(error.exceptions))
            continue
        inner = error.__cause__ or error.__context__
        # An OSError with an errno is the failure itself, whatever it wraps.
        if inner is None or (isinstance(error, OSError) and error.errno is not None):
            yield error
        else:
            stack.append(inner)
