"""The log follower on real files in tmp_path, changed by the test between
reads: appends, unfinished lines, rotation by rename, copytruncate,
truncation and rewrites, deletion, garbage, over-long lines, bursts,
restarts from saved positions, and paths it cannot read."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from watchdog.logtail import Batch, Follower, Position

Follow = Callable[..., Follower]
# A bound on loops that read until the follower has nothing more.
MAX_READS = 100


@pytest.fixture
def follow() -> Iterator[Follow]:
    """Make followers that are closed after the test."""
    made: list[Follower] = []

    def make(pattern: Path | str, **kwargs: Any) -> Follower:
        follower = Follower(str(pattern), **kwargs)
        made.append(follower)
        return follower

    yield make
    for follower in made:
        follower.close()


def append(path: Path, data: str | bytes) -> None:
    with path.open("ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def rewrite_in_place(path: Path, data: str | bytes) -> None:
    """Truncate the same inode and write `data` into it."""
    with path.open("r+b") as f:
        f.truncate(0)
        f.write(data.encode() if isinstance(data, str) else data)


def restart(follower: Follower, pattern: Path, **kwargs: Any) -> Follower:
    """What the daemon does: save positions as JSON, stop, start again."""
    saved = json.loads(json.dumps({k: p.to_json() for k, p in follower.positions().items()}))
    follower.close()
    positions = {k: Position.from_json(v) for k, v in saved.items()}
    return Follower(str(pattern), positions=positions, **kwargs)


def read_all(follower: Follower) -> list[str]:
    lines: list[str] = []
    for _ in range(MAX_READS):
        batch = follower.read()
        lines += batch.lines
        if not batch.more:
            return lines
    raise AssertionError("the follower kept saying more")


def numbered(start: int, stop: int, prefix: str = "line") -> list[str]:
    return [f"{prefix}-{i:04d} " + "x" * 40 for i in range(start, stop)]


def text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


# -- where it starts, appending, unfinished lines ---------------------------


def test_it_starts_at_the_end_when_from_end(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\n")
    follower = follow(log)
    first = follower.read()
    assert (first.lines, first.files, first.missing) == ([], 1, False)
    append(log, "new 1\nnew 2\n")
    assert follower.read().lines == ["new 1", "new 2"]
    assert follower.read().lines == []


def test_it_starts_at_the_start_without_from_end(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\n")
    follower = follow(log, from_end=False)
    batch = follower.read()
    assert batch.lines == ["old 1", "old 2"]
    assert batch.bytes_read == len("old 1\nold 2\n")


def test_an_unfinished_last_line_at_the_start_is_delivered_once_finished(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("old\nbeing writ")
    follower = follow(log)
    assert follower.read().lines == []
    append(log, "ten\n")
    assert follower.read().lines == ["being written"]


def test_it_holds_back_a_partial_line_until_its_newline(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log)
    follower.read()
    append(log, "one\ntw")
    assert follower.read().lines == ["one"]
    assert follower.positions()[str(log)].offset == len("one\n")
    append(log, "o")
    assert follower.read().lines == []
    append(log, "\nthree\r\n\n")
    assert follower.read().lines == ["two", "three", ""]
    assert follower.positions()[str(log)].offset == log.stat().st_size


# -- rotation by rename -------------------------------------------------------


def test_it_drains_a_file_renamed_away_before_reading_its_successor(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log)
    follower.read()
    append(log, "seen\n")
    assert follower.read().lines == ["seen"]
    # Written after our last read, just before logrotate renames the file.
    append(log, "before rotation 1\nbefore rotation 2\nunfinish")
    log.rename(tmp_path / "app.log.1")
    log.write_text("after rotation\n")
    batch = follower.read()
    assert batch.lines == ["before rotation 1", "before rotation 2", "after rotation"]
    assert (batch.rotations, batch.truncations) == (1, 0)
    # The writer still holds the old file until it reopens its log.
    append(tmp_path / "app.log.1", "ed late\n")
    append(log, "next\n")
    assert follower.read().lines == ["unfinished late", "next"]
    append(tmp_path / "app.log.1", "lost: the old file was closed\n")
    append(log, "last\n")
    assert follower.read().lines == ["last"]
    assert set(follower.positions()) == {str(log)}


def test_without_grace_it_finishes_a_rotated_file_at_once(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log, rotated_grace_reads=0)
    follower.read()
    append(log, "complete\nunfinished")
    log.rename(tmp_path / "app.log.1")
    log.write_text("new\n")
    batch = follower.read()
    assert batch.lines == ["complete", "unfinished", "new"]
    assert batch.rotations == 1


def test_a_glob_matching_rotated_names_reads_no_line_twice(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(tmp_path / "app.log*")
    follower.read()
    append(log, "a1\na2\n")
    assert follower.read().lines == ["a1", "a2"]
    append(log, "a3\n")
    log.rename(tmp_path / "app.log.1")
    log.write_text("b1\n")
    batch = follower.read()
    assert (batch.lines, batch.files, batch.rotations) == (["a3", "b1"], 2, 1)
    # A second rotation shifts both names.
    append(log, "b2\n")
    (tmp_path / "app.log.1").rename(tmp_path / "app.log.2")
    log.rename(tmp_path / "app.log.1")
    log.write_text("c1\n")
    batch = follower.read()
    assert (batch.lines, batch.files, batch.rotations) == (["b2", "c1"], 3, 1)
    assert follower.read().lines == []
    assert set(follower.positions()) == {str(log), f"{log}.1", f"{log}.2"}


# -- truncation, copytruncate, rewrites ---------------------------------------


def test_copytruncate_restarts_at_zero(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log)
    follower.read()
    append(log, text(numbered(0, 10)))
    assert follower.read().lines == numbered(0, 10)
    shutil.copyfile(log, tmp_path / "app.log.1")
    rewrite_in_place(log, "")
    append(log, "after 1\n")
    batch = follower.read()
    assert (batch.lines, batch.truncations, batch.rotations) == (["after 1"], 1, 0)
    append(log, "after 2\n")
    assert follower.read().lines == ["after 2"]


def test_copytruncate_with_a_glob_matching_the_copy_loses_and_repeats_nothing(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(tmp_path / "app.log*")
    follower.read()
    append(log, text(numbered(0, 10)))
    assert follower.read().lines == numbered(0, 10)
    # Written after our last read, just before the copy.
    append(log, text(numbered(10, 12)))
    shutil.copyfile(log, tmp_path / "app.log.1")
    rewrite_in_place(log, "after\n")
    batch = follower.read()
    assert batch.lines == [*numbered(10, 12), "after"]
    assert batch.truncations == 1


def test_truncation_to_zero_then_a_shorter_rewrite(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("a long first line\nanother long line\n")
    follower = follow(log, from_end=False)
    assert follower.read().lines == ["a long first line", "another long line"]
    rewrite_in_place(log, "")
    batch = follower.read()
    assert (batch.lines, batch.truncations) == ([], 1)
    append(log, "short\n")
    batch = follower.read()
    assert (batch.lines, batch.truncations) == (["short"], 0)


def test_a_rewrite_longer_than_the_offset_is_caught_by_the_head_digest(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    follower = follow(log, from_end=False)
    assert follower.read().lines == ["one", "two"]
    rewrite_in_place(log, "ONE\nTWO\nTHREE\nFOUR\n")
    batch = follower.read()
    assert (batch.lines, batch.truncations) == (["ONE", "TWO", "THREE", "FOUR"], 1)


# -- deletion --------------------------------------------------------------


def test_deletion_then_recreation_is_a_rotation(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log)
    follower.read()
    append(log, "last of the old\n")
    log.unlink()
    log.write_text("first of the new\n")
    batch = follower.read()
    assert (batch.lines, batch.rotations, batch.missing) == (
        ["last of the old", "first of the new"],
        1,
        False,
    )


def test_deletion_without_recreation_is_missing_after_draining(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log)
    follower.read()
    append(log, "last words\n")
    log.unlink()
    batch = follower.read()
    assert (batch.lines, batch.missing, batch.files, batch.rotations) == (
        ["last words"],
        True,
        0,
        1,
    )
    batch = follower.read()
    assert (batch.lines, batch.missing, batch.rotations) == ([], True, 0)
    assert follower.positions() == {}
    fd_dir = Path("/proc/self/fd")
    if fd_dir.is_dir():
        targets = [os.readlink(fd) for fd in fd_dir.iterdir() if fd.is_symlink()]
        assert not [t for t in targets if t.startswith(str(log))]


def test_a_missing_file_is_read_from_its_start_once_created(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    follower = follow(log)
    batch = follower.read()
    assert (batch.lines, batch.missing, batch.files, batch.errors) == ([], True, 0, [])
    log.write_text("born\nearly\n")
    batch = follower.read()
    assert (batch.lines, batch.missing) == (["born", "early"], False)


# -- content it must survive --------------------------------------------------


def test_binary_garbage_and_invalid_utf8_are_replaced_and_counted(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log)
    follower.read()
    append(log, b"ok\n\xff\xfe bad\nnul\x00here\nutf8 \xc3\xa9\n\x00\x00\x00\nfine\n")
    batch = follower.read()
    assert batch.lines == [
        "ok",
        "\ufffd\ufffd bad",
        "nul\ufffdhere",
        "utf8 \u00e9",
        "\ufffd\ufffd\ufffd",
        "fine",
    ]
    assert batch.invalid_utf8 == 3


def test_a_megabyte_line_without_newline_is_cut_and_not_buffered(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log, max_line_bytes=1024)
    follower.read()
    append(log, b"x" * 1_000_000)
    batch = follower.read()
    assert batch.lines == ["x" * 1024]
    assert batch.long_lines == 1
    # The rest of that line, however long, is skipped.
    append(log, b"y" * 1_000_000)
    assert follower.read().lines == []
    append(log, b"end of the long line\nnext\n")
    batch = follower.read()
    assert (batch.lines, batch.long_lines) == (["next"], 0)


def test_long_complete_lines_are_cut_on_a_character_boundary(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log, max_line_bytes=1024)
    follower.read()
    append(log, "short\n" + "z" * 3000 + "\n" + "\u20ac" * 400 + "\nafter\n")
    batch = follower.read()
    # The euro sign is 3 bytes: 341 of them fit in 1024 bytes.
    assert batch.lines == ["short", "z" * 1024, "\u20ac" * 341, "after"]
    assert (batch.long_lines, batch.invalid_utf8) == (2, 0)


def test_a_burst_is_read_in_bounded_slices_in_order(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(log, max_line_bytes=256, max_bytes_per_read=4096)
    follower.read()
    expected = numbered(0, 2000)
    append(log, text(expected))
    got: list[str] = []
    batches: list[Batch] = []
    for _ in range(MAX_READS):
        batch = follower.read()
        batches.append(batch)
        got += batch.lines
        if not batch.more:
            break
    assert got == expected
    assert len(batches) > 20
    assert all(b.bytes_read <= 4096 for b in batches)
    assert all(b.more for b in batches[:-1])


def test_a_busy_file_does_not_starve_the_next_one(tmp_path: Path, follow: Follow) -> None:
    busy, quiet = tmp_path / "a.log", tmp_path / "b.log"
    busy.write_text("")
    quiet.write_text("")
    follower = follow(tmp_path / "*.log", max_line_bytes=256, max_bytes_per_read=4096)
    follower.read()
    append(busy, text(numbered(0, 200)))
    append(quiet, "quiet\n")
    lines: list[str] = []
    for _ in range(5):
        lines += follower.read().lines
        append(busy, text(numbered(0, 200)))
    assert "quiet" in lines


# -- restarts -----------------------------------------------------------------


def test_it_resumes_from_saved_offset(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("before\n")
    first = follow(log)
    first.read()
    append(log, "a\nb\npart")
    assert first.read().lines == ["a", "b"]
    second = restart(first, log)
    append(log, "ial\nwhile\n")
    try:
        batch = second.read()
        assert batch.lines == ["partial", "while"]
        assert (batch.rotations, batch.truncations) == (0, 0)
    finally:
        second.close()


def test_lines_written_while_down_are_read_once(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text(text(numbered(0, 10)))
    first = follow(log, from_end=False)
    assert first.read().lines == numbered(0, 10)
    saved = first.positions()
    first.close()
    append(log, text(numbered(10, 20)))
    second = follow(log, positions=saved)
    assert read_all(second) == numbered(10, 20)


@pytest.mark.parametrize("pattern", ["app.log", "app.log*"])
def test_it_resumes_a_file_rotated_while_down(tmp_path: Path, follow: Follow, pattern: str) -> None:
    log = tmp_path / "app.log"
    log.write_text(text(numbered(0, 10)))
    first = follow(tmp_path / pattern)
    first.read()
    append(log, text(numbered(10, 12)))
    assert first.read().lines == numbered(10, 12)
    second = restart(first, tmp_path / pattern)
    # While down: more lines, then logrotate, then the new file.
    append(log, text(numbered(12, 15)))
    log.rename(tmp_path / "app.log.1")
    log.write_text(text(numbered(0, 3, "new")))
    try:
        batch = second.read()
        assert batch.lines == numbered(12, 15) + numbered(0, 3, "new")
        assert batch.rotations == 1
        append(log, "later\n")
        assert read_all(second) == ["later"]
    finally:
        second.close()


def test_it_rereads_a_file_truncated_while_down(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\nold 3\n")
    first = follow(log)
    first.read()
    second = restart(first, log)
    rewrite_in_place(log, "new\n")
    try:
        batch = second.read()
        assert (batch.lines, batch.truncations) == (["new"], 1)
    finally:
        second.close()


def test_it_goes_on_skipping_a_cut_line_after_a_restart(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    first = follow(log, max_line_bytes=100)
    first.read()
    append(log, "q" * 500)
    assert first.read().lines == ["q" * 100]
    second = restart(first, log, max_line_bytes=100)
    append(log, "q" * 500 + "\nnext\n")
    try:
        assert second.read().lines == ["next"]
    finally:
        second.close()


def test_positions_survive_json() -> None:
    position = Position("/var/log/app.log", 2049, 1234567, 4096, "0123456789abcdef", True)
    assert Position.from_json(json.loads(json.dumps(position.to_json()))) == position
    old_style = {k: v for k, v in position.to_json().items() if k != "in_long_line"}
    assert Position.from_json(old_style).in_long_line is False


GOOD = {"path": "/a.log", "dev": 1, "ino": 2, "offset": 3, "head": "0123456789abcdef"}


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "app.log",
        {},
        {k: v for k, v in GOOD.items() if k != "ino"},
        {**GOOD, "path": ""},
        {**GOOD, "path": 7},
        {**GOOD, "dev": "1"},
        {**GOOD, "ino": True},
        {**GOOD, "offset": -1},
        {**GOOD, "offset": 1.5},
        {**GOOD, "head": "xyz"},
        {**GOOD, "head": "0123456789ABCDEF"},
        {**GOOD, "in_long_line": "yes"},
    ],
)
def test_position_from_json_rejects_garbage(data: Any) -> None:
    with pytest.raises(ValueError, match="position"):
        Position.from_json(data)


# -- paths it cannot read -----------------------------------------------------


def test_a_directory_matched_by_the_glob_is_an_error(tmp_path: Path, follow: Follow) -> None:
    (tmp_path / "sub.log").mkdir()
    (tmp_path / "app.log").write_text("x\n")
    follower = follow(tmp_path / "*.log", from_end=False)
    batch = follower.read()
    assert batch.lines == ["x"]
    assert batch.errors == [f"{tmp_path / 'sub.log'}: is a directory"]
    assert (batch.files, batch.missing) == (1, False)


def test_only_a_directory_matched_is_missing(tmp_path: Path, follow: Follow) -> None:
    (tmp_path / "app.log").mkdir()
    batch = follow(tmp_path / "app.log").read()
    assert (batch.missing, batch.errors) == (True, [f"{tmp_path / 'app.log'}: is a directory"])


def test_a_fifo_is_an_error_not_a_hang(tmp_path: Path, follow: Follow) -> None:
    os.mkfifo(tmp_path / "app.log")
    batch = follow(tmp_path / "app.log").read()
    assert batch.errors == [f"{tmp_path / 'app.log'}: not a regular file"]


def test_a_permission_error_on_open_is_reported_even_as_root(
    tmp_path: Path, follow: Follow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What chmod 000 does for a non-root daemon, simulated where the follower
    opens files, so that it runs as root too."""
    log = tmp_path / "app.log"
    log.write_text("secret\n")
    real_open = os.open

    def deny(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path) == str(log):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    follower = follow(log)
    batch = follower.read()
    assert (batch.lines, batch.files, batch.missing) == ([], 1, False)
    assert batch.errors == [f"{log}: permission denied"]
    monkeypatch.undo()
    append(log, "readable\n")
    assert follower.read().lines == ["secret", "readable"]


# -- the object itself ----------------------------------------------------------


def test_close_keeps_positions_and_refuses_reads(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\n")
    with Follower(str(log)) as follower:
        follower.read()
        before = follower.positions()
    assert follower.positions() == before
    assert before[str(log)].offset == 2
    with pytest.raises(RuntimeError, match="closed"):
        follower.read()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_line_bytes": 0},
        {"max_line_bytes": 100, "max_bytes_per_read": 100},
        {"rotated_grace_reads": -1},
    ],
)
def test_it_rejects_nonsense_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        Follower("app.log", **kwargs)


def test_compressed_rotations_are_left_out_unless_the_pattern_names_them(
    tmp_path: Path, follow: Follow
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    follower = follow(tmp_path / "app.log*")
    follower.read()
    append(log, "one\ntwo\n")
    assert follower.read().lines == ["one", "two"]
    # logrotate with compress: app.log -> app.log.1.gz, a new app.log.
    with gzip.open(tmp_path / "app.log.1.gz", "wb") as packed:
        packed.write(log.read_bytes())
    log.unlink()
    append(log, "three\n")
    batch = follower.read()
    assert (batch.lines, batch.invalid_utf8, batch.files) == (["three"], 0, 1)
    # Asked for by name, a compressed file is read as it is (bytes, not text).
    named = follow(tmp_path / "*.gz", from_end=False)
    assert named.read().files == 1
