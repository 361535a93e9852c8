"""Log lines to templates: masks, bounds, and state that survives a restart."""

from __future__ import annotations

import json
import zlib

import pytest

from watchdog.logmine import DEFAULT_MASKS, MASKS, Miner, MinerConfig


def test_the_default_masks_are_the_built_in_ones_in_order() -> None:
    assert DEFAULT_MASKS == ("uuid", "ip", "hex", "duration", "number")
    assert set(DEFAULT_MASKS) == set(MASKS)


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("took 42 steps", "took <NUMBER> steps"),
        ("balance -3.5 now", "balance <NUMBER> now"),
        ("peer 10.0.0.12:5432 gone", "peer <IP> gone"),
        ("peer 10.0.0.12 gone.", "peer <IP> gone."),
        ("job 123e4567-e89b-12d3-a456-426614174000 done", "job <UUID> done"),
        ("fault at 0x7ffd3a2b", "fault at <HEX>"),
        ("trace 4bf92f3577b34da6a3ce929d0e0e4736 kept", "trace <HEX> kept"),
        ("timeout after 1.5s and 120ms", "timeout after <DURATION> and <DURATION>"),
        ("retry in 1m30s", "retry in <DURATION>"),
        ("md5 v2 x86 left alone", "md5 v2 x86 left alone"),
    ],
)
def test_it_masks_variable_parts(line: str, template: str) -> None:
    assert Miner().add(line).text == template


def test_lines_differing_in_masked_parts_share_a_template() -> None:
    miner = Miner()
    first = miner.add("connect to 10.0.0.1 failed after 3s")
    second = miner.add("connect to 10.9.8.7 failed after 250ms")
    assert first.new
    assert not second.new
    assert second.id == first.id
    assert len(miner) == 1


def test_user_masks_are_name_regex_pairs() -> None:
    config = MinerConfig(masks=(("order", r"ORD-\d+"), "number"))
    assert (
        Miner(config).add("order ORD-991 lost 3 items").text == "order <ORDER> lost <NUMBER> items"
    )


@pytest.mark.parametrize(
    "masks",
    [("nope",), (("bad name", "x"),), (("ok", "(unclosed"),), (("a", "b", "c"),)],
)
def test_bad_masks_are_refused(masks: tuple[str | tuple[str, str], ...]) -> None:
    with pytest.raises(ValueError, match="mask"):
        MinerConfig(masks=masks)


def test_max_clusters_bounds_the_templates_kept() -> None:
    miner = Miner(MinerConfig(max_clusters=5))
    for i in range(50):
        # Distinct first words and lengths: each line is its own template.
        miner.add(f"w{chr(97 + i % 26)}{chr(97 + i // 26)} " + "x " * (i % 7))
        assert len(miner) <= 5
    assert len(miner) == 5


def test_state_restores_templates_ids_and_what_comes_next() -> None:
    lines = [f"user {name} logged in from 10.0.0.{i}" for i, name in enumerate("abcdef")]
    lines += [f"disk /dev/sd{c} at {i}% full" for i, c in enumerate("abc")]
    lines += [f"event kind{i} raised {i} times" for i in range(8)]
    config = MinerConfig(max_clusters=4)
    original = Miner(config)
    for line in lines[:10]:
        original.add(line)
    restored = Miner(config, original.state())
    assert len(restored) == len(original)
    for line in lines[10:]:
        assert restored.add(line) == original.add(line)
    assert restored.state() == original.state()


def test_state_saved_with_another_depth_still_matches_known_templates() -> None:
    original = Miner(MinerConfig(depth=5))
    known = original.add("cache miss for key alpha")
    restored = Miner(MinerConfig(depth=4), original.state())
    again = restored.add("cache miss for key alpha")
    assert (again.id, again.new) == (known.id, False)


@pytest.mark.parametrize(
    "state",
    [
        b"garbage",
        zlib.compress(b"not json"),
        zlib.compress(b"[1, 2]"),
        zlib.compress(json.dumps({"v": 99}).encode()),
        zlib.compress(
            json.dumps(
                {"v": 1, "depth": 4, "counter": 1, "clusters": [[1, 1, [3]]], "tree": [[], {}]}
            ).encode()
        ),
        zlib.compress(
            json.dumps(
                {"v": 1, "depth": 4, "counter": 0, "clusters": [], "tree": [[], "x"]}
            ).encode()
        ),
    ],
)
def test_garbage_state_is_a_value_error(state: bytes) -> None:
    with pytest.raises(ValueError, match="not a template miner state"):
        Miner(state=state)
