"""The public API: materialize (and wait), materialize_all, backfill, and their bad inputs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from support import wait_until

import flowstone as package
from flowstone import (
    AssetWorker,
    Context,
    DailyPartitions,
    FlowStone,
    FlowStoneError,
    MaterializationRecords,
    StaticPartitions,
    asset,
)
from flowstone.insights import Insights
from flowstone.testing import adrain_queue, all_enqueued, assert_enqueued, drain_queue

DAYS = DailyPartitions("2025-01-01")


def define_chain() -> None:
    @asset(partitions=DAYS)
    def source(ctx: Context, deps: dict[str, Any]) -> list[int]:
        return [1, 2, 3]

    @asset(depends_on=[source], partitions=DAYS)
    def derived(ctx: Context, deps: dict[str, Any]) -> list[int]:
        return [n * 2 for n in deps["source"]]

    @asset(depends_on=[derived], partitions=DAYS)
    def final(ctx: Context, deps: dict[str, Any]) -> int:
        return sum(deps["derived"])


def test_materialize_enqueues_the_asset_job_with_serialized_args(flowstone: FlowStone) -> None:
    define_chain()
    result = package.materialize("source", date(2025, 1, 15))
    assert result.status == "queued" and result.run_id and result.partition == "2025-01-15"
    job = assert_enqueued(
        worker=AssetWorker,
        queue="assets",
        priority=1,
        args={"asset_name": "source", "partition": "2025-01-15", "run_id": result.run_id, "force": False},
    )
    assert job.id == result.job_id and job.max_attempts == 3
    record = MaterializationRecords().get("source", "2025-01-15")
    assert record is not None and (record.status, record.job_id) == ("pending", job.id)


def test_materialize_wait_returns_completed(
    flowstone: FlowStone, drain_on_insert: Callable[[], threading.Thread]
) -> None:
    define_chain()
    drain_on_insert()
    result = package.materialize("source", "2025-01-15", run_id="r1", wait=True, timeout=10)
    assert (result.status, result.run_id) == ("completed", "r1")
    assert result.materialization is not None and result.materialization.status == "success"


def test_materialize_wait_returns_failed_with_the_error(
    flowstone: FlowStone, drain_on_insert: Callable[[], threading.Thread]
) -> None:
    @asset(max_attempts=1)
    def broken(ctx: Context, deps: dict[str, Any]) -> None:
        raise RuntimeError("disk full")

    drain_on_insert()
    result = package.materialize("broken", wait=True, timeout=10)
    assert result.status == "failed"
    assert result.error is not None and result.error.type == "execution_error"
    assert "disk full" in result.error.message


def test_materialize_wait_times_out_without_a_worker(flowstone: FlowStone) -> None:
    define_chain()
    with pytest.raises(FlowStoneError) as raised:
        package.materialize("source", "2025-01-15", wait=True, timeout=0.2)
    assert raised.value.type == "timeout" and raised.value.context["job_id"]


def test_materialize_wait_without_timeout_notices_a_job_that_ended_without_a_result(
    flowstone: FlowStone,
) -> None:
    """A job cancelled before it ran leaves its record unfinished and sends nothing; the
    waiter still answers (it re-checks every few seconds) instead of waiting forever."""
    define_chain()
    results: list[package.MaterializeResult] = []
    waiter = threading.Thread(
        target=lambda: results.append(package.materialize("source", "2025-01-15", wait=True)), daemon=True
    )
    waiter.start()
    job = wait_until(lambda: next(iter(all_enqueued(worker=AssetWorker)), None), 10, "the job")
    assert flowstone.cancel_job(job.id) is not None
    waiter.join(timeout=15)
    assert not waiter.is_alive(), "materialize(wait=True) kept waiting for a cancelled job"
    assert results[0].status == "failed"
    assert results[0].error is not None and "cancelled" in results[0].error.message


def test_materialize_all_queues_source_derived_final_in_order(flowstone: FlowStone) -> None:
    define_chain()
    result = package.materialize_all("final", "2025-01-15")
    assert result.assets == ["source", "derived", "final"] and result.status == "queued"
    jobs = all_enqueued(worker=AssetWorker, args={"run_id": result.run_id})
    assert [job.args["asset_name"] for job in jobs] == ["source", "derived", "final"]
    assert [job.id for job in jobs] == result.job_ids
    counts = drain_queue("assets")
    assert (counts.completed, counts.snoozed) == (3, 0)  # dependency order: nobody waited
    assert MaterializationRecords().get("final", "2025-01-15").status == "success"  # type: ignore[union-attr]


def test_backfill_of_5_partitions_returns_total_5_in_one_insert(flowstone: FlowStone) -> None:
    define_chain()
    days = [date(2025, 1, d) for d in range(1, 6)]
    with flowstone.connection() as conn:
        before = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]  # type: ignore[index]
    result = package.backfill("source", partitions=days)
    assert result.total == 5 and result.run_id
    jobs = all_enqueued(worker=AssetWorker, args={"run_id": result.run_id})
    assert [job.args["partition"] for job in jobs] == [d.isoformat() for d in days]
    with flowstone.connection() as conn:
        xids = conn.execute(
            "SELECT DISTINCT xmin::text FROM flowstone.jobs WHERE args->>'run_id' = %s", [result.run_id]
        ).fetchall()
    assert len(xids) == 1 and int(xids[0][0]) > before  # one transaction (and one statement)
    assert drain_queue("assets").completed == 5


def test_backfill_of_a_range_and_dedupes(flowstone: FlowStone) -> None:
    define_chain()
    ranged = package.backfill("source", start="2025-01-30", end=date(2025, 2, 2))
    assert ranged.total == 4 and ranged.partitions == ["2025-01-30", "2025-01-31", "2025-02-01", "2025-02-02"]
    repeated = package.backfill("source", ["2025-01-01", date(2025, 1, 1)])
    assert repeated.total == 1


@pytest.mark.parametrize(
    ("call", "kind", "fragment"),
    [
        (lambda fs: fs.materialize("sorce"), "asset_not_found", "did you mean 'source'"),
        (lambda fs: fs.materialize_all("finall", "2025-01-15"), "asset_not_found", "did you mean 'final'"),
        (lambda fs: fs.backfill("derivd", ["2025-01-15"]), "asset_not_found", "did you mean 'derived'"),
        (lambda fs: fs.materialize("source", "2024-12-31"), "validation_error", "'2024-12-31'"),
        (lambda fs: fs.materialize("source", "yesterday"), "validation_error", "'yesterday'"),
        (lambda fs: fs.materialize("source"), "validation_error", "give a partition"),
        (lambda fs: fs.materialize("regions", "2025-01-15"), "validation_error", "'2025-01-15'"),
        (lambda fs: fs.backfill("source", ["2025-01-15", "nope"]), "validation_error", "'nope'"),
        (lambda fs: fs.backfill("source", start="2025-02-01", end="2025-01-01"), "validation_error", "empty"),
        (lambda fs: fs.backfill("source"), "validation_error", "partitions=[...] or start= and end="),
        (lambda fs: fs.backfill("plain", ["x"]), "validation_error", "not partitioned"),
        (lambda fs: fs.materialize("plain", run_id=""), "validation_error", "run_id"),
    ],
)
def test_bad_input_is_rejected_before_anything_is_queued(
    flowstone: FlowStone, call: Callable[[Any], Any], kind: str, fragment: str
) -> None:
    define_chain()

    @asset(partitions=StaticPartitions(["eu", "us"]))
    def regions(ctx: Context, deps: dict[str, Any]) -> None:
        return None

    @asset
    def plain(ctx: Context, deps: dict[str, Any]) -> None:
        return None

    with pytest.raises(FlowStoneError) as raised:
        call(package)  # the API as users reach it: flowstone.materialize(...)
    assert raised.value.type == kind and fragment in raised.value.message
    assert all_enqueued(worker=AssetWorker) == []


@pytest.mark.anyio
async def test_async_twins(flowstone: FlowStone, drain_on_insert: Callable[[], threading.Thread]) -> None:
    define_chain()
    queued = await package.amaterialize("source", "2025-01-15")
    assert queued.status == "queued"
    everything = await package.amaterialize_all("final", "2025-01-16")
    filled = await package.abackfill("source", start="2025-01-01", end="2025-01-03")
    assert everything.assets == ["source", "derived", "final"] and filled.total == 3
    assert (await adrain_queue("assets", with_scheduled=True)).completed == 7
    drain_on_insert()
    waited = await package.amaterialize("source", "2025-01-15", wait=True, timeout=10)
    assert waited.status == "skipped"  # already there and fresh: nothing computed
    record = await MaterializationRecords().aget("final", "2025-01-16")
    assert record is not None and record.status == "success"
    assert [m.asset for m in (await Insights(flowstone).arecord(record.id)).upstream] == ["derived"]  # type: ignore[union-attr]
