"""A job with 10 MB of args: lists carry a preview of its args, its own page the first
64 KB of them (its JSON twin all of them), so every page stays small and opens within
two seconds in a real browser."""

from __future__ import annotations

import pytest
from browser import Server
from selenium.webdriver.remote.webdriver import WebDriver
from web_support import Client, Echo

from flowstone import FlowStone
from flowstone.web import create_app

BIG = {"blob": "x" * 10_000_000, "n": 1}
SMALL_PAGE = 200_000  # bytes: a page of 100 jobs, each with a preview of its args


@pytest.mark.anyio
async def test_lists_preview_large_args_and_the_job_page_folds_them(
    client: Client, app_fs: FlowStone
) -> None:
    job = await app_fs.ainsert(Echo.new(BIG))
    small = await app_fs.ainsert(Echo.new({"n": 2}))
    listed = await client.get("/jobs")
    assert listed.status_code == 200 and len(listed.content) < SMALL_PAGE
    assert "{&#34;blob&#34;:&#34;xxxxxxxx" in listed.text
    api = await client.get("/api/jobs")
    assert len(api.content) < SMALL_PAGE
    by_id = {row["id"]: row for row in api.json()["jobs"]}
    assert "args" not in by_id[job.id] and by_id[job.id]["args_size"] == 10_000_017
    assert len(by_id[job.id]["args_preview"]) == 200 and by_id[job.id]["args_preview"].endswith("…")
    assert by_id[small.id]["args"] == {"n": 2} and by_id[small.id]["args_preview"] == '{"n":2}'
    page = await client.get(f"/jobs/{job.id}")
    assert page.status_code == 200 and len(page.content) < SMALL_PAGE
    assert (
        "The first 65,536 of 10,000,017 characters" in page.text and f'href="/api/jobs/{job.id}"' in page.text
    )
    assert (await client.get(f"/api/jobs/{job.id}")).json()["job"]["args"] == BIG
    whole = await client.get(f"/jobs/{small.id}")
    assert "&#34;n&#34;: 2" in whole.text and "The first" not in whole.text


def test_a_10_mb_job_leaves_every_page_quick_in_a_browser(driver: WebDriver, app_fs: FlowStone) -> None:
    app_fs.insert_all([Echo.new({"n": n}) for n in range(50)])
    job = app_fs.insert(Echo.new(BIG))  # the newest: first on the list
    with Server(create_app(app_fs)) as server:
        driver.get(f"{server.url}/queues")  # the dashboard's first request opens its pool
        for path in ("/jobs", f"/jobs/{job.id}", "/api/jobs"):
            driver.get(f"{server.url}{path}")  # returns once the page has loaded
            size = driver.execute_script("return document.documentElement.outerHTML.length")
            took = driver.execute_script(NAVIGATION) / 1000
            assert size < SMALL_PAGE, (path, size)
            assert took < 2.0, f"{path} took {took:.2f} s from request to loaded"
        driver.get("about:blank")


NAVIGATION = "return performance.getEntriesByType('navigation')[0].loadEventEnd"
"""Milliseconds from the start of the navigation until the page had loaded (as the browser
measures it: the server's answer, parsing, layout; not the test's driver round trips)."""
