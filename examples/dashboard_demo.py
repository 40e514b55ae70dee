"""The dashboard on a lively demo: jobs in every state, a daily asset pipeline with a
failing day, a node running it all, and the dashboard at http://127.0.0.1:8765/.

    python examples/dashboard_demo.py                  # until Ctrl-C (--port N: another port)
    python examples/dashboard_demo.py --screenshots docs   # save two screenshots and stop

Needs `flowstone[web]` (and, for screenshots, Debian's chromium and chromium-driver). It
works in its own schemas, `dashboard_demo` (and `dashboard_demo_assets`, where the assets'
values are stored), of FLOWSTONE_DATABASE_URL (or the embedded PostgreSQL), which it
empties first.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import uvicorn

from flowstone import AssetRegistry, Context, DailyPartitions, FlowStone, Snooze, Worker, asset, backfill
from flowstone.web import create_app

SCHEMA = "dashboard_demo"
DAYS = DailyPartitions(start="2025-01-01")
BROKEN_DAYS = {"2025-02-11", "2025-02-12"}
assets = AssetRegistry()
app = FlowStone(
    schema=SCHEMA, assets=assets, queues={"mailers": 10, "reports": 3, "webhooks": 5, "assets": 4}
)


class SendEmail(Worker):
    """Sends a mail (here: does nothing)."""

    name = "demo.SendEmail"
    queue = "mailers"

    def perform(self, job: Any) -> None:
        return None


class BuildReport(Worker):
    """Fails for the `acme` tenant, whose export is broken; retried a few times."""

    name = "demo.BuildReport"
    queue = "reports"
    max_attempts = 3

    def perform(self, job: Any) -> None:
        if job.args["tenant"] == "acme":
            raise RuntimeError(f"export of tenant {job.args['tenant']!r} has no header row")


class CallWebhook(Worker):
    """Waits on a rate-limited partner: snoozes."""

    name = "demo.CallWebhook"
    queue = "webhooks"

    def perform(self, job: Any) -> Snooze:
        return Snooze(600)


@asset(partitions=DAYS, registry=assets, max_attempts=1)
def raw_orders(ctx: Context, deps: dict[str, Any]) -> list[float]:
    """The day's orders, as exported."""
    if ctx.partition.isoformat() in BROKEN_DAYS:
        raise ValueError(f"no export file for {ctx.partition}")
    return [random.uniform(5, 200) for _ in range(20)]


@asset(depends_on=[raw_orders], partitions=DAYS, registry=assets)
def cleaned_orders(ctx: Context, deps: dict[str, Any]) -> list[float]:
    """Orders without refunds."""
    return [amount for amount in deps["raw_orders"] if amount > 10]


@asset(depends_on=[cleaned_orders], partitions=DAYS, registry=assets)
def daily_revenue(ctx: Context, deps: dict[str, Any]) -> float:
    """The day's revenue."""
    return round(sum(deps["cleaned_orders"]), 2)


@asset(depends_on=[daily_revenue], partitions=DAYS, registry=assets)
def revenue_forecast(ctx: Context, deps: dict[str, Any]) -> float:
    """Tomorrow's revenue, roughly."""
    return deps["daily_revenue"] * 1.02


def reset() -> None:
    """An empty, migrated demo schema (and no asset values from an earlier run)."""
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        for schema in (SCHEMA, f"{SCHEMA}_assets"):
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    app.migrate()


def seed() -> None:
    """Jobs in every state and a backfill of the pipeline (two days of it fail)."""
    app.insert_all([SendEmail.new({"to": f"user{n}@example.com"}) for n in range(400)])
    tenants = ["globex", "initech", "acme", "umbrella"]
    app.insert_all([BuildReport.new({"tenant": tenants[n % 4], "month": "2025-02"}) for n in range(40)])
    app.insert_all([CallWebhook.new({"partner": "billing", "event": n}) for n in range(12)])
    app.insert_all([SendEmail.new({"to": f"later{n}@example.com"}, scheduled_in=3600) for n in range(25)])
    for name in ("raw_orders", "cleaned_orders", "daily_revenue", "revenue_forecast"):  # upstream first
        backfill(name, start="2025-01-01", end="2025-02-28", fs=app)


def spread_history() -> None:
    """Spread the finished jobs over the last quarter of an hour, as if the demo had been
    running that long (so the throughput chart has a history)."""
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {SCHEMA}.jobs SET completed_at = now() - random() * interval '14 minutes' "  # noqa: S608
            "WHERE state = 'completed'"
        )


async def settled(deadline: float = 120) -> None:
    """Once the node has worked through what it can of the demo's jobs."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while loop.time() < give_up:
        counts = await app.aqueue_counts()
        if not any(states.get("available") or states.get("executing") for states in counts.values()):
            return
        await asyncio.sleep(0.2)  # a demo's progress check: the node itself is woken by NOTIFY


def screenshots(url: str, folder: Path) -> None:
    """The queues page and an asset's partitions, as PNG files in `folder` (each taken
    once the page is live)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1360,900"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp()}")
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        pages = {
            "/queues": "dashboard-queues.png",
            "/assets/daily_revenue?start=2025-01-01&end=2025-02-28": "dashboard-partitions.png",
        }
        for page, name in pages.items():
            browser.get(url + page)
            live = WebDriverWait(browser, 30)
            live.until(lambda b: b.find_element(By.ID, "live").text == "live", "the page to go live")
            browser.save_screenshot(str(folder / name))
            print(f"saved {folder / name}")
    finally:
        browser.quit()


async def main(shots: Path | None, port: int) -> None:
    """Seed, run a node and the dashboard; stop on Ctrl-C (or after the screenshots)."""
    reset()
    seed()
    await app.start()
    await settled()
    spread_history()
    config = uvicorn.Config(create_app(app), port=port, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)  # the demo's start-up check: uvicorn offers no event
        print(f"dashboard on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
        if shots is not None:
            await asyncio.to_thread(screenshots, f"http://127.0.0.1:{port}", shots)
            server.should_exit = True
        await serving
    finally:
        await app.stop()
        await app.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--screenshots", type=Path, help="save two screenshots in this folder and stop")
    parser.add_argument("--port", type=int, default=8765, help="the dashboard's port (default 8765)")
    arguments = parser.parse_args()
    try:
        asyncio.run(main(arguments.screenshots, arguments.port))
    except KeyboardInterrupt:
        sys.exit(130)
