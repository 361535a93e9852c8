"""The daemon's own limits: at start, as many file descriptors as the
system allows it (systemd's default soft limit, 1,024, is a few hundred
probes and connections)."""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_fd_limit"]

log = logging.getLogger(__name__)


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE of this process to its hard limit and
    return the soft limit before and after. Never raises: when the limit
    cannot be read or raised it logs why and returns what it has (after ==
    before when nothing changed; (-1, -1) when the limit cannot be read)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as err:
        log.warning("cannot read the descriptor limit error=%s", err)
        return -1, -1
    if hard == resource.RLIM_INFINITY:
        # Linux never gives an infinite hard limit for descriptors; where one
        # is given (macOS), a finite soft limit is all the kernel accepts.
        log.info("descriptor limit left soft=%d hard=unlimited", soft)
        return soft, soft
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as err:
        log.warning("cannot raise the descriptor limit soft=%d hard=%d error=%s", soft, hard, err)
        return soft, soft
    log.info("descriptor limit raised soft=%d->%d", soft, hard)
    return soft, hard
