"""A request the daemon will not carry out, and the HTTP status that says so."""

from __future__ import annotations

__all__ = ["Refused"]


class Refused(Exception):
    """A request that cannot be taken: the message is for people, `status`
    the HTTP status the API answers with (400 unless it says otherwise)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
