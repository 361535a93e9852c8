"""Raising the descriptor limit at start, in a process of its own started
with low limits (as systemd starts the daemon: soft 1,024)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Prints what raise_fd_limit returned, the limits after and what it logged.
_CHILD = """
import json, logging, resource, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
from watchdog.resources import raise_fd_limit
{prelude}
got = raise_fd_limit()
print(json.dumps({{"got": got, "now": resource.getrlimit(resource.RLIMIT_NOFILE)}}))
"""
# A bound on a child that only imports and calls one function.
_CHILD_TIMEOUT_S = 30


def run_child(soft: int, hard: int, prelude: str = "") -> tuple[dict[str, list[int]], list[str]]:
    """Run the child with RLIMIT_NOFILE (soft, hard): its answer and log lines."""

    # Set first thing in the child, as `ulimit -n` or systemd would have.
    limited = f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
    done = subprocess.run(
        [sys.executable, "-c", limited + _CHILD.format(prelude=textwrap.dedent(prelude))],
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT_S,
        check=True,
    )
    *logged, answer = done.stdout.splitlines()
    return json.loads(answer), logged


def test_it_raises_the_soft_limit_to_the_hard_one() -> None:
    answer, logged = run_child(256, 2048)
    assert answer == {"got": [256, 2048], "now": [2048, 2048]}
    assert logged == ["INFO descriptor limit raised soft=256->2048"]


def test_it_leaves_a_soft_limit_already_at_the_hard_one() -> None:
    answer, logged = run_child(1024, 1024)
    assert answer == {"got": [1024, 1024], "now": [1024, 1024]}
    assert logged == []


def test_a_refusal_is_logged_and_never_fails_the_start() -> None:
    # The kernel refusing (a container's seccomp policy, say), reproduced by
    # making the call fail as it would.
    prelude = """
    import errno, os
    def refuse(*_):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))
    resource.setrlimit = refuse
    """
    answer, logged = run_child(256, 2048, prelude)
    assert answer == {"got": [256, 256], "now": [256, 2048]}
    assert logged == [
        "WARNING cannot raise the descriptor limit soft=256 hard=2048"
        " error=[Errno 1] Operation not permitted"
    ]
