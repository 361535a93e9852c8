"""Status page benchmark: the page of a generated estate in headless
Chromium (issue 13, "How it is shown"). Everything runs on 127.0.0.1 and is
started and stopped here.

- Estate: `benchmarks/generate.py --nodes N --seed 1`, each node given one
  `tcp:` probe to its farm's loopback listener, as benchmarks/storm.py does
  (storm_support/estate.py, storm_support/farms.py).
- The daemon: `.venv/bin/watchdog run FILE`, until /-/ready.
- The page, in Debian's headless Chromium through Selenium and Debian's
  chromedriver, a fresh browser profile per load, --loads times: time to
  first paint and first contentful paint (Paint Timing),
  DOMContentLoaded and load (Navigation Timing), and "rendered": when the
  page's script has coloured the picture and started polling
  (`data-ready-ms`), all from the start of navigation; the HTML size and
  the SVG's share of it; then --refreshes refreshes of the page's own
  polling (fetch and apply, `data-last-refresh-ms`), and the time to open
  a node's details. The same once the biggest farm is dead (every node on
  it down: the heaviest refresh).
- The daemon's own load: its CPU (the daemon process alone, not its API
  process) over --window seconds with no page open, then with --pollers
  pages polling every 2 s (simulated with httpx: the page's poll
  request); the API process's CPU beside it, and how many times the page
  asked the daemon for its history (the API process's log says nothing of
  it: the count is the number of history windows, shown for reference).

Figures, never assertions; targets shown beside them (issue 13: the page of
a 2,000-node estate loads in under 2 s).

    .venv/bin/python benchmarks/status_page.py [--nodes 2000] [--loads 3]
        [--refreshes 5] [--pollers 20] [--window 20]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from generate import generate
from report import table, verdict
from storm import _cpu_s, _free_port, _wait_ready, daemon, farms
from storm_support.estate import parse, render

ROOT = Path(__file__).resolve().parent.parent
WATCHDOG = ROOT / ".venv" / "bin" / "watchdog"
LOAD_TARGET_S = 2.0
POLL_S = 2.0


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(options=options, service=Service(driver_path))


_TIMINGS = """
const nav = performance.getEntriesByType("navigation")[0];
const paints = performance.getEntriesByType("paint");
const paint = Object.fromEntries(paints.map(e => [e.name, e.startTime]));
return {
  first_paint: paint["first-paint"] ?? null,
  first_contentful_paint: paint["first-contentful-paint"] ?? null,
  dom_content_loaded: nav.domContentLoadedEventEnd,
  load: nav.loadEventEnd,
  rendered: Number(document.body.dataset.readyMs),
  transfer_bytes: nav.transferSize,
};
"""


def _until(check: Any, timeout_s: float = 60.0, step_s: float = 0.05) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(step_s)
    raise TimeoutError("condition not met")


def _load(url: str) -> dict[str, float]:
    """One load of the page in a fresh browser: its timings (ms)."""
    driver = _browser()
    try:
        driver.get(url)
        _until(lambda: driver.execute_script("return document.body.dataset.ready") == "1")
        # Both load and the first paint are done a moment after `ready`.
        _until(lambda: driver.execute_script(_TIMINGS)["load"] > 0)
        timings: dict[str, float] = driver.execute_script(_TIMINGS)
        return timings
    finally:
        driver.quit()


def _refreshes(driver: Any, count: int) -> list[float]:
    """The page's own polls, `count` of them: each one's time (ms)."""
    out = []
    seen = int(driver.execute_script("return document.body.dataset.refreshes") or 0)
    for _ in range(count):
        target = seen + 1
        _until(
            lambda t=target: (
                int(driver.execute_script("return document.body.dataset.refreshes")) >= t
            ),
            timeout_s=3 * POLL_S + 10,
        )
        seen = int(driver.execute_script("return document.body.dataset.refreshes"))
        out.append(float(driver.execute_script("return document.body.dataset.lastRefreshMs")))
    return out


def _details_ms(driver: Any, node: str) -> float:
    """From a click on a node to its details shown."""
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.CSS_SELECTOR, f'.topology .node[data-node="{node}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    started = time.perf_counter()
    element.click()
    _until(
        lambda: (
            driver.find_element(By.ID, "details-h").text == node
            if driver.find_elements(By.ID, "details-h")
            else False
        ),
        step_s=0.005,
    )
    return (time.perf_counter() - started) * 1000


def _pollers(base: str, count: int, stop: threading.Event) -> list[threading.Thread]:
    def poll() -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"{base}/api/v1/status-page/live")
                stop.wait(POLL_S)

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _api_pid(pid: int) -> int | None:
    """The daemon's API process (its child)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


def _cpu_window(pid: int, api: int | None, seconds: float) -> tuple[float, float]:
    """CPU % of one core, the daemon's and its API process's, over `seconds`."""
    daemon0 = _cpu_s(pid)
    api0 = _cpu_s(api) if api else 0.0
    time.sleep(seconds)
    daemon1 = _cpu_s(pid)
    api1 = _cpu_s(api) if api else 0.0
    return 100 * (daemon1 - daemon0) / seconds, 100 * (api1 - api0) / seconds


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):,.0f} ms (max {max(values):,.0f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args(argv)

    text, stats = generate(args.nodes, 1)
    estate = parse(text)
    with tempfile.TemporaryDirectory() as folder, farms(estate.farms) as farm_process:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        path = Path(folder) / "estate.yaml"
        path.write_text(
            render(
                estate,
                farm_process.ports,
                listen=f"127.0.0.1:{port}",
                state_path=str(Path(folder) / "state.db"),
                webhook_url=f"http://127.0.0.1:{_free_port()}/hook",
                settle="10s",
            )
        )
        print(f"estate: {stats}", file=sys.stderr)
        with (
            (Path(folder) / "daemon.log").open("wb") as log,
            daemon([str(WATCHDOG), "run", str(path)], log) as process,
        ):
            started = time.monotonic()
            ready_at = _wait_ready(base, process, 300)
            print(f"daemon ready in {ready_at - started:.1f}s", file=sys.stderr)
            html = httpx.get(f"{base}/", timeout=30, trust_env=False).text
            start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="topology"')
            svg = html[start : html.index("</svg>", start) + 6]
            live = httpx.get(f"{base}/api/v1/status-page/live", timeout=30, trust_env=False)

            loads = [_load(f"{base}/") for _ in range(args.loads)]
            driver = _browser()
            try:
                driver.get(f"{base}/")
                _until(lambda: driver.execute_script("return document.body.dataset.ready") == "1")
                calm = _refreshes(driver, args.refreshes)
                details = [_details_ms(driver, "farm-0000") for _ in range(3)]

                pid = process.pid
                api = _api_pid(pid)
                idle = _cpu_window(pid, api, args.window)
                stop = threading.Event()
                threads = _pollers(base, args.pollers, stop)
                try:
                    polled = _cpu_window(pid, api, args.window)
                finally:
                    stop.set()
                    for thread in threads:
                        thread.join(15)

                farm = estate.biggest_farm()
                farm_process.kill(farm)
                killed = time.monotonic()
                from selenium.webdriver.common.by import By

                def down() -> bool:
                    found = driver.find_elements(
                        By.CSS_SELECTOR, f'.topology .node.st-down[data-node="{farm}"]'
                    )
                    return bool(found)

                _until(down, timeout_s=120)
                seen_after = time.monotonic() - killed
                outage_html = httpx.get(f"{base}/", timeout=30, trust_env=False).text
                stormy = _refreshes(driver, args.refreshes)
                outage_live = httpx.get(
                    f"{base}/api/v1/status-page/live", timeout=30, trust_env=False
                )
            finally:
                driver.quit()
            outage_loads = [_load(f"{base}/") for _ in range(args.loads)]

    def column(key: str, runs: list[dict[str, float]]) -> str:
        return _ms([r[key] for r in runs if r.get(key) is not None])

    rendered = [r["rendered"] for r in loads]
    rows = [
        ["measure", "at rest", f"{farm} dead"],
        ["first paint", column("first_paint", loads), column("first_paint", outage_loads)],
        [
            "first contentful paint",
            column("first_contentful_paint", loads),
            column("first_contentful_paint", outage_loads),
        ],
        [
            "DOMContentLoaded",
            column("dom_content_loaded", loads),
            column("dom_content_loaded", outage_loads),
        ],
        ["load", column("load", loads), column("load", outage_loads)],
        [
            "page rendered (script done)",
            column("rendered", loads),
            column("rendered", outage_loads),
        ],
        ["one refresh (fetch + apply)", _ms(calm), _ms(stormy)],
        [
            "HTML (with SVG)",
            f"{len(html.encode()) / 1024:,.0f} KiB",
            f"{len(outage_html.encode()) / 1024:,.0f} KiB",
        ],
        ["  of which SVG", f"{len(svg.encode()) / 1024:,.0f} KiB", ""],
        [
            "poll answer",
            f"{len(live.content) / 1024:,.0f} KiB",
            f"{len(outage_live.content) / 1024:,.0f} KiB",
        ],
        ["node details (click to shown)", _ms(details), ""],
    ]
    print(
        f"status page of a {args.nodes:,}-node estate ({stats.critical} critical), "
        f"{args.loads} loads each, Chromium headless"
    )
    print(table(rows))
    print()
    print(
        f"the dead farm {farm} shown on the page {seen_after:.1f}s after its listener closed "
        "(probe interval 10s, failure threshold 3: the detection, not the page)"
    )
    print(
        f"daemon CPU (its own process) over {args.window:g}s: {idle[0]:.1f}% with no page, "
        f"{polled[0]:.1f}% with {args.pollers} pages polling every {POLL_S:g}s; "
        f"API process {idle[1]:.1f}% -> {polled[1]:.1f}%"
    )
    worst = max(rendered)
    print(
        f"target: the page loads (rendered) in under {LOAD_TARGET_S:g}s: "
        f"{worst / 1000:.2f}s at worst {verdict(worst / 1000 < LOAD_TARGET_S)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
