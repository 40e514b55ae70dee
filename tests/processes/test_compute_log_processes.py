"""Compute logs through a real `flowstone worker` process: what a failing asset printed
and logged shows in its history — the CLI, the JSON API and the dashboard page."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from process_support import HERE, StartWorkers, scalar
from support import wait_until

from flowstone import FlowStone, materialize
from flowstone.web import create_app

pytestmark = [pytest.mark.process, pytest.mark.anyio]

DAY = "2025-03-04"
STATUS = "SELECT status::text FROM flowstone.materializations WHERE asset = 'proc_a' AND partition = %s"
PRINTED = f"reading the source of {DAY}"
LOGGED = f"ERROR flowstone.asset.proc_a: checksum mismatch in {DAY}"


async def test_failing_assets_print_and_log_show_in_its_history(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(1, PROC_FAIL=DAY)
    materialize("proc_a", DAY, run_id="logs")
    wait_until(lambda: scalar(flowstone_url, STATUS, (DAY,)) == "failed", 30, "the record to fail")

    environment = {**os.environ, "FLOWSTONE_DATABASE_URL": flowstone_url, "PYTHONPATH": str(HERE)}
    argv = ["assets", "history", "proc_a", "--partition", DAY, "--logs", "--app", "proc_assets:app"]
    shown = subprocess.run(
        [sys.executable, "-m", "flowstone.cli", *argv], env=environment, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert PRINTED in shown.stdout and LOGGED in shown.stdout

    transport = httpx.ASGITransport(app=create_app(flowstone))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        api = (await client.get("/api/assets/proc_a/history", params={"partition": DAY})).json()
        page = (await client.get("/assets/proc_a/history", params={"partition": DAY})).text
    (record,) = api["records"]
    assert record["status"] == "failed"
    assert PRINTED in record["logs"] and LOGGED in record["logs"]
    assert api["logs"] == record["logs"], "the chosen record's logs, shown on the page"
    assert PRINTED in page and 'id="compute-logs"' in page
