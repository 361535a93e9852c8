"""The `exec` probe: run a command, Nagios plugin convention, so the thousands
of existing plugins work as probes. Exit 0 is up, 1 degraded, 2 down, 3 or
anything else unknown; the first line of output is the reason."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from topology import State
from watchdog.probes.result import (
    ProbeResult,
    inconclusive,
    local_trouble,
    shorten,
    timeout_reason,
)

__all__ = ["INHERITED_ENV", "ExecProbe", "ExecSpec"]

log = logging.getLogger(__name__)

_STATES = {0: State.UP, 1: State.DEGRADED, 2: State.DOWN, 3: State.UNKNOWN}
# Only the first line of stdout is used (and the end of stderr when stdout is
# empty); the rest is read and dropped.
_MAX_STDOUT_BYTES = 8192
_MAX_STDERR_BYTES = 4096
# After SIGKILL, processes are gone in milliseconds, unless one is stuck in
# the kernel (a hung NFS mount): then the probe gives up waiting and closes
# the pipes, so it ends close to its timeout whatever happens.
_REAP_GRACE_S = 0.25
# What a command inherits of the daemon's environment: enough to find
# programs and speak the locale, never the daemon's secrets (a Slack token
# from `token_env`) that a third-party plugin has no business reading.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
)


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """The command an `exec` probe runs (no shell: `argv[0]` is looked up on
    `PATH`) and the time it has before it is killed with all its children."""

    argv: tuple[str, ...]
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise ValueError("a command is needed")
        if any("\0" in arg for arg in self.argv):
            raise ValueError("a command cannot hold a NUL character")
        # `not x > 0` refuses NaN too; infinity has no deadline to compute.
        if not 0 < self.timeout_s < math.inf:
            raise ValueError(f"timeout must be positive and finite, not {self.timeout_s}")


class ExecProbe:
    """Checks a target by running a command per `ExecSpec`, with `env` as its
    whole environment (by default, the daemon's `INHERITED_ENV` variables)."""

    def __init__(self, spec: ExecSpec, env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        if env is None:
            env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
            env.setdefault("PATH", os.defpath)
        self.env = dict(env)

    async def check(self) -> ProbeResult:
        """Run the command and judge its exit status (Nagios convention).

        A command that overruns its timeout is killed with its whole process
        group and reaped; the result is `down` (`timeout after 10s`), as
        Nagios does by default, since a hung check usually means a hung
        target. A command that cannot be started is `unknown` (`cannot run:
        ...`): the target's state is not known.
        """
        spec = self.spec
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        start = time.perf_counter()
        try:
            transport, output = await loop.subprocess_exec(
                lambda: _Output(done),
                *spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                # Its own session and process group, so a timeout kills the
                # command and everything it started, and nothing else.
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            local = local_trouble(exc, spawning=True)
            if local is not None:
                return inconclusive(*local)
            error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return ProbeResult(
                State.UNKNOWN, shorten(f"cannot run: {spec.argv[0]}: {error.lower()}")
            )
        try:
            return await self._supervise(transport, output, start)
        except Exception as exc:
            # Not the arguments: they may carry credentials (check_mysql -p).
            log.exception("probe=exec command=%s unexpected error", spec.argv[0])
            return ProbeResult(State.UNKNOWN, f"probe error: {type(exc).__name__}")
        finally:
            # Also frees the pipes a process that left the group still holds.
            transport.close()

    async def _supervise(
        self, transport: asyncio.SubprocessTransport, output: _Output, start: float
    ) -> ProbeResult:
        finished = False
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                # Shielded: the deadline must not cancel `done`, which is
                # awaited again while the group is killed.
                await asyncio.shield(output.done)
            finished = True
        except TimeoutError:
            pass  # judged below, once the group is killed
        finally:
            if not finished:
                await _kill_group(transport.get_pid(), output.done)
        returncode = transport.get_returncode()
        if not finished or returncode is None:
            return ProbeResult(State.DOWN, timeout_reason(self.spec.timeout_s))
        latency = time.perf_counter() - start
        return _judge(returncode, bytes(output.stdout), bytes(output.stderr), latency)


class _Output(asyncio.SubprocessProtocol):
    """Keeps the first bytes of stdout and the last of stderr (dropping the
    rest as it comes, so a chatty command never blocks on a full pipe nor
    fills memory), and resolves `done` once the command has exited and every
    holder of its pipes has closed them."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.stdout = bytearray()
        self.stderr = bytearray()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        if fd == 1:
            room = _MAX_STDOUT_BYTES - len(self.stdout)
            if room > 0:
                self.stdout += chunk[:room]
        elif fd == 2:
            self.stderr += chunk
            del self.stderr[:-_MAX_STDERR_BYTES]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _judge(returncode: int, stdout: bytes, stderr: bytes, latency: float) -> ProbeResult:
    line = _first_line(stdout) or _last_line(stderr)
    if returncode in _STATES:
        if not line:
            line = "ok" if returncode == 0 else f"no output (exit {returncode})"
        return ProbeResult(_STATES[returncode], shorten(line), latency)
    if returncode < 0:
        try:
            how = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"killed by signal {-returncode}"
    else:
        how = f"exit {returncode}"
    return ProbeResult(State.UNKNOWN, shorten(f"{how}: {line}" if line else how), latency)


def _first_line(output: bytes) -> str:
    """The first line, without the performance data after `|`."""
    line = output.split(b"\n", 1)[0].decode(errors="replace")
    return line.split("|", 1)[0].strip()


def _last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").splitlines()
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


async def _kill_group(pid: int, done: asyncio.Future[None]) -> None:
    """Kill the command's process group and wait (bounded) for the command
    to be reaped and its pipes closed: a process stuck in the kernel (a hung
    NFS mount) cannot hold the probe."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group is gone already
    except PermissionError:
        log.warning("probe=exec pid=%d cannot kill the process group", pid)
    try:
        async with asyncio.timeout(_REAP_GRACE_S):
            await asyncio.shield(done)
    except TimeoutError:
        log.warning("probe=exec pid=%d still running after SIGKILL", pid)
