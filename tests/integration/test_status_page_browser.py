"""The status page in a real browser: Debian's headless Chromium, driven by
Selenium through Debian's chromedriver (nothing is downloaded), against a
real `watchdog run` watching a small estate of loopback farms.

A farm dies and its critical dependents turn red with the root-cause
sentence, without a reload, within two refreshes; the what-if box draws a
blast radius; the public view hides what it should; a daemon that is gone
is said, and the states greyed. Screenshots of the page at rest and during
the outage go to $WATCHDOG_SCREENSHOTS when it is set (docs/screenshots/
for the README), else to the test's tmp dir. Every wait is bounded; no
duration is asserted."""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from processes import accepting, answers, daemon, stop
from waiting import free_port, until_blocking

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

# What the public view must not show: farms, internal services and their
# own names, probes, the what-if box.
INTERNAL = ("farm-oms-1", "farm-pay", "antifraud", "orders-workflow", "connect refused", "tcp")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root in CI
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--force-device-scale-factor=1",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Estate:
    """A running daemon, its URL, and the farm listener the test can close."""

    url: str
    process: Any
    kill_farm: Any


def estate(port: int, oms: int, pay: int) -> str:
    def probe(target: int) -> str:
        return (
            f'probes: [{{tcp: "127.0.0.1:{target}", interval: 200ms, '
            "failure_threshold: 1, success_threshold: 1}]"
        )

    return textwrap.dedent(
        f"""\
        version: 1
        server: {{listen: "127.0.0.1:{port}"}}
        state: {{path: state.db}}
        nodes:
          farm-oms-1:
            kind: farm
            {probe(oms)}
          farm-pay-1:
            kind: farm
            {probe(pay)}
          farm-pay-2:
            kind: farm
            {probe(pay)}
          orders-search:
            description: order look-up for the call centre
            runs_on: [farm-oms-1]
            labels: {{status_page: public, status_page_name: Order search}}
          orders-workflow:
            critical: true
            description: moves every order to antifraud and the ERPs
            runs_on: [farm-oms-1]
            depends_on:
              - {{any_of: [antifraud], soft: true}}
            labels: {{status_page: public, status_page_name: Orders}}
          antifraud:
            critical: true
            runs_on: [farm-pay-1, farm-pay-2]
          erp-gateway:
            critical: true
            runs_on: [farm-pay-1, farm-pay-2]
          checkout:
            critical: true
            recovery_target: 5m
            runs_on: [farm-pay-1, farm-pay-2]
            depends_on: [orders-workflow, erp-gateway]
            labels: {{status_page: public, status_page_name: Checkout}}
        """
    )


@pytest.fixture
def running(tmp_path: Path, no_proxy: None) -> Iterator[Estate]:
    """`watchdog run` on the estate, every probe reported once."""
    with contextlib.ExitStack() as oms_farm, contextlib.ExitStack() as stack:
        oms = oms_farm.enter_context(accepting())
        pay = stack.enter_context(accepting())
        port = free_port()
        path = tmp_path / "estate.yaml"
        path.write_text(estate(port, oms, pay))
        process = stack.enter_context(daemon(path, tmp_path / "daemon.log"))
        url = f"http://127.0.0.1:{port}"
        until_blocking(lambda: answers(url))
        # Closing its listener kills the farm: connections are refused.
        yield Estate(url, process, oms_farm.close)


def shots() -> Path | None:
    folder = os.environ.get("WATCHDOG_SCREENSHOTS")
    return Path(folder) if folder else None


def screenshot(driver: Any, name: str, tmp_path: Path) -> Path:
    """The page, as tall as it is (up to 2,400 px), saved as NAME.png."""
    folder = shots() or tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0);")
    height = min(2400, int(driver.execute_script("return document.body.scrollHeight")))
    driver.set_window_size(1280, max(1000, height))
    target = folder / f"{name}.png"
    driver.save_screenshot(str(target))
    driver.set_window_size(1280, 1000)
    return target


def loaded(driver: Any, url: str) -> None:
    driver.get(url)
    until_blocking(lambda: driver.execute_script("return document.body.dataset.ready") == "1")


def service(driver: Any, node: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'li.service[data-node="{node}"]')


T = TypeVar("T")


def steady(read: Callable[[], T]) -> T:
    """What `read` finds, read again when a refresh replaced the elements
    it was reading (the page swaps parts in every 2 s)."""
    for _ in range(20):
        try:
            return read()
        except StaleElementReferenceException:
            continue
    return read()


def refreshes(driver: Any) -> int:
    return int(driver.execute_script("return document.body.dataset.refreshes"))


def effective(url: str, node: str) -> str:
    answer = httpx.get(f"{url}/api/v1/status", params={"node": node}, timeout=5, trust_env=False)
    state: str = answer.json()["nodes"][0]["effective"]
    return state


def test_a_dead_farm_turns_critical_services_red_without_a_reload(
    browser: Any, running: Estate, tmp_path: Path
) -> None:
    url = running.url
    until_blocking(lambda: effective(url, "orders-workflow") == "up")
    loaded(browser, url + "/")
    workflow = service(browser, "orders-workflow")
    assert "st-up" in workflow.get_attribute("class")
    assert "Up" in workflow.find_element(By.CSS_SELECTOR, ".badge").text
    assert browser.find_element(By.CSS_SELECTOR, ".headline").text.endswith("Every service is up")
    # Critical services first.
    listed = [
        e.get_attribute("data-node") for e in browser.find_elements(By.CSS_SELECTOR, "li.service")
    ]
    assert listed == ["antifraud", "checkout", "erp-gateway", "orders-workflow"]
    screenshot(browser, "status-page-at-rest", tmp_path)
    browser.execute_script("window.__kept = 'the same page';")
    freshness = browser.find_element(By.ID, "age")
    first_update = freshness.get_attribute("data-ago")

    running.kill_farm()
    until_blocking(lambda: effective(url, "orders-workflow") == "down")
    before = refreshes(browser)

    def red() -> bool:
        return steady(
            lambda: "st-down" in service(browser, "orders-workflow").get_attribute("class")
        )

    until_blocking(red)
    assert refreshes(browser) - before <= 2
    assert browser.execute_script("return window.__kept") == "the same page"
    # "updated N ago" follows the daemon's latest update.
    assert freshness.get_attribute("data-ago") != first_update
    assert freshness.text.startswith("· updated ")
    for node in ("orders-workflow", "checkout"):

        def said(node: str = node) -> tuple[str, str]:
            li = service(browser, node)
            badge = li.find_element(By.CSS_SELECTOR, ".badge").text
            return badge, li.find_element(By.CSS_SELECTOR, ".sentence").text

        badge, sentence = steady(said)
        assert badge.endswith("Down")
        assert sentence == "down because farm-oms-1 is down"
    headline = browser.find_element(By.CSS_SELECTOR, ".headline").text
    assert "2 critical services down: checkout and orders-workflow" in headline
    assert (
        browser.find_element(By.CSS_SELECTOR, '[data-part="headline"]').get_attribute("aria-live")
        == "polite"
    )

    # The farm is drawn as a root cause, its blast radius named.
    farm = browser.find_element(By.CSS_SELECTOR, '.topology .node[data-node="farm-oms-1"]')
    until_blocking(lambda: "root" in farm.get_attribute("class"))
    assert "st-down" in farm.get_attribute("class")
    assert farm.get_attribute("aria-label").endswith("down; takes 3 nodes down")
    farm.click()
    details = browser.find_element(By.ID, "details")
    until_blocking(lambda: "Takes down (its blast radius)" in details.text)
    assert "connect refused" in details.text
    assert "orders-workflow" in details.text
    taken = browser.find_element(By.CSS_SELECTOR, '.topology .node[data-node="checkout"]')
    assert "taken" in taken.get_attribute("class")
    screenshot(browser, "status-page-outage", tmp_path)


def test_the_what_if_box_draws_the_blast_radius(browser: Any, running: Estate) -> None:
    until_blocking(lambda: effective(running.url, "orders-workflow") == "up")
    loaded(browser, running.url + "/")
    browser.find_element(By.ID, "wi-node").send_keys("farm-oms-1")
    browser.find_element(By.CSS_SELECTOR, "#whatif button[type=submit]").click()
    result = browser.find_element(By.ID, "whatif-result")
    until_blocking(lambda: "CRITICAL" in result.text)
    assert result.text.startswith(
        "CRITICAL: shutdown farm-oms-1 takes critical checkout, orders-workflow down"
    )
    assert "orders-workflow ← farm-oms-1 (shutdown)" in result.text
    workflow = browser.find_element(By.CSS_SELECTOR, '.topology .node[data-node="orders-workflow"]')
    assert "wi-down" in workflow.get_attribute("class")
    browser.find_element(By.ID, "wi-clear").click()
    assert "wi-down" not in workflow.get_attribute("class")
    assert result.text == ""


def test_the_public_view_hides_what_it_should(browser: Any, running: Estate) -> None:
    loaded(browser, running.url + "/?view=public")
    text = browser.find_element(By.TAG_NAME, "body").text
    source = browser.page_source
    for word in INTERNAL:
        assert word not in source, word
    assert browser.find_elements(By.ID, "what-if") == []
    for name in ("Orders", "Checkout", "Order search"):
        assert name in text
    boxes = browser.find_elements(By.CSS_SELECTOR, ".topology .node")
    assert len(boxes) == 3
    checkout = next(b for b in boxes if "Checkout" in b.get_attribute("aria-label"))
    checkout.click()
    details = browser.find_element(By.ID, "details")
    until_blocking(lambda: "Needed by" in details.text)
    assert "Orders" in details.text
    assert "Probes" not in details.text
    for landmark in ("header", "nav", "main"):
        assert browser.find_elements(By.TAG_NAME, landmark)


def test_a_daemon_that_is_gone_is_said_and_greyed(browser: Any, running: Estate) -> None:
    loaded(browser, running.url + "/")
    banner = browser.find_element(By.ID, "banner")
    assert not banner.is_displayed()
    assert stop(running.process) == 0
    until_blocking(banner.is_displayed)
    assert "The watchdog cannot be reached since" in banner.text
    assert banner.text.endswith(" UTC: what you see may be stale.")
    assert banner.get_attribute("role") == "alert"
    assert "stale" in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
