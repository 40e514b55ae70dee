"""Chaos: 100 asset jobs with 30 % injected failures and 3 attempts; none is lost."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from flowstone import AssetWorker, Context, DailyPartitions, FlowStone, asset, backfill
from flowstone.testing import drain_queue, with_chaos


def test_100_asset_jobs_under_30_percent_failures(flowstone: FlowStone) -> None:
    @asset(partitions=DailyPartitions("2025-01-01"), max_attempts=3)
    def daily(ctx: Context, deps: dict[str, Any]) -> str:
        return ctx.partition_key or ""

    result = backfill("daily", start="2025-01-01", end="2025-04-10")
    assert result.total == 100
    with with_chaos(failure_rate=0.3, seed=7):
        counts = drain_queue("assets", with_scheduled=True)
    assert counts.completed >= 70  # 1 - 0.3^3 ≈ 97 % expected
    assert counts.completed + counts.discarded == 100
    with flowstone.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        jobs = cur.execute(
            "SELECT state::text, count(*) FROM flowstone.jobs WHERE worker = %s GROUP BY state",
            [AssetWorker.name],
        ).fetchall()
        records = cur.execute(
            "SELECT status::text, count(*) FROM flowstone.latest_materializations WHERE run_id = %s "
            "GROUP BY status",
            [result.run_id],
        ).fetchall()
    states = {row["state"]: row["count"] for row in jobs}
    statuses = {row["status"]: row["count"] for row in records}
    assert (states.get("completed"), states.get("discarded", 0)) == (counts.completed, counts.discarded)
    assert sum(states.values()) == 100  # none lost: every job ended completed or discarded
    assert statuses.get("success") == counts.completed  # every completed job recorded its success
    assert sum(statuses.values()) == 100
