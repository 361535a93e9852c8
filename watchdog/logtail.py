"""Following log files: the reading half of the `log` probe.

`Follower` reads the complete lines appended to the files a path or glob
matches, like `tail -F`, and reports where it stopped (`Position`) so that a
restarted daemon resumes with no line read twice and none skipped. It is
plain synchronous file IO (no asyncio, no threads); the daemon may run
`Follower.read` in a worker thread, but one `Follower` must not be used by two
threads at once.

The contract:

- `pattern` is a path or a glob (`glob.glob`, re-expanded on every read and
  sorted; escape a literal path holding `*?[` with `glob.escape`). Files are
  tracked by (st_dev, st_ino), not by name, and read in binary mode; offsets
  are byte offsets.
- A file seen at the first read with no saved position starts at the end of
  its last complete line when `from_end` (like `tail -F`; an unfinished last
  line is delivered once finished), at its start otherwise. A file that
  appears later (new path, or a new inode at a known path) is new content and
  is read from its start.
- A saved position (`positions=`) whose dev+ino and head digest match the
  file resumes at its offset. A saved file rotated while the daemon was down
  is continued from its offset if its inode is among the matched files, or
  else (offset > 0 and head still matching) if it is found in the directory
  of its saved path; the file that now holds the path is read from its start.
  The inode matching but the file being shorter than the offset, or its head
  digest differing: a truncation, read from 0.
- Rotation by rename or deletion (the path holds a new inode, or nothing):
  the old file stays open and is drained to EOF, so lines written just
  before the rotation are not lost; it is kept open for
  `rotated_grace_reads` more reads (default 1) for the lines a writer adds
  before it reopens its log (logrotate's postrotate HUP), then its unfinished
  last line, if any, is delivered and it is closed. Its lines come before
  those of files that appeared after it. If the glob also matches the new
  name (`app.log*`), the renamed file simply goes on from its offset.
- Truncation and copytruncate: same inode and size < offset, or the digest
  of the first bytes already read (up to 256) changed: counted, read again
  from 0. A new file that starts with the same 256 bytes as a followed file
  read past them and truncated since (the copy of copytruncate, when the
  glob matches it) is read from that file's old offset, not from its start:
  the copy gives only the lines not read yet.
- An unfinished last line (no newline yet) is neither delivered nor counted
  in the offset until its newline arrives (see rotation for the exception).
- Lines are decoded as UTF-8 with errors="replace"; a line holding invalid
  UTF-8 or NUL bytes (NULs become U+FFFD) is counted in `invalid_utf8`. A
  CR before the newline (CRLF) is dropped.
- A line longer than `max_line_bytes` is delivered cut at that many bytes (on
  a character boundary) and counted in `long_lines`; the rest of it, up to
  its newline, is skipped without being buffered, also across a restart.
- One `read` reads at most `max_bytes_per_read` bytes of content (plus up to
  one unfinished line per file that is read again next time) and sets
  `more` when it stopped there; the next read starts with the file it
  stopped in, so a busy file does not starve the others.
- File-system trouble (permission denied, a directory or a FIFO matched, a
  file vanishing between glob and open, read errors) is reported in
  `Batch.errors`, never raised. A glob matching no regular file is
  `Batch.missing`, a finding.

- Compressed files (`.gz`, `.bz2`, `.xz`, `.zst`, `.lz4`, `.Z`) that the
  glob matches are left out unless the pattern itself names such a suffix:
  with `app.log*`, logrotate's `app.log.2.gz` is a rotation already read
  before it was compressed, not new text.

Known limits: lines a writer adds
to a rotated-away file after it was closed are lost, as with any `tail -F`;
a file whose st_dev changes (some remounts) is taken for a new file.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from watchdog.probes.result import local_trouble

__all__ = ["Batch", "Follower", "Position"]

_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")

# How many first bytes of a file the head digest covers.
_HEAD_BYTES = 256
# Big reads: a syscall and a split per MiB keep the per-line cost low.
_CHUNK_BYTES = 1 << 20
# How many closed files (renamed away, still linked) keep their position in
# memory, for when they come back under a matched name.
_GONE_MAX = 1024


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


_EMPTY_HEAD = _digest(b"")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading of one file stopped: identity of the file and the offset
    just past the last complete line handed out.

    `head` is a short hex digest of the file's first min(256, offset) bytes
    (bytes already read, which appending cannot change), so a rewrite is seen
    even when the file is no shorter. `in_long_line` says the offset lies
    inside a line already delivered cut at max_line_bytes, whose rest up to
    its newline is to be skipped.
    """

    path: str
    dev: int
    ino: int
    offset: int
    head: str
    in_long_line: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict that `from_json` turns back into an equal
        Position."""
        return {
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "offset": self.offset,
            "head": self.head,
            "in_long_line": self.in_long_line,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Position:
        """The Position `to_json` gave; ValueError for anything else (not a
        mapping, a field missing or of the wrong type, a negative number, a
        head that is not 16 lowercase hex digits)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a position is a JSON object, not {type(data).__name__}")
        try:
            path, dev, ino, offset, head = (
                data[k] for k in ("path", "dev", "ino", "offset", "head")
            )
        except KeyError as e:
            raise ValueError(f"a position needs {e.args[0]!r}") from None
        in_long_line = data.get("in_long_line", False)
        if not isinstance(path, str) or not path:
            raise ValueError("position path must be a non-empty string")
        for name, value in (("dev", dev), ("ino", ino), ("offset", offset)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"position {name} must be a non-negative integer")
        if not isinstance(head, str) or len(head) != 16 or not set(head) <= _HEX:
            raise ValueError("position head must be 16 lowercase hex digits")
        if not isinstance(in_long_line, bool):
            raise ValueError("position in_long_line must be a boolean")
        return cls(path, dev, ino, offset, head, in_long_line)


@dataclass(slots=True)
class Batch:
    """What one `Follower.read` found.

    `lines` are complete lines, without their newline, in order within each
    file; files rotated away come first, then the others in the order they
    were first seen (round-robin after a read that stopped early). `files`
    counts the regular files the glob matched (readable or not); `missing` is
    that count being 0. `bytes_read` counts bytes read from the files (an
    unfinished line is read again on the next read). `rotations` counts paths
    that lost the file followed there (renamed away or deleted, whether a new
    file took the path or not); a file renamed within the glob is not one.
    `more` says the read stopped at max_bytes_per_read and there may be more
    to read now (rarely a false alarm when the budget ran out exactly at the
    end).
    """

    lines: list[str] = field(default_factory=list)
    # A file could not be read for the watchdog's own shortage: (cause, words).
    local: tuple[str, str] | None = None
    files: int = 0
    missing: bool = False
    bytes_read: int = 0
    long_lines: int = 0
    invalid_utf8: int = 0
    rotations: int = 0
    truncations: int = 0
    errors: list[str] = field(default_factory=list)
    more: bool = False


@dataclass(slots=True, eq=False)
class _File:
    """One followed file: its open descriptor and where reading stopped."""

    path: str
    key: tuple[int, int]
    fd: int
    offset: int
    skipping: bool
    head: str = _EMPTY_HEAD
    head_len: int = 0
    # Set once the glob no longer finds it: reads left before it is closed.
    grace: int | None = None


@dataclass(frozen=True, slots=True)
class _Known:
    """A position of a file not open now: saved by a previous run, or of a
    file renamed out of the glob."""

    offset: int
    head: str
    skipping: bool


def _failed(batch: Batch, path: str, e: OSError) -> None:
    """`path` could not be read: the watchdog's own shortage (descriptors,
    memory) is not the file's fault, and is kept apart."""
    local = local_trouble(e)
    if local is not None:
        batch.local = local
    else:
        batch.errors.append(f"{path}: {_reason(e)}")


def _reason(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, FileNotFoundError):
        return "vanished before it could be read"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    return (e.strerror or type(e).__name__).lower()


class Follower:
    """Follows the files `pattern` matches; see the module docstring for the
    contract.

    `positions` are those a previous `positions()` returned (keys are
    ignored; each Position holds its path). Raises ValueError for
    max_line_bytes < 1 or max_bytes_per_read <= max_line_bytes (a line must
    fit in one read) or rotated_grace_reads < 0.
    """

    def __init__(
        self,
        pattern: str,
        *,
        positions: Mapping[str, Position] | None = None,
        from_end: bool = True,
        max_line_bytes: int = 16384,
        max_bytes_per_read: int = 8 * 1024 * 1024,
        rotated_grace_reads: int = 1,
    ) -> None:
        if not pattern:
            raise ValueError("pattern must not be empty")
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        if max_bytes_per_read <= max_line_bytes:
            raise ValueError("max_bytes_per_read must be larger than max_line_bytes")
        if rotated_grace_reads < 0:
            raise ValueError("rotated_grace_reads must not be negative")
        self.pattern = pattern
        self.from_end = from_end
        self.max_line_bytes = max_line_bytes
        self.max_bytes_per_read = max_bytes_per_read
        self.rotated_grace_reads = rotated_grace_reads
        # A chunk always holds a cut line plus one byte, so reading progresses.
        self._chunk = max(_CHUNK_BYTES, max_line_bytes + 1)
        # Followed files in the order they were first seen; that is the
        # order they are read in, so a rotated file's lines come first.
        self._files: dict[tuple[int, int], _File] = {}
        # Positions of files not open now, by (dev, ino).
        self._known: dict[tuple[int, int], _Known] = {}
        self._saved: dict[tuple[int, int], Position] = {}
        for p in (positions or {}).values():
            key = (p.dev, p.ino)
            self._saved[key] = p
            self._known[key] = _Known(p.offset, p.head, p.in_long_line)
        # Path -> file followed there, as of the previous read (or run).
        self._paths = {p.path: key for key, p in self._saved.items()}
        self._first = True
        self._resume: tuple[int, int] | None = None
        self._closed: dict[str, Position] | None = None

    # -- public -------------------------------------------------------------

    def read(self) -> Batch:
        """Read what was appended since the previous read, at most
        max_bytes_per_read bytes. Never raises for file-system trouble (it is
        in `Batch.errors`); RuntimeError after `close`."""
        if self._closed is not None:
            raise RuntimeError("the follower is closed")
        batch = Batch()
        first = self._first
        self._first = False
        # Candidates for the source of a copytruncate: files read before now.
        copies = [f for f in self._files.values() if f.offset >= _HEAD_BYTES]
        now = self._scan(batch, first, copies)
        if first:
            # Files resumed from saved positions hold older lines than those
            # that appeared while the daemon was down: read them first.
            resumed = {k: f for k, f in self._files.items() if k in self._saved}
            self._files = {**resumed, **self._files}
            self._find_rotated_while_down()
        self._count_rotations(batch, now)
        self._paths = now
        self._drain(batch)
        if first:
            self._saved.clear()
        return batch

    def positions(self) -> dict[str, Position]:
        """Where each file the glob matched at the last read stopped, keyed by
        path: what to save once the lines read so far were processed. Files
        rotated away and still being drained are not in it."""
        if self._closed is not None:
            return dict(self._closed)
        out: dict[str, Position] = {}
        for f in self._files.values():
            if f.grace is None:
                out[f.path] = Position(
                    f.path, f.key[0], f.key[1], f.offset, f.head, in_long_line=f.skipping
                )
        return out

    def close(self) -> None:
        """Close every open descriptor. `positions()` keeps answering with
        the positions at closing; `read()` raises after it. Idempotent."""
        if self._closed is not None:
            return
        self._closed = self.positions()
        for f in self._files.values():
            self._close_fd(f)
        self._files.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- finding files ------------------------------------------------------

    def _scan(self, batch: Batch, first: bool, copies: list[_File]) -> dict[str, tuple[int, int]]:
        """Expand the glob, open the files not followed yet and mark those no
        longer matched as rotated away; return path -> (dev, ino)."""
        now: dict[str, tuple[int, int]] = {}
        seen: set[tuple[int, int]] = set()
        saved_paths = {p.path for p in self._saved.values()} if first else set()
        for path in sorted(glob.glob(self.pattern)):
            if path.endswith(_COMPRESSED) and not self.pattern.endswith(_COMPRESSED):
                continue  # logrotate's compressed rotations: read before they were compressed
            try:
                st = os.stat(path)
            except OSError as e:
                _failed(batch, path, e)
                continue
            if stat.S_ISDIR(st.st_mode):
                batch.errors.append(f"{path}: is a directory")
                continue
            if not stat.S_ISREG(st.st_mode):
                batch.errors.append(f"{path}: not a regular file")
                continue
            batch.files += 1
            key: tuple[int, int] | None = (st.st_dev, st.st_ino)
            if key not in self._files:
                key = self._open(path, batch, first, path in saved_paths, copies)
            if key is None:
                continue
            if key in seen:
                continue  # a hard link or symlink to a file followed already
            seen.add(key)
            now[path] = key
            f = self._files[key]
            f.path = path
            f.grace = None  # renamed back into the glob: follow it again
        batch.missing = batch.files == 0
        for key, f in self._files.items():
            if key not in seen and f.grace is None:
                f.grace = self.rotated_grace_reads
        return now

    def _open(
        self,
        path: str,
        batch: Batch,
        first: bool,
        known_path: bool,
        copies: list[_File],
    ) -> tuple[int, int] | None:
        """Open a file not followed yet and decide where to start in it;
        return its key, None (reported) if it cannot be opened."""
        try:
            # O_NONBLOCK: a FIFO swapped in after the stat must not block us.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            _failed(batch, path, e)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                batch.errors.append(f"{path}: not a regular file")
                os.close(fd)
                return None
            key = (st.st_dev, st.st_ino)
            if key in self._files:  # replaced by a file we follow, between stat and open
                os.close(fd)
                return key
            f = _File(path, key, fd, 0, False)
            known = self._known.pop(key, None)
            copy = self._copy_of(fd, st.st_size, copies) if known is None else None
            if known is not None:
                f.offset, f.skipping = known.offset, known.skipping
                f.head, f.head_len = known.head, min(_HEAD_BYTES, known.offset)
                if self._truncated(f, st.st_size):
                    batch.truncations += 1
                    self._restart(f)
            elif copy is not None:
                f.offset, f.skipping = copy.offset, copy.skipping
            elif first and not known_path and self.from_end:
                f.offset, f.skipping = self._end_of_last_line(fd, st.st_size)
            self._set_head(f)
        except OSError as e:
            _failed(batch, path, e)
            os.close(fd)
            return None
        if copy is None:
            self._files[key] = f
        else:
            # The copy holds the older lines: read it just before its source.
            files: dict[tuple[int, int], _File] = {}
            for k, g in self._files.items():
                if k == copy.key:
                    files[key] = f
                files[k] = g
            self._files = files
        return key

    def _find_rotated_while_down(self) -> None:
        """A saved file not among the matched ones may have been renamed out
        of the glob while the daemon was down: look for its inode next to its
        saved path and drain it from its offset. Only for offset > 0 with a
        matching head, so a reused inode is not taken for it."""
        for key, p in self._saved.items():
            if key in self._files or key not in self._known or p.offset == 0:
                continue
            directory = os.path.dirname(p.path) or "."
            try:
                with os.scandir(directory) as entries:
                    name = next((e.path for e in entries if e.inode() == p.ino), None)
                if name is None:
                    continue
                fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                f = _File(
                    name, key, fd, p.offset, p.in_long_line, p.head, min(_HEAD_BYTES, p.offset)
                )
                if (
                    not stat.S_ISREG(st.st_mode)
                    or (st.st_dev, st.st_ino) != key
                    or self._truncated(f, st.st_size)
                ):
                    os.close(fd)
                    continue
            except OSError:
                os.close(fd)
                continue
            del self._known[key]
            f.grace = self.rotated_grace_reads
            # Before the files matched now: its lines are older.
            self._files = {key: f, **self._files}

    def _count_rotations(self, batch: Batch, now: dict[str, tuple[int, int]]) -> None:
        """A path we followed a file at now holds nothing, or a file we did
        not follow: one rotation (a file merely renamed within the glob, as
        app.log.1 -> app.log.2, is not one)."""
        before = set(self._paths.values())
        for path, key in self._paths.items():
            new = now.get(path)
            if new is None or (new != key and new not in before):
                batch.rotations += 1

    # -- reading ------------------------------------------------------------

    def _drain(self, batch: Batch) -> None:
        """Read the followed files within the byte budget: rotated-away
        ones first, then the others round-robin from the one after the file
        the last read stopped in, so a busy file does not starve the rest."""
        draining = [f for f in self._files.values() if f.grace is not None]
        live = [f for f in self._files.values() if f.grace is None]
        at = next((i + 1 for i, f in enumerate(live) if f.key == self._resume), 0)
        self._resume = None
        budget = self.max_bytes_per_read
        served: tuple[int, int] | None = None  # the last live file read
        for f in draining + live[at:] + live[:at]:
            if budget <= 0:
                batch.more = True
                self._resume = served
                break
            if f.grace is None:
                served = f.key
            try:
                size = os.fstat(f.fd).st_size
                if self._truncated(f, size):
                    batch.truncations += 1
                    self._restart(f)
                used, eof = self._consume(f, budget, batch)
                self._set_head(f)
            except OSError as e:
                _failed(batch, f.path, e)
                if f.grace is not None:
                    self._finish(f, batch, deliver=False)
                continue
            budget -= used
            if not eof:
                batch.more = True
                self._resume = served
                break
            if f.grace is not None:
                if f.grace == 0:
                    self._finish(f, batch, deliver=True)
                else:
                    f.grace -= 1

    def _consume(self, f: _File, budget: int, batch: Batch) -> tuple[int, bool]:
        """Deliver the complete lines of `f` from its offset, reading at most
        `budget` bytes; return the bytes read and whether EOF was reached."""
        limit = self.max_line_bytes
        used = 0
        while used < budget:
            want = min(self._chunk, budget - used)
            data = os.pread(f.fd, want, f.offset)
            n = len(data)
            used += n
            batch.bytes_read += n
            eof = n < want
            start = 0
            if f.skipping:
                i = data.find(b"\n")
                if i < 0:
                    f.offset += n
                    if eof:
                        return used, True
                    continue
                start = i + 1
                f.skipping = False
            last = data.rfind(b"\n", start)
            end = start
            if last >= 0:
                self._emit(data[start:last], batch)
                end = last + 1
            if n - end > limit:
                # An unfinished line already over the limit: deliver it cut
                # now and skip its rest, so it is never buffered whole.
                self._emit(data[end : end + limit + 1], batch)
                end = n
                f.skipping = True
            f.offset += end
            if eof:
                return used, True
        # The budget ran out; it may have ended exactly at EOF.
        return used, False

    def _emit(self, block: bytes, batch: Batch) -> None:
        """Append the lines of `block` (newline-separated, no final newline)."""
        text = None
        if b"\x00" not in block:
            with contextlib.suppress(UnicodeDecodeError):
                text = block.decode("utf-8")
        if text is not None:
            lines = text.split("\n")
            # Characters are bytes in ASCII (the usual log): no second split.
            sizes = lines if text.isascii() else block.split(b"\n")
            if max(map(len, sizes)) <= self.max_line_bytes:
                if "\r" in text:
                    lines = [s[:-1] if s.endswith("\r") else s for s in lines]
                batch.lines += lines
                return
        # Rare: garbage or over-long lines somewhere in the block.
        for part in block.split(b"\n"):
            batch.lines.append(self._line(part, batch))

    def _line(self, raw: bytes, batch: Batch) -> str:
        """One line, cut, decoded and counted."""
        limit = self.max_line_bytes
        if len(raw) > limit:
            batch.long_lines += 1
            # Cut on a character boundary: back off over at most three
            # continuation bytes (raw[cut] is the first byte left out).
            cut = limit
            while cut > max(0, limit - 3) and raw[cut] & 0xC0 == 0x80:
                cut -= 1
            if cut == 0 or raw[cut] & 0xC0 == 0x80:
                cut = limit  # not UTF-8 there anyway
            raw = raw[:cut]
        bad = False
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", errors="replace")
            bad = True
        if "\x00" in line:
            line = line.replace("\x00", "\ufffd")
            bad = True
        if bad:
            batch.invalid_utf8 += 1
        return line[:-1] if line.endswith("\r") else line

    def _finish(self, f: _File, batch: Batch, *, deliver: bool) -> None:
        """A rotated-away file is done: deliver its unfinished last line,
        close it and forget it (remembering its position while it still has
        a name, should it come back)."""
        linked = False
        try:
            if deliver and not f.skipping:
                tail = os.pread(f.fd, self.max_line_bytes + 1, f.offset)
                if tail:
                    batch.bytes_read += len(tail)
                    f.offset += len(tail)
                    self._emit(tail[:-1] if tail.endswith(b"\n") else tail, batch)
            self._set_head(f)
            linked = os.fstat(f.fd).st_nlink > 0
        except OSError as e:
            _failed(batch, f.path, e)
        self._close_fd(f)
        del self._files[f.key]
        if linked:
            self._known[f.key] = _Known(f.offset, f.head, f.skipping)
            while len(self._known) > _GONE_MAX + len(self._saved):
                del self._known[next(iter(self._known))]

    # -- helpers ------------------------------------------------------------

    def _truncated(self, f: _File, size: int) -> bool:
        """Shorter than what was read, or the bytes read first changed."""
        if f.offset == 0:
            return False
        if size < f.offset:
            return True
        data = os.pread(f.fd, f.head_len, 0)
        return len(data) < f.head_len or _digest(data) != f.head

    @staticmethod
    def _restart(f: _File) -> None:
        f.offset, f.skipping, f.head, f.head_len = 0, False, _EMPTY_HEAD, 0

    @staticmethod
    def _set_head(f: _File) -> None:
        """Keep the head digest over min(256, offset) bytes."""
        want = min(_HEAD_BYTES, f.offset)
        if want != f.head_len:
            f.head = _digest(os.pread(f.fd, want, 0))
            f.head_len = want

    def _end_of_last_line(self, fd: int, size: int) -> tuple[int, bool]:
        """Where `tail -F` would start: after the last newline; an unfinished
        last line short enough to deliver is delivered once finished, a
        longer one is skipped."""
        low = max(0, size - self.max_line_bytes - 1)
        data = os.pread(fd, size - low, low)
        i = data.rfind(b"\n")
        if i >= 0:
            return low + i + 1, False
        if low == 0:
            return 0, False
        return size, True

    def _copy_of(self, fd: int, size: int, copies: list[_File]) -> _File | None:
        """If this new file starts with the same 256 bytes as a file read
        past them, is at least as long as that file's offset, and that file
        was truncated since, it is the copy of a copytruncate: return that
        file (the copy starts at its offset)."""
        if not copies or size < _HEAD_BYTES:
            return None
        head = _digest(os.pread(fd, _HEAD_BYTES, 0))
        for f in copies:
            if f.head == head and size >= f.offset:
                try:
                    if self._truncated(f, os.fstat(f.fd).st_size):
                        return f
                except OSError:
                    continue
        return None

    @staticmethod
    def _close_fd(f: _File) -> None:
        with contextlib.suppress(OSError):
            os.close(f.fd)
        f.fd = -1
