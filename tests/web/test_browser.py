"""The dashboard in a real browser (headless Chromium): every page loads without a script
error, a job is followed live from available to completed, a discarded job is retried
with a click, a queue paused, a partition's lineage followed, a backfill watched to 100 %.

Without Chromium these tests skip, saying why; under CI=true they fail instead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import NodeThread, Server
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from support import wait_until
from web_support import QUEUE, Echo, FailOnce

from flowstone import (
    AssetRegistry,
    DailyPartitions,
    FlowStone,
    MultiPartitions,
    StaticPartitions,
    asset,
    materialize,
    materialize_all,
)
from flowstone.insights import STATUSES
from flowstone.testing import drain_queue
from flowstone.web import create_app

FAST = {"poll_interval": 0.5, "stage_interval": 0.1, "heartbeat_interval": 0.1, "node_expiry": 2.0}


class EveryHour(Echo):
    register = False
    cron = "0 * * * *"


@pytest.fixture
def served(driver: WebDriver, app_fs: FlowStone) -> Iterator[Server]:
    """The dashboard of `app_fs`, served over HTTP. The browser starts on a blank page with
    no complaint logged, and leaves the dashboard before it stops."""
    with Server(create_app(app_fs, interval=0.2)) as server:
        driver.get("about:blank")
        driver.get_log("browser")
        yield server
        driver.get("about:blank")


@pytest.fixture
def site(served: Server) -> str:
    """The dashboard's address."""
    return served.url


@pytest.fixture
def node(app_fs: FlowStone) -> Iterator[Callable[[], NodeThread]]:
    """Start a node on the test's database (queues `web` and `assets`) when asked."""
    started: list[NodeThread] = []

    def start() -> NodeThread:
        fs = FlowStone(app_fs.settings.database_url, assets=app_fs.assets, node="browser-node", **FAST)
        started.append(NodeThread(fs, {QUEUE: 5, "assets": 5}).__enter__())
        return started[-1]

    yield start
    for thread in started:
        thread.__exit__()


def until(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = 20) -> Any:
    """Wait for `condition` in the page (selenium polls it) or fail naming `what`; a live
    refresh may replace an element while it is read: it is read again."""
    stale = [StaleElementReferenceException]
    waiting = WebDriverWait(browser, timeout, poll_frequency=0.05, ignored_exceptions=stale)
    return waiting.until(condition, message=f"waiting for {what}")


def text(browser: WebDriver, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def errors(browser: WebDriver) -> list[str]:
    """What the page's scripts (and resource loads) complained about."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def press(browser: WebDriver, form_action_suffix: str) -> None:
    """Click the submit button of the form whose action ends with the suffix."""
    button = f"form[action$='{form_action_suffix}'] button[type=submit]"
    until(browser, lambda b: b.find_element(By.CSS_SELECTOR, button).click() or True, f"to press {button}")


def test_every_page_loads_and_goes_live(driver: WebDriver, site: str, app_fs: FlowStone) -> None:
    app_fs.schedule("0 * * * *", EveryHour, {"report": "<hourly>"})
    failed = app_fs.insert(FailOnce.new({"what": "<script>document.title='owned'</script>"}))
    drain_queue(QUEUE, fs=app_fs)
    run = materialize_all("report", "2025-01-12", fs=app_fs)
    materialize("raw", "2025-01-13", fs=app_fs)
    drain_queue("assets", with_scheduled=True, fs=app_fs)
    pages = {
        "/queues": "Queues",
        "/jobs": "Jobs",
        f"/jobs/{failed.id}": f"Job {failed.id}",
        "/cron": "Cron",
        "/assets": "Assets",
        "/assets/raw?start=2025-01-10&end=2025-01-14": "raw",
        "/assets/clean/history?partition=2025-01-12": "clean",
        f"/runs/{run.run_id}": "Run",
    }
    for path, heading in pages.items():
        driver.get(site + path)
        until(driver, lambda b: text(b, "#live") == "live", f"{path} to go live")
        shown = until(driver, lambda b: text(b, "h1"), f"{path}'s heading")  # read again if refreshed
        assert shown.startswith(heading), path
        assert errors(driver) == [], path
        assert "owned" not in driver.title
    driver.get(site + "/assets/raw?start=2025-01-10&end=2025-01-14")
    squares, _ = until(driver, strip_and_legend, "the strip")
    assert [status for status, _ in squares] == ["missing", "missing", "fresh", "failed", "missing"]


def strip_and_legend(browser: WebDriver) -> tuple[list[tuple[str, str]], dict[str, tuple[int, str]]]:
    """The strip's squares (status, colour) and the legend's badges (count, colour) by
    status, as shown, read in one go (a live refresh in between is read again)."""
    cells = browser.find_elements(By.CSS_SELECTOR, ".strip .cell")
    squares = [
        (c.get_attribute("data-status") or "", c.value_of_css_property("background-color")) for c in cells
    ]
    legend = {}
    for badge in browser.find_elements(By.CSS_SELECTOR, ".legend .badge"):
        count, status = badge.text.split(" ", 1)
        legend[status] = (int(count), badge.value_of_css_property("background-color"))
    return squares, legend


def test_the_partition_legend_counts_the_squares_shown(
    driver: WebDriver, site: str, app_fs: FlowStone
) -> None:
    materialize_all("report", "2025-01-12", fs=app_fs)  # raw 2025-01-12: fresh
    materialize("raw", "2025-01-13", fs=app_fs)  # fails: failed
    drain_queue("assets", with_scheduled=True, fs=app_fs)
    materialize("raw", "2025-01-14", fs=app_fs)  # queued
    app_fs.cancel_job(materialize("raw", "2025-01-11", fs=app_fs).job_id)  # cancelled
    driver.get(site + "/assets/raw?start=2025-01-08&end=2025-01-14")
    until(driver, lambda b: text(b, "#live") == "live", "the page to go live")
    squares, legend = until(driver, strip_and_legend, "the strip and its legend")
    shown = [status for status, _ in squares]
    assert shown == ["missing", "missing", "missing", "cancelled", "fresh", "failed", "queued"]
    assert sum(count for count, _ in legend.values()) == len(squares), "the legend counts every square"
    assert {status: count for status, (count, _) in legend.items()} == {s: shown.count(s) for s in STATUSES}
    assert all(colour == legend[status][1] for status, colour in squares), "a square has its status's colour"
    assert len({colour for _, colour in legend.values()}) == len(STATUSES), "a colour of its own per status"


def test_a_job_is_followed_live_from_available_to_completed(
    driver: WebDriver, site: str, app_fs: FlowStone, node: Callable[[], NodeThread]
) -> None:
    job = app_fs.insert(Echo.new({"follow": "me"}))
    driver.get(f"{site}/jobs/{job.id}")
    until(driver, lambda b: text(b, "#live") == "live", "the page to go live")
    until(driver, lambda b: text(b, "#job-state") == "available", "the job to show available")
    driver.execute_script("window.flowstoneMarker = 42")  # gone if the page reloaded
    node()
    until(driver, lambda b: text(b, "#job-state") == "completed", "the job to show completed")
    assert driver.execute_script("return window.flowstoneMarker") == 42


def test_a_discarded_job_is_retried_with_a_click(
    driver: WebDriver, site: str, app_fs: FlowStone, node: Callable[[], NodeThread]
) -> None:
    node()
    job = app_fs.insert(FailOnce.new({"what": "the import"}))
    wait_until(lambda: app_fs.get_job(job.id).state == "discarded", 20, "the job to be discarded")  # type: ignore[union-attr]
    driver.get(f"{site}/jobs/{job.id}")
    assert (
        text(driver, "#job-state") == "discarded"
        and "first attempt of the import fails" in driver.page_source
    )
    press(driver, f"/jobs/{job.id}/retry")
    until(driver, lambda b: "Retried 1 job(s)." in b.page_source, "the retry notice")
    until(driver, lambda b: text(b, "#job-state") == "completed", "the retried job to complete")
    assert app_fs.get_job(job.id).attempt == 2  # type: ignore[union-attr]


def test_a_queue_is_paused_from_the_queues_page(
    driver: WebDriver, site: str, app_fs: FlowStone, node: Callable[[], NodeThread]
) -> None:
    node()
    driver.get(f"{site}/queues")
    row = f"tr[data-queue='{QUEUE}']"
    until(driver, lambda b: "browser-node" in text(b, row), "the node to show in the queue's row")
    press(driver, f"/queues/{QUEUE}/pause")
    until(driver, lambda b: "Paused the queue." in b.page_source, "the pause notice")
    until(
        driver, lambda b: b.find_elements(By.CSS_SELECTOR, f"{row} [data-paused]"), "the queue to show paused"
    )
    job = app_fs.insert(Echo.new({"while": "paused"}))
    assert app_fs.get_job(job.id).state == "available"  # type: ignore[union-attr]


def test_a_partitions_lineage_is_followed_up_and_down(
    driver: WebDriver, site: str, app_fs: FlowStone
) -> None:
    materialize_all("report", "2025-01-12", fs=app_fs)
    drain_queue("assets", with_scheduled=True, fs=app_fs)
    driver.get(f"{site}/assets/clean?start=2025-01-10&end=2025-01-14")
    cell = ".strip .cell[data-partition='2025-01-12']"
    until(driver, lambda b: b.find_element(By.CSS_SELECTOR, cell).click() or True, "to open the partition")
    until(driver, lambda b: b.find_elements(By.ID, "lineage"), "the lineage of clean 2025-01-12")
    assert "report 2025-01-12" in text(driver, "#downstream")
    until(driver, lambda b: b.find_element(By.CSS_SELECTOR, "#upstream a").click() or True, "to go upstream")
    until(driver, lambda b: text(b, "h1") == "raw 2025-01-12", "raw's partition page")
    assert "clean 2025-01-12" in text(driver, "#downstream") and errors(driver) == []


def test_a_backfill_is_watched_to_100_percent(
    driver: WebDriver, site: str, app_fs: FlowStone, node: Callable[[], NodeThread]
) -> None:
    node()
    driver.get(f"{site}/assets/raw?start=2025-01-01&end=2025-01-05")
    until(driver, lambda b: text(b, "#live") == "live", "the page to go live")
    form = driver.find_element(By.ID, "backfill")
    for name, value in (("start", "2025-01-01"), ("end", "2025-01-05")):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(driver, lambda b: "/runs/" in b.current_url, "the run page")
    until(driver, lambda b: text(b, "#run-percent") == "100 %", "the backfill to reach 100 %")
    bar = driver.find_element(By.ID, "run-progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "5"
    assert text(driver, "#run-counts") == "5 / 5 finished"


def test_tabs_share_one_event_stream(driver: WebDriver, served: Server, app_fs: FlowStone) -> None:
    hub = served.app.state.dashboard.hub
    first = driver.current_window_handle
    tabs = []
    for path in ("/jobs", "/jobs", "/queues", "/cron", "/assets", "/queues", "/cron"):
        driver.switch_to.new_window("tab")
        driver.get(served.url + path)
        until(driver, lambda b: text(b, "#live") == "live", f"tab {len(tabs) + 1} to go live")
        tabs.append(driver.current_window_handle)
    assert hub.subscribers == 1  # seven tabs, one connection (browsers allow six per server)
    driver.switch_to.window(tabs[0])
    driver.close()  # the tab holding the stream: another one takes over
    driver.switch_to.window(tabs[1])
    job = app_fs.insert(Echo.new({"after": "takeover"}))
    until(
        driver, lambda b: b.find_elements(By.CSS_SELECTOR, f"tr[data-job='{job.id}']"), "the new job to show"
    )
    assert hub.subscribers == 1
    for handle in tabs[1:]:
        driver.switch_to.window(handle)
        driver.close()
    driver.switch_to.window(first)


def test_a_grid_cell_shows_its_status_and_opens_its_partition(driver: WebDriver, flowstone_url: str) -> None:
    registry = AssetRegistry()
    days = DailyPartitions("2025-01-01")
    cells = MultiPartitions({"date": days, "region": StaticPartitions(["eu", "us"])})

    @asset(partitions=cells, registry=registry)
    def sales(ctx: Any, deps: dict[str, Any]) -> int:
        return 1

    fs = FlowStone(flowstone_url, assets=registry)
    materialize_all("sales", "2025-01-02|us", fs=fs)
    drain_queue("assets", fs=fs)
    with Server(create_app(fs, interval=0.2)) as server:
        driver.get(f"{server.url}/assets/sales?start=2025-01-01|eu&end=2025-01-02|us")
        shown = until(driver, grid_cells, "the grid")
        assert [status for status, _ in shown] == ["missing", "missing", "missing", "fresh"]
        assert shown[3][1] != shown[0][1], "a fresh cell is coloured apart from a missing one"
        header = ["date", "\\", "region", "eu", "us"]
        until(driver, lambda b: text(b, ".partition-grid thead").split() == header, "the grid's header")
        fresh = ".partition-grid .cell[data-partition='2025-01-02|us']"
        until(driver, lambda b: b.find_element(By.CSS_SELECTOR, fresh).click() or True, "to open the cell")
        until(driver, lambda b: text(b, "h1") == "sales 2025-01-02|us", "the partition's page")
        assert errors(driver) == []
        driver.get("about:blank")
    fs.close()


def grid_cells(browser: WebDriver) -> list[tuple[str, str]]:
    """The grid's cells (status, colour) row by row, read in one go."""
    cells = browser.find_elements(By.CSS_SELECTOR, ".partition-grid td .cell")
    return [
        (c.get_attribute("data-status") or "", c.value_of_css_property("background-color")) for c in cells
    ]
