"""The dashboard over HTTP (in process): every page and its JSON twin, escaping, CSRF,
read-only, the auth hook, actions and their confirmations, errors, mounting."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route
from web_support import QUEUE, Client, Echo, FailOnce, client_for, heartbeat

from flowstone import (
    AssetRegistry,
    DailyPartitions,
    DynamicPartitions,
    FlowStone,
    MultiPartitions,
    StaticPartitions,
    Workflow,
    amaterialize_all,
    asset,
)
from flowstone.testing import adrain_queue
from flowstone.web import basic_auth, create_app, token_auth
from flowstone.web.pages import default_window

pytestmark = pytest.mark.anyio

SCRIPT = "<script>alert('owned')</script>"


async def seed(fs: FlowStone) -> dict[str, Any]:
    """A discarded job with a traceback, a completed one, two available ones, and the
    asset chain materialized for one day."""
    failed = await fs.ainsert(FailOnce.new({"what": SCRIPT}, tags=["<b>tag</b>"]))
    done = await fs.ainsert(Echo.new({"n": 0}))
    await adrain_queue(QUEUE, fs=fs)
    waiting = await fs.ainsert_all([Echo.new({"n": 1}), Echo.new({"html": SCRIPT})])
    run = await amaterialize_all("report", "2025-01-12", fs=fs)
    await adrain_queue("assets", with_scheduled=True, fs=fs)
    flow = await fs.ainsert_workflow(
        Workflow().add("a", Echo.new({}, queue="flows")).add("b", Echo.new({}, queue="flows"), deps=["a"])
    )
    await fs.acancel_job(flow["a"].id)
    await fs.cron.aadd("seeded", "0 * * * *", Echo)
    return {
        "failed": failed.id,
        "done": done.id,
        "waiting": [job.id for job in waiting],
        "run": run.run_id,
        "workflow": flow["a"].meta["workflow"]["id"],
        "cancelled": flow["a"].id,
    }


async def rows(fs: FlowStone, query: str) -> list[dict[str, Any]]:
    async with fs.aconnection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query)
        return await cursor.fetchall()


async def test_every_page_renders_what_its_api_serves(client: Client, app_fs: FlowStone) -> None:
    seeded = await seed(app_fs)
    queues = (await client.get("/api/queues")).json()
    web = next(q for q in queues["queues"] if q["queue"] == QUEUE)
    assert {k: v for k, v in web["counts"].items() if v} == {"available": 2, "completed": 1, "discarded": 1}
    assert queues["estimated"] == [] and len(queues["throughput"]) == 15
    page = await client.get("/queues")
    assert page.status_code == 200 and "<h1>Queues</h1>" in page.text and f'data-queue="{QUEUE}"' in page.text

    listed = (await client.get("/api/jobs", params={"queue": QUEUE, "state": "available"})).json()
    assert [job["id"] for job in listed["jobs"]] == sorted(seeded["waiting"], reverse=True)
    assert (await client.get("/api/jobs", params={"args": "n=1"})).json()["jobs"][0]["id"] == seeded[
        "waiting"
    ][0]
    one = (await client.get(f"/api/jobs/{seeded['failed']}")).json()
    assert one["job"]["state"] == "discarded" and "Traceback" in one["job"]["errors"][0]["traceback"]
    detail = await client.get(f"/jobs/{seeded['failed']}")
    assert detail.status_code == 200 and "first attempt of" in detail.text and "Traceback" in detail.text

    assets = (await client.get("/api/assets")).json()["assets"]
    assert [(a["name"], a["counts"]["fresh"], a["health"]) for a in assets] == [
        ("raw", 1, "missing"),  # its other days were never materialized
        ("clean", 1, "missing"),
        ("report", 1, "missing"),
    ]
    assert "<svg" in (await client.get("/assets")).text
    strip = await client.get(
        "/api/assets/clean/partitions", params={"start": "2025-01-11", "end": "2025-01-13"}
    )
    assert [(p["partition"], p["status"]) for p in strip.json()["partitions"]] == [
        ("2025-01-11", "missing"),
        ("2025-01-12", "fresh"),
        ("2025-01-13", "missing"),
    ]
    assert 'data-status="fresh"' in (await client.get("/assets/clean?start=2025-01-11&end=2025-01-13")).text
    history = (await client.get("/api/assets/clean/history", params={"partition": "2025-01-12"})).json()
    assert [r["asset"] for r in history["lineage"]["upstream"]] == ["raw"]
    assert [r["asset"] for r in history["lineage"]["downstream"]] == ["report"]
    assert 'id="upstream"' in (await client.get("/assets/clean/history?partition=2025-01-12")).text
    run = (await client.get(f"/api/runs/{seeded['run']}")).json()
    assert (run["total"], run["finished"], run["percent"], run["done"]) == (3, 3, 100, True)
    assert "100 %" in (await client.get(f"/runs/{seeded['run']}")).text
    cron = (await client.get("/api/cron")).json()
    assert cron["entries"] == [] and [entry["name"] for entry in cron["stored"]] == ["seeded"]
    assert (await client.get("/cron")).status_code == 200
    home = await client.get("/")
    assert home.status_code == 307 and home.headers["location"] == "/queues"


async def test_the_job_list_shows_an_asset_job_as_its_asset_and_partition(
    client: Client, app_fs: FlowStone
) -> None:
    await amaterialize_all("clean", "2025-01-12", fs=app_fs)
    await app_fs.ainsert(Echo.new({"n": 1}))
    listed = (await client.get("/api/jobs")).json()["jobs"]
    assert [job["materialization"] for job in listed] == [
        None,
        {"asset": "clean", "partition": "2025-01-12"},
        {"asset": "raw", "partition": "2025-01-12"},
    ]
    page = (await client.get("/jobs")).text
    cells = re.findall(r'<td class="args" data-materializes="(\w+)"[^>]*>(.*?)</td>', page, re.S)
    assert [(asset, re.sub(r"\s+", " ", html).strip()) for asset, html in cells] == [
        (
            name,
            f'<a href="/assets/{name}">{name}</a> · '
            f'<a href="/assets/{name}/history?partition=2025-01-12&amp;">2025-01-12</a>',
        )
        for name in ("clean", "raw")
    ]
    assert "{&#34;n&#34;:1}" in page, "other jobs show their args (a one-line preview)"


async def test_values_from_the_database_are_escaped(client: Client, app_fs: FlowStone) -> None:
    seeded = await seed(app_fs)
    for path in (
        "/jobs",
        f"/jobs/{seeded['failed']}",
        f"/jobs/{seeded['waiting'][1]}",
        "/jobs?tag=%3Cb%3Etag%3C/b%3E",
    ):
        page = await client.get(path)
        assert page.status_code == 200
        assert SCRIPT not in page.text and "<b>tag</b>" not in page.text, path
        assert "&lt;script&gt;" in page.text or "&#34;" in page.text, path
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert (await client.get(f"/api/jobs/{seeded['waiting'][1]}")).json()["job"]["args"]["html"] == SCRIPT


async def test_a_job_action_leads_back_to_the_job_with_a_notice(client: Client, app_fs: FlowStone) -> None:
    seeded = await seed(app_fs)
    path = f"/jobs/{seeded['failed']}/retry"
    done = await client.submit(path, {})
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{seeded['failed']}?notice=retried"
    assert (await app_fs.aget_job(seeded["failed"])).state == "available"  # type: ignore[union-attr]
    assert "Retried 1 job(s)." in (await client.get(done.headers["location"])).text


async def test_a_failed_workflow_job_offers_to_retry_its_workflow(client: Client, app_fs: FlowStone) -> None:
    seeded = await seed(app_fs)
    page = await client.get(f"/jobs/{seeded['cancelled']}")
    path = f"/workflows/{seeded['workflow']}/retry"
    assert f'action="{path}"' in page.text
    done = await client.submit(path, {})
    assert done.status_code == 303 and done.headers["location"] == "/jobs?notice=retried&count=2"
    flow = await app_fs.aworkflow(seeded["workflow"])
    assert flow is not None and [job.job.state for job in flow.jobs] == ["available", "scheduled"]


async def test_the_cron_page_edits_stored_entries(client: Client, app_fs: FlowStone) -> None:
    await seed(app_fs)
    page = await client.get("/cron")
    assert "seeded" in page.text and 'action="/cron/entries/seeded/pause"' in page.text
    form = {"name": "nightly", "expression": "0 3 * * *", "worker": Echo.name, "args": '{"n": 1}'}
    added = await client.submit("/cron/entries", form)
    assert added.status_code == 303 and added.headers["location"] == "/cron?notice=cron-added"
    assert [(e.name, e.args) for e in await app_fs.cron.alist()] == [("nightly", {"n": 1}), ("seeded", {})]
    listed = (await client.get("/api/cron")).json()["stored"]
    assert [(e["name"], e["paused"], e["shadowed"]) for e in listed] == [
        ("nightly", False, False),
        ("seeded", False, False),
    ]
    refused = await client.submit("/cron/entries", {**form, "expression": "nope"})
    assert refused.status_code == 400 and "not a valid" in refused.text


QUOTED = 'it\'s "quoted"'
"""Args text with both quotes: the edit form's attribute must carry it back intact."""


async def test_the_cron_page_updates_a_stored_entry(client: Client, app_fs: FlowStone) -> None:
    await app_fs.cron.aadd("nightly", "0 3 * * *", Echo, args={"n": 1}, timezone="Europe/Paris")
    page = await client.get("/cron")
    assert 'action="/cron/entries/nightly"' in page.text and """value='{"n": 1}'""" in page.text
    form = {"expression": "30 4 * * *", "args": json.dumps({"n": 2, "q": QUOTED}), "timezone": "UTC"}
    updated = await client.submit("/cron/entries/nightly", form)
    assert updated.status_code == 303 and updated.headers["location"] == "/cron?notice=cron-updated"
    (entry,) = await app_fs.cron.alist()
    assert (entry.expression, entry.args, entry.timezone) == ("30 4 * * *", {"n": 2, "q": QUOTED}, "UTC")
    shown = (await client.get("/cron")).text
    assert """value='{"n": 2, "q": "it\\u0027s \\"quoted\\""}'""" in shown, "args survive the quotes"
    kept = await client.submit("/cron/entries/nightly", {"expression": "", "args": "", "timezone": ""})
    assert kept.status_code == 303 and (await app_fs.cron.alist())[0].expression == "30 4 * * *"
    for bad, says in (({"expression": "nope"}, "not a valid"), ({"args": "[1"}, "must be a JSON object")):
        refused = await client.submit("/cron/entries/nightly", bad)
        assert refused.status_code == 400 and says in refused.text, bad
    missing = await client.submit("/cron/entries/absent", {"expression": "0 * * * *"})
    assert missing.status_code == 400 and "absent" in missing.text


Form = list[tuple[str, str]]


def state_changing_routes(routes: list[BaseRoute], prefix: str = "") -> list[str]:
    """The path of every route (mounted ones too) that takes a method other than GET/HEAD."""
    found: list[str] = []
    for route in routes:
        if isinstance(route, Mount):
            found += state_changing_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) and set(route.methods or ()) - {"GET", "HEAD"}:
            found.append(prefix + route.path)
    return found


def acting_requests(seeded: dict[str, Any]) -> dict[str, list[tuple[str, Form]]]:
    """For each state-changing route, requests that act when they carry the CSRF token."""
    failed, (first, second) = seeded["failed"], seeded["waiting"]
    return {
        "/jobs/bulk": [("/jobs/bulk", [("action", "cancel"), ("confirm", "yes"), ("ids", str(first))])],
        "/jobs/{job_id:int}/{action}": [
            (f"/jobs/{failed}/retry", []),
            (f"/jobs/{second}/cancel", []),
            (f"/jobs/{second}/delete", []),
        ],
        "/queues/{queue}/{action}": [
            (f"/queues/{QUEUE}/pause", []),
            (f"/queues/{QUEUE}/resume", []),
            (f"/queues/{QUEUE}/scale", [("limit", "7")]),
        ],
        "/assets/{name}/materialize": [("/assets/raw/materialize", [("partition", "2025-01-05")])],
        "/workflows/{workflow_id}/retry": [(f"/workflows/{seeded['workflow']}/retry", [])],
        "/cron/entries": [
            ("/cron/entries", [("name", "added"), ("expression", "*/5 * * * *"), ("worker", Echo.name)])
        ],
        "/cron/entries/{name}": [("/cron/entries/seeded", [("expression", "*/7 * * * *")])],
        "/cron/entries/{name}/{action}": [
            ("/cron/entries/seeded/pause", []),
            ("/cron/entries/seeded/resume", []),
            ("/cron/entries/seeded/delete", []),
        ],
        "/assets/{name}/backfill": [
            ("/assets/raw/backfill", [("start", "2025-01-01"), ("end", "2025-01-03")])
        ],
    }


async def snapshot(fs: FlowStone) -> list[dict[str, Any]]:
    """What an action can change: every job's state, the queue controls, the records."""
    return await rows(
        fs,
        "SELECT (SELECT json_agg(json_build_array(id, state) ORDER BY id) FROM flowstone.jobs) AS jobs,"
        " (SELECT json_agg(c ORDER BY queue, node) FROM flowstone.queue_controls c) AS controls,"
        " (SELECT count(*) FROM flowstone.materializations) AS records,"
        " (SELECT json_agg(json_build_array(name, paused, expression, args, timezone) ORDER BY name)"
        "  FROM flowstone.cron_entries) AS c",
    )


async def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(
    client: Client, app_fs: FlowStone
) -> None:
    app = create_app(app_fs)
    requests = acting_requests(await seed(app_fs))
    assert sorted(state_changing_routes(app.routes)) == sorted(requests), (
        "give a new action an acting request"
    )
    token = await client.token()
    async with client_for(app) as stranger:  # a page of another site has no cookie to copy
        for path, form in (request for examples in requests.values() for request in examples):
            before = await snapshot(app_fs)
            for sender, csrf in ((client, []), (client, [("csrf", "forged")]), (stranger, [("csrf", token)])):
                refused = await sender.post(path, data=dict_of([*form, *csrf]))
                assert refused.status_code == 403 and "CSRF" in refused.text, (path, csrf)
            assert await snapshot(app_fs) == before, path
            acted = await client.submit(path, form)
            assert acted.status_code == 303, (path, acted.text)
            assert await snapshot(app_fs) != before, f"{path} changed nothing, so its refusal proved nothing"


def dict_of(form: Form) -> dict[str, list[str]]:
    """A form as httpx posts it (repeated names as lists)."""
    posted: dict[str, list[str]] = {}
    for name, value in form:
        posted.setdefault(name, []).append(value)
    return posted


async def test_read_only_hides_and_refuses_actions(app_fs: FlowStone) -> None:
    seeded = await seed(app_fs)
    async with client_for(create_app(app_fs, read_only=True)) as http:
        for path in ("/queues", "/jobs", f"/jobs/{seeded['failed']}", "/assets", "/assets/clean", "/cron"):
            page = await http.get(path)
            assert page.status_code == 200 and 'method="post"' not in page.text, path
            assert "read-only" in page.text
        token = re.search(r"flowstone_csrf=([^;]+)", page.headers.get("set-cookie", ""))
        csrf = [("csrf", token.group(1) if token else "")]
        before = await snapshot(app_fs)
        for path, form in (request for examples in acting_requests(seeded).values() for request in examples):
            refused = await http.post(path, data=dict_of([*form, *csrf]))
            assert refused.status_code == 403 and "read-only" in refused.text, path
        assert await snapshot(app_fs) == before


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_the_auth_hook_guards_every_path(app_fs: FlowStone) -> None:
    async with client_for(create_app(app_fs, auth=basic_auth("ops", "s3cret"))) as http:
        for path in ("/queues", "/api/jobs", "/metrics", "/static/dashboard.js", "/events"):
            refused = await http.get(path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic"), (
                path
            )
        assert (await http.get("/queues", headers=_basic("ops", "wrong"))).status_code == 401
        assert (await http.get("/queues", headers=_basic("ops", "s3cret"))).status_code == 200
    token = "t0ken-of-the-ops-team"
    async with client_for(create_app(app_fs, auth=token_auth(token))) as http:
        assert (
            await http.get("/api/queues", headers={"authorization": f"Bearer {token}"})
        ).status_code == 200
        assert (await http.get("/api/queues", headers=_basic("anyone", token))).status_code == 200
        assert (await http.get("/api/queues", headers={"authorization": "Bearer nope"})).status_code == 401

    async def only_from_the_office(request: Request) -> bool:
        return request.headers.get("x-office") == "yes"

    async with client_for(create_app(app_fs, auth=only_from_the_office)) as http:
        assert (await http.get("/queues")).status_code == 401
        assert (await http.get("/queues", headers={"x-office": "yes"})).status_code == 200
    with pytest.raises(ValueError, match="at least 16"):
        token_auth("short")


async def test_bulk_actions_act_only_once_confirmed(client: Client, app_fs: FlowStone) -> None:
    seeded = await seed(app_fs)
    ids = [("ids", job_id) for job_id in seeded["waiting"]]
    back = ("back", f"/jobs?queue={QUEUE}")
    asked = await client.submit("/jobs/bulk", [("action", "cancel"), back, *ids])
    assert asked.status_code == 200 and "Cancel 2 jobs?" in asked.text
    assert {job.state for job in await app_fs.alist_jobs(state="available")} == {"available"}
    done = await client.submit("/jobs/bulk", [("action", "cancel"), ("confirm", "yes"), back, *ids])
    assert (
        done.status_code == 303
        and done.headers["location"] == f"/jobs?queue={QUEUE}&notice=cancelled&count=2"
    )
    assert await app_fs.alist_jobs(state="available") == []
    again = await client.submit(
        "/jobs/bulk", [("action", "retry"), ("confirm", "yes"), ("back", "//evil.example"), *ids]
    )
    assert again.headers["location"] == "/jobs?notice=retried&count=2"
    nothing = await client.submit("/jobs/bulk", [("action", "retry")])
    assert nothing.status_code == 400 and "select at least one job" in nothing.text


async def test_queue_actions_store_and_signal_the_control(client: Client, app_fs: FlowStone) -> None:
    paused = await client.submit(f"/queues/{QUEUE}/pause", {})
    assert paused.status_code == 303 and paused.headers["location"] == "/queues?notice=paused"
    assert (await client.submit(f"/queues/{QUEUE}/scale", {"limit": "7"})).status_code == 303
    controls = await rows(app_fs, 'SELECT queue, node, paused, "limit" FROM flowstone.queue_controls')
    assert controls == [{"queue": QUEUE, "node": "*", "paused": True, "limit": 7}]
    await heartbeat(app_fs, "n1", {QUEUE: {"limit": 7, "configured_limit": 5, "paused": True, "running": 0}})
    page = (await client.get("/queues")).text
    assert 'data-override="web/*"' in page and "configured 5</span>" in page
    web = next(q for q in (await client.get("/api/queues")).json()["queues"] if q["queue"] == QUEUE)
    assert (web["limit"], web["configured_limit"], [o["limit"] for o in web["overrides"]]) == (7, 5, [7])
    reset = await client.submit(f"/queues/{QUEUE}/reset", {})
    assert reset.headers["location"] == "/queues?notice=reset"
    assert await rows(app_fs, "SELECT * FROM flowstone.queue_controls") == []
    assert "data-override" not in (await client.get("/queues")).text
    bad = await client.submit(f"/queues/{QUEUE}/scale", {"limit": "many"})
    assert bad.status_code == 400 and "limit must be a positive whole number" in bad.text
    assert (await client.submit(f"/queues/{QUEUE}/explode", {})).status_code == 404


async def test_materialize_and_backfill_lead_to_their_run(client: Client, app_fs: FlowStone) -> None:
    one = await client.submit("/assets/raw/materialize", {"partition": "2025-01-05"})
    assert one.status_code == 303 and one.headers["location"].startswith("/runs/")
    assert (await client.get("/api" + one.headers["location"])).json()["total"] == 1
    orphan = await client.submit("/assets/clean/materialize", {"partition": "2025-01-06"})
    assert orphan.status_code == 400 and "raw 2025-01-06, which has never been materialized" in orphan.text
    closure = await client.submit(
        "/assets/report/materialize", {"partition": "2025-01-05", "upstream": "yes"}
    )
    records = (await client.get("/api" + closure.headers["location"])).json()["records"]
    assert sorted(r["asset"] for r in records) == ["clean", "raw", "report"]
    backfill = await client.submit("/assets/raw/backfill", {"start": "2025-01-01", "end": "2025-01-03"})
    assert (await client.get("/api" + backfill.headers["location"])).json()["counts"] == {"pending": 3}
    bad = await client.submit("/assets/raw/backfill", {"start": "2024-12-30", "end": "2025-01-03"})
    assert bad.status_code == 400 and "before the first partition" in bad.text
    unknown = await client.submit("/assets/rwa/materialize", {"partition": "2025-01-05"})
    assert unknown.status_code == 404 and "did you mean &#39;raw&#39;" in unknown.text


async def test_errors_are_one_line_pages_or_json(client: Client) -> None:
    assert (await client.get("/jobs/999999")).status_code == 404
    assert (await client.get("/api/jobs/999999")).json() == {"error": "no job with id 999999"}
    bad = await client.get("/api/jobs", params={"state": "bogus"})
    assert bad.status_code == 400 and "unknown job state 'bogus'" in bad.json()["error"]
    assert (await client.get("/api/assets/nope/partitions")).status_code == 404
    wide = await client.get("/api/assets/raw/partitions", params={"start": "2025-01-01", "end": "2028-01-01"})
    assert wide.status_code == 400 and "at most 1000" in wide.json()["error"]


async def test_the_dashboard_mounts_under_a_prefix(app_fs: FlowStone) -> None:
    host = Starlette(routes=[Mount("/ops/flowstone", create_app(app_fs))])
    async with client_for(host) as http:
        assert (await http.get("/ops/flowstone/")).headers["location"] == "/ops/flowstone/queues"
        page = await http.get("/ops/flowstone/queues")
        assert page.status_code == 200 and 'href="/ops/flowstone/jobs"' in page.text
        assert 'data-root="/ops/flowstone"' in page.text
        assert "Path=/ops/flowstone" in page.headers["set-cookie"]
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        paused = await http.post(f"/ops/flowstone/queues/{QUEUE}/pause", data={"csrf": token})
        assert paused.headers["location"] == "/ops/flowstone/queues?notice=paused"
        assert (await http.get("/ops/flowstone/static/dashboard.css")).status_code == 200


def test_a_multi_dimensional_strip_shows_the_box_of_each_dimensions_latest() -> None:
    days, regions = DailyPartitions("2025-01-01"), StaticPartitions(["eu", "us"])
    now = datetime(2025, 3, 2, 12, tzinfo=UTC)
    grid = MultiPartitions({"date": days, "region": regions})
    assert default_window(grid, now) == ("2025-01-02|eu", "2025-03-02|us")  # 60 days x both regions
    shops = MultiPartitions({"date": days, "shop": DynamicPartitions("shops")})
    assert default_window(shops, now) is None, "no latest shop: the page asks for start= and end="


async def test_a_two_dimensional_asset_shows_its_partitions_as_a_grid(flowstone_url: str) -> None:
    registry = AssetRegistry()
    cells = MultiPartitions({"date": DailyPartitions("2025-01-01"), "region": StaticPartitions(["eu", "us"])})

    @asset(partitions=cells, registry=registry)
    def sales(ctx: Any, deps: dict[str, Any]) -> int:
        return 1

    fs = FlowStone(flowstone_url, assets=registry)
    await amaterialize_all("sales", "2025-01-02|us", fs=fs)
    await adrain_queue("assets", fs=fs)
    window = {"start": "2025-01-01|eu", "end": "2025-01-02|us"}
    async with client_for(create_app(fs)) as client:
        page = (await client.get("/assets/sales", params=window)).text
        api = (await client.get("/api/assets/sales/partitions", params=window)).json()
    await fs.aclose()
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', page, re.S)
    statuses = [(day, re.findall(r'data-status="(\w+)"', cells)) for day, cells in rows]
    assert statuses == [("2025-01-01", ["missing", "missing"]), ("2025-01-02", ["missing", "fresh"])]
    assert '<th scope="col">eu</th><th scope="col">us</th>' in re.sub(r">\s+<", "><", page)
    grid = api["grid"]
    assert (grid["rows_dimension"], grid["columns_dimension"], grid["columns"]) == (
        "date",
        "region",
        ["eu", "us"],
    )
    assert [[c["status"] for c in row["cells"]] for row in grid["rows"]] == [
        ["missing"] * 2,
        ["missing", "fresh"],
    ]
    assert 'class="strip"' not in page
