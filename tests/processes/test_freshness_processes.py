"""Freshness policies through a real `flowstone worker` process: an asset with a 1-second
policy is overdue 2 s after its success — in /api/assets, `flowstone assets ls`, the
metrics — and the leader sends one `asset.overdue` event, not one per look."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import proc_assets
import psycopg
import pytest
from process_support import HERE, StartWorkers, scalar
from prometheus_client.parser import text_string_to_metric_families
from support import wait_until

from flowstone import FlowStone, materialize
from flowstone.assets import default_assets
from flowstone.insights import Insights
from flowstone.web import create_app

pytestmark = [pytest.mark.process, pytest.mark.anyio]

SUCCESS = "SELECT count(*) FROM flowstone.materializations WHERE asset = 'proc_fresh' AND status = 'success'"
EVENTS = "SELECT count(*) FROM public.overdue_events"
OVERDUE_FOR = (
    "SELECT extract(epoch FROM now() - since) FROM flowstone.overdue_assets WHERE asset = 'proc_fresh'"
)


def _overdue(fs: FlowStone) -> bool:
    return next(o for o in Insights(fs).assets() if o.asset.name == "proc_fresh").overdue


async def test_an_asset_past_its_freshness_policy_is_overdue_everywhere_with_one_event(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    if "proc_fresh" not in default_assets:
        default_assets.register(proc_assets.FRESH_ASSET)
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.overdue_events (asset text NOT NULL)")
    asset_workers(1, PROC_FRESH="1")
    materialize("proc_fresh", run_id="fresh")
    wait_until(lambda: scalar(flowstone_url, SUCCESS) == 1, 30, "proc_fresh to succeed")
    assert not _overdue(flowstone), "just materialized: fresh"

    wait_until(lambda: _overdue(flowstone), 10, "proc_fresh to be overdue (1 s policy)")
    transport = httpx.ASGITransport(app=create_app(flowstone))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        api = (await client.get("/api/assets")).json()
        metrics = (await client.get("/metrics")).text
        page = (await client.get("/assets", params={"overdue": "1"})).text
    (shown,) = [a for a in api["assets"] if a["name"] == "proc_fresh"]
    assert shown["overdue"] is True and shown["freshness"] == 1.0
    samples = [s for family in text_string_to_metric_families(metrics) for s in family.samples]
    assert ("flowstone_asset_overdue", {"asset": "proc_fresh"}, 1.0) in [
        (s.name, s.labels, s.value) for s in samples
    ]
    assert 'class="badge s-overdue"' in page and "proc_a" not in page, "the filter shows only overdue ones"

    environment = {
        **os.environ,
        "FLOWSTONE_DATABASE_URL": flowstone_url,
        "PYTHONPATH": str(HERE),
        "PROC_FRESH": "1",
    }
    argv = ["assets", "ls", "--json", "--app", "proc_assets:app"]
    listed = subprocess.run(
        [sys.executable, "-m", "flowstone.cli", *argv], env=environment, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert {row["asset"]: row["overdue"] for row in json.loads(listed.stdout)}["proc_fresh"] is True

    wait_until(lambda: scalar(flowstone_url, EVENTS) >= 1, 10, "the asset.overdue event")
    # The sentry looks every 0.25 s: once it has seen the asset overdue for 1.5 s more,
    # a sentry announcing at every look would have sent several events.
    wait_until(lambda: (scalar(flowstone_url, OVERDUE_FOR) or 0) > 1.5, 10, "more looks at it")
    assert scalar(flowstone_url, EVENTS) == 1, "one event per transition, not one per look"
