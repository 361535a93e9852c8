"""The README, run as written: every command of its console blocks is run
(the ones that talk to a daemon against the demo estate, started here as
`make demo` starts it) and its output compared with what the README shows,
so that the README cannot drift from what the commands do.

In a block, `$ command` lines are run in order; the lines after one are its
output (standard output and error, as a terminal shows them), `...` ending
them means the rest is not shown; `$ echo $?` shows the exit code of the
command before; `$ export NAME=value ...` sets variables for the commands
after it. The demo runs on ports of its own here: the README's
`127.0.0.1:9120`, `8180` and `8181` are read as those, and its
`examples/demo/estate.yaml` as a copy in a temporary folder (the daemon
writes its state and log beside the file)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from processes import answers, daemon
from waiting import WATCHDOG, free_port, until_blocking

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
DEMO = "examples/demo/estate.yaml"
TOKEN = "demo-token"  # the Makefile's DEMO_TOKEN


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    partial: bool = False  # the README shows only the first lines


def steps(block: str) -> list[Step]:
    out: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append(Step(line[2:]))
        elif line == "...":
            out[-1].partial = True
        else:
            out[-1].expected.append(line)
    return out


BLOCKS = [steps(match.group(1)) for match in BLOCK.finditer(README.read_text())]


@dataclass
class Demo:
    url: str
    file: Path
    ports: dict[str, str]

    def local(self, text: str) -> str:
        """`text` as the README writes it, read for this demo."""
        text = text.replace(DEMO, str(self.file))
        for theirs, ours in self.ports.items():
            text = text.replace(theirs, ours)
        return text


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("demo")
    shutil.copy(ROOT / "examples" / "demo" / "targets.py", folder)
    api, http = free_port(), free_pair()
    ports = {
        "127.0.0.1:9120": f"127.0.0.1:{api}",
        "127.0.0.1:8181": f"127.0.0.1:{http + 1}",
        "127.0.0.1:8180": f"127.0.0.1:{http}",
    }
    estate = (ROOT / DEMO).read_text()
    for theirs, ours in ports.items():
        estate = estate.replace(theirs, ours)
    file = folder / "estate.yaml"
    file.write_text(estate)
    os.environ["WATCHDOG_API_TOKEN"] = TOKEN  # the daemon's, as make demo sets it
    targets = subprocess.Popen(
        [sys.executable, str(folder / "targets.py"), "--port", str(http)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Listening before the daemon's first probes (else they fail, and
        # the README's outputs are not what it shows).
        until_blocking(lambda: listening(http) and listening(http + 1), deadline=60)
        with daemon(file, folder / "daemon.log"):
            url = f"http://127.0.0.1:{api}"
            until_blocking(lambda: answers(url), deadline=60)
            # The README shows the estate at rest: wait for the probes to
            # have seen the targets (started alongside, slow on a busy CI).
            until_blocking(lambda: critical_up(url), deadline=60)
            yield Demo(url, file, ports)
    finally:
        os.environ.pop("WATCHDOG_API_TOKEN", None)
        targets.terminate()
        targets.wait(10)


def free_pair() -> int:
    """A port such that it and the next one are free (the demo's targets
    listen on both)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and not listening(port + 1):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise AssertionError("no two free ports in a row on 127.0.0.1")


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def critical_up(url: str) -> bool:
    """Whether the daemon at `url` has seen every critical node up."""
    nodes = httpx.get(f"{url}/api/v1/status", timeout=5, trust_env=False).json()["nodes"]
    return all(n["effective"] == "up" for n in nodes if n.get("critical"))


def run_block(block: list[Step], demo: Demo | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHDOG_")}
    env["NO_COLOR"] = "1"
    code = None
    for step in block:
        command = demo.local(step.command) if demo else step.command
        words = shlex.split(command, comments=True)
        if words[0] == "export":
            for word in words[1:]:
                name, _, value = word.partition("=")
                env[name] = TOKEN if value == "..." else value
            continue
        if words == ["echo", "$?"]:
            assert step.expected == [str(code)], step.command
            continue
        assert words[0] == "watchdog", f"the README runs {words[0]!r}: teach this test"
        done = subprocess.run(
            [WATCHDOG, *words[1:]],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=False,
        )
        code = done.returncode
        expected = [demo.local(line) if demo else line for line in step.expected]
        got = done.stdout.splitlines()
        if step.partial:
            got = got[: len(expected)]
        assert got == expected, f"$ {step.command}\n{done.stdout}"


def needs_demo(block: list[Step]) -> bool:
    return any(DEMO in s.command or "WATCHDOG_URL" in s.command for s in block)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if not needs_demo(b)], ids=lambda b: b[0].command[:60]
)
def test_the_readme_commands_say_what_it_shows(block: list[Step]) -> None:
    run_block(block, None)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if needs_demo(b)], ids=lambda b: b[0].command[:60]
)
def test_the_readme_commands_against_the_demo_say_what_it_shows(
    block: list[Step], demo: Demo
) -> None:
    run_block(block, demo)


def test_the_readme_has_console_blocks_of_both_kinds() -> None:
    assert [b for b in BLOCKS if not needs_demo(b)]
    assert [b for b in BLOCKS if needs_demo(b)]
