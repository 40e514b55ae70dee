"""One vocabulary for a partition's status, from the read layer: every way an asset job
ends without a result (cancel, delete, discard by the lifeline, a bulk cancel from a
process without the asset graph, plain SQL) leaves its record `cancelled`, and the
overview, the graph, the partitions API, the CLI and the metrics all say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from web_support import DAYS as DEFINITION, Client

from flowstone import FlowStone, abackfill
from flowstone.cli import main
from flowstone.insights import STATUSES
from flowstone.queue.engine import rescue_plan
from flowstone.queue.instance import set_default
from flowstone.testing import adrain_queue

pytestmark = pytest.mark.anyio

DAYS = [f"2025-01-0{n}" for n in range(1, 7)]
NONE = dict.fromkeys(STATUSES, 0)


async def queue(fs: FlowStone, days: list[str]) -> tuple[str, dict[str, int]]:
    """Backfill raw for `days`: the run, and the job of each day."""
    run = await abackfill("raw", partitions=days, fs=fs)
    return run.run_id, dict(zip(run.partitions, run.job_ids, strict=True))


async def end_each_day_differently(fs: FlowStone) -> str:
    """2025-01-01 cancelled, -02 deleted, -03 discarded by the lifeline (its node died on
    its last attempt), -04 cancelled in bulk by `flowstone jobs cancel-all` in a process
    with no asset graph, -05 cancelled with plain SQL; -06 materialized."""
    run, jobs = await queue(fs, DAYS)
    assert await fs.acancel_job(jobs[DAYS[0]], reason="wrong day") is not None
    assert await fs.adelete_job(jobs[DAYS[1]])
    async with fs.aconnection() as conn:
        await conn.execute(
            "UPDATE flowstone.jobs SET state = 'executing', attempt = max_attempts, attempted_by = "
            "'{gone,1}', attempted_at = now() - interval '1 minute' WHERE id = %s",
            (jobs[DAYS[2]],),
        )
    assert len(await fs.database.aexecute(rescue_plan(fs.database.statements.jobs, [], 10, 100))) == 1
    only = json.dumps({"partition": DAYS[3]})
    command = [sys.executable, "-m", "flowstone.cli", "jobs", "cancel-all", "--args", only]
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": fs.database_url}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "1 job(s) cancelled\n", done.stderr
    async with fs.aconnection() as conn:
        await conn.execute(
            "UPDATE flowstone.jobs SET state = 'cancelled', cancelled_at = now() WHERE id = %s",
            (jobs[DAYS[4]],),
        )
    assert (await adrain_queue("assets", fs=fs)).completed == 1
    return run


def cli(fs: FlowStone, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """`flowstone ARGV --json` in this process, on the dashboard tests' app: its document."""
    capsys.readouterr()
    code = main([*argv, "--json", "--app", "web_support:cli_app", "--database-url", fs.database_url])
    set_default(None)
    assert code == 0
    return json.loads(capsys.readouterr().out)


async def test_a_job_ended_without_a_result_leaves_its_record_cancelled_and_every_view_agrees(
    client: Client, app_fs: FlowStone, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await end_each_day_differently(app_fs)
    async with app_fs.aconnection() as conn:
        records = await (
            await conn.execute(
                "SELECT partition, status::text, error_message FROM flowstone.materializations ORDER BY 1"
            )
        ).fetchall()
    assert [(day, status) for day, status, _ in records] == [
        *((day, "cancelled") for day in DAYS[:5]),
        (DAYS[5], "success"),
    ], "no record stays pending"
    reasons = [message for _, _, message in records[:5]]
    assert "ended cancelled without a result: cancelled: wrong day" in reasons[0]
    assert "was deleted before it finished" in reasons[1]
    assert "ended discarded without a result: rescued by the lifeline: node gone" in reasons[2]

    expected = [*(("cancelled", reason) for reason in reasons), ("fresh", None)]
    strip = (
        await client.get("/api/assets/raw/partitions", params={"start": DAYS[0], "end": DAYS[-1]})
    ).json()
    assert [(p["status"], p["record"]["error_message"]) for p in strip["partitions"]] == expected
    assert strip["counts"] == {**NONE, "cancelled": 5, "fresh": 1}
    overview = {a["name"]: a for a in (await client.get("/api/assets")).json()["assets"]}
    everything = len(DEFINITION.all_keys(datetime.now(UTC)))  # the days closed by now
    assert overview["raw"]["counts"] == {**NONE, "cancelled": 5, "fresh": 1, "missing": everything - 6}
    assert overview["raw"]["health"] == "cancelled"
    assert 'class="box h-cancelled"' in (await client.get("/assets")).text

    shown = cli(app_fs, capsys, "assets", "status", "raw", "--from", DAYS[0], "--to", DAYS[-1])
    assert [(row["status"], row["reason"]) for row in shown] == expected
    listed = {row["asset"]: row["status"] for row in cli(app_fs, capsys, "assets", "ls")}
    assert listed["raw"] == overview["raw"]["counts"]

    progress = (await client.get(f"/api/runs/{run}")).json()
    assert (progress["counts"], progress["cancelled"], progress["done"]) == (
        {"cancelled": 5, "success": 1},
        5,
        True,
    )
    assert "6 / 6 finished, 5 cancelled" in (await client.get(f"/runs/{run}")).text

    metrics = (await client.get("/metrics")).text
    for status, count in overview["raw"]["counts"].items():
        assert f'flowstone_asset_partitions{{asset="raw",status="{status}"}} {float(count)}' in metrics


async def test_a_cancelled_job_retried_reopens_its_record(client: Client, app_fs: FlowStone) -> None:
    job = (await queue(app_fs, DAYS[:1]))[1][DAYS[0]]
    await app_fs.acancel_job(job)
    assert await status_of(client) == "cancelled"
    await app_fs.aretry_job(job)
    assert await status_of(client) == "queued"
    await adrain_queue("assets", fs=app_fs)
    assert await status_of(client) == "fresh"


async def status_of(client: Client) -> str:
    strip = await client.get("/api/assets/raw/partitions", params={"start": DAYS[0], "end": DAYS[0]})
    return str(strip.json()["partitions"][0]["status"])
