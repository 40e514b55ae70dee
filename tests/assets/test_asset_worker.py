"""The AssetWorker: the seed's contract, records and lineage, the partition lock, wake-ups."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from flowstone import (
    AssetWorker,
    Context,
    DailyPartitions,
    Discard,
    FlowStone,
    FlowStoneError,
    Job,
    MaterializationRecords,
    Snooze,
    asset,
    materialize,
    materialize_all,
)
from flowstone.assets import FilesystemIOManager, default_io_managers
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import finish_and_wake_plan
from flowstone.insights import Insights, Lineage
from flowstone.testing import drain_queue, perform_job

DAYS = DailyPartitions("2025-01-01")


def lineage(insights: Insights, record_id: int) -> Lineage:
    """What record `record_id` read and what read it."""
    found = insights.record(record_id)
    assert found is not None
    return found


def args(
    name: str, partition: str | None = None, run_id: str = "run-1", force: bool = False
) -> dict[str, Any]:
    return {"asset_name": name, "partition": partition, "run_id": run_id, "force": force}


def test_worker_contract() -> None:
    assert (AssetWorker.queue, AssetWorker.max_attempts, AssetWorker.priority) == ("assets", 3, 1)
    worker = AssetWorker()
    delays = [
        worker.backoff(Job(id=1, state="retryable", queue="assets", worker="w", args={}, attempt=n))
        for n in (1, 2, 3)
    ]  # type: ignore[arg-type]
    assert delays == [30, 90, 270]


def test_materializes_and_records_with_run_id(flowstone: FlowStone) -> None:
    @asset(partitions=DAYS)
    def daily(ctx: Context, deps: dict[str, Any]) -> dict[str, str]:
        return {"day": ctx.partition.isoformat(), "run": ctx.run_id}

    assert perform_job(AssetWorker, args("daily", "2025-01-15", "run-42")) is None
    record = MaterializationRecords().get("daily", "2025-01-15")
    assert record is not None
    assert (record.status, record.run_id, record.partition, record.attempt) == (
        "success",
        "run-42",
        "2025-01-15",
        1,
    )
    assert record.started_at is not None and record.finished_at is not None and record.duration is not None
    stored = default_io_managers.get("postgres")  # the default IO manager
    assert stored.load(Context("daily", partition_key="2025-01-15", fs=flowstone)) == {
        "day": "2025-01-15",
        "run": "run-42",
    }


def define_source_and_derived() -> None:
    """`source` (1) and `derived` (source + 1), unpartitioned, on the default IO manager."""

    @asset
    def source(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    @asset(depends_on=[source])
    def derived(ctx: Context, deps: dict[str, Any]) -> int:
        return deps["source"] + 1


def test_snoozes_30_on_a_missing_dependency_and_says_so(flowstone: FlowStone) -> None:
    define_source_and_derived()
    assert perform_job(AssetWorker, args("derived")) == Snooze(30)
    record = MaterializationRecords().get("derived")
    assert record is not None and record.status == "pending"
    assert (record.error_type, record.error_message) == (
        "dependency_not_ready",
        "waiting for source (nothing is materializing it)",
    )
    assert record.waiting_since is not None, "the bounded wait has begun"


def test_discards_a_non_retryable_error(flowstone: FlowStone) -> None:
    @asset
    def strict(ctx: Context, deps: dict[str, Any]) -> None:
        raise FlowStoneError("validation_error", "amount must be positive", retryable=False)

    result = perform_job(AssetWorker, args("strict"))
    assert result == Discard("validation_error: amount must be positive")
    record = MaterializationRecords().get("strict")
    assert record is not None and (record.status, record.error_type) == ("failed", "validation_error")


def test_retryable_error_raises_and_waits_pending_until_the_last_attempt(flowstone: FlowStone) -> None:
    @asset
    def flaky(ctx: Context, deps: dict[str, Any]) -> None:
        raise ConnectionError("upstream API down")

    with pytest.raises(FlowStoneError, match="execution_error: ConnectionError: upstream API down"):
        perform_job(AssetWorker, args("flaky"), attempt=1)
    record = MaterializationRecords().get("flaky")
    assert record is not None and (record.status, record.error_type) == ("pending", "execution_error")
    with pytest.raises(FlowStoneError):
        perform_job(AssetWorker, args("flaky"), attempt=3)
    last = MaterializationRecords().get("flaky")
    assert last is not None and last.status == "failed"


def test_unknown_asset_is_discarded_with_a_suggestion(flowstone: FlowStone) -> None:
    @asset
    def revenue(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    result = perform_job(AssetWorker, args("revenu"))
    assert isinstance(result, Discard) and "asset_not_found" in result.reason and "'revenue'" in result.reason


def test_a_partition_outside_the_definition_is_discarded(flowstone: FlowStone) -> None:
    @asset(partitions=DAYS)
    def daily(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    result = perform_job(AssetWorker, args("daily", "1999-01-01"))
    assert (
        isinstance(result, Discard) and "validation_error" in result.reason and "1999-01-01" in result.reason
    )
    [record] = Insights(flowstone).history(run_id="run-1")
    assert (record.partition, record.status, record.error_type) == (
        "1999-01-01",
        "failed",
        "validation_error",
    )


def test_already_successful_partition_is_skipped_unless_forced(flowstone: FlowStone) -> None:
    calls: list[str] = []

    @asset
    def once(ctx: Context, deps: dict[str, Any]) -> int:
        calls.append(ctx.run_id)
        return len(calls)

    perform_job(AssetWorker, args("once", run_id="a"))
    perform_job(AssetWorker, args("once", run_id="b"))
    assert calls == ["a"] and MaterializationRecords().get("once").status == "skipped"  # type: ignore[union-attr]
    perform_job(AssetWorker, args("once", run_id="c", force=True))
    assert calls == ["a", "c"] and MaterializationRecords().get("once").status == "success"  # type: ignore[union-attr]


def test_unstorable_result_is_an_io_error_discarded_and_never_success(
    flowstone: FlowStone, files: FilesystemIOManager
) -> None:
    @asset(io_manager="files")
    def sets(ctx: Context, deps: dict[str, Any]) -> set[int]:
        return {1, 2}

    result = materialize("sets")
    counts = drain_queue("assets", with_scheduled=True)
    assert counts.discarded == 1
    record = MaterializationRecords().get("sets")
    assert record is not None and (record.status, record.error_type) == ("failed", "io_error")
    assert record.job_id == result.job_id
    assert not list(Path(files.root).rglob("*.json"))


def test_lineage_links_each_materialization_to_what_it_read(flowstone: FlowStone) -> None:
    @asset(partitions=DAYS)
    def source(ctx: Context, deps: dict[str, Any]) -> list[int]:
        return [ctx.partition.day]

    @asset(depends_on=[source], partitions=DAYS)
    def derived(ctx: Context, deps: dict[str, Any]) -> list[int]:
        return [n * 10 for n in deps["source"]]

    @asset(depends_on=[derived, source], partitions=DAYS)
    def final(ctx: Context, deps: dict[str, Any]) -> int:
        return sum(deps["derived"]) + sum(deps["source"])

    days = ["2025-01-01", "2025-01-02", "2025-01-03"]
    runs = [materialize_all("final", day).run_id for day in days]
    assert drain_queue("assets", with_scheduled=True).completed == 9
    store, insights = MaterializationRecords(), Insights(flowstone)
    for day, run in zip(days, runs, strict=True):
        src, der, fin = (store.get(name, day) for name in ("source", "derived", "final"))
        assert src and der and fin and {src.run_id, der.run_id, fin.run_id} == {run}
        assert [m.id for m in lineage(insights, fin.id).upstream] == [src.id, der.id]
        assert [m.id for m in lineage(insights, der.id).upstream] == [src.id]
        assert [m.id for m in lineage(insights, src.id).downstream] == [der.id, fin.id]
    assert len(insights.history(run_id=runs[0])) == 3


def test_failing_upstream_leaves_downstream_not_run_and_says_why(flowstone: FlowStone) -> None:
    ran: list[str] = []

    @asset
    def upstream(ctx: Context, deps: dict[str, Any]) -> None:
        raise ValueError("bad input file")

    @asset(depends_on=[upstream])
    def downstream(ctx: Context, deps: dict[str, Any]) -> None:
        ran.append("downstream")

    materialize_all("downstream")
    counts = drain_queue("assets", with_scheduled=True)
    assert ran == [] and counts.discarded == 2
    record = MaterializationRecords().get("downstream")
    assert record is not None and (record.status, record.error_type) == ("failed", "dependency_failed")
    assert "upstream 'upstream'" in (record.error_message or "")
    assert "ValueError: bad input file" in (record.error_message or "")


def test_upstream_success_wakes_its_snoozing_dependents_at_once_whatever_their_run(
    flowstone: FlowStone,
) -> None:
    define_source_and_derived()
    upstream = materialize("source", run_id="run-1")
    with flowstone.session() as conn:  # the upstream is queued but not due yet
        conn.execute(
            "UPDATE flowstone.jobs SET state = 'scheduled', scheduled_at = now() + interval '1 hour'"
            " WHERE id = %s",
            (upstream.job_id,),
        )
    waiting = materialize("derived", run_id="run-2")
    assert drain_queue("assets").snoozed == 1
    assert flowstone.get_job(waiting.job_id).state == "scheduled"  # type: ignore[union-attr]
    record = MaterializationRecords().get("derived")
    assert record is not None and record.error_message == "waiting for source"
    assert record.waiting_since is None, "waiting for a queued upstream is not bounded"
    with flowstone.session() as conn:
        conn.execute("UPDATE flowstone.jobs SET state = 'available' WHERE id = %s", (upstream.job_id,))
    counts = drain_queue("assets")  # no with_scheduled: only the wake-up makes it runnable
    assert counts.completed == 2
    assert MaterializationRecords().get("derived").status == "success"  # type: ignore[union-attr]


@pytest.mark.parametrize("partitioned", [False, True])
def test_a_dependent_still_executing_when_its_upstream_finishes_is_spared_its_snooze(
    flowstone: FlowStone, partitioned: bool
) -> None:
    """Found through its record (the executing jobs' index is no way to find it fast)."""

    @asset(partitions=DAYS if partitioned else None)
    def derived(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    waiting = materialize("derived", "2025-01-15" if partitioned else None, run_id="run-1")
    with flowstone.session() as conn:
        conn.execute(
            "UPDATE flowstone.jobs SET state = 'executing', attempt = 1, attempted_at = now() WHERE id = %s",
            (waiting.job_id,),
        )
    partition = "2025-01-15" if partitioned else ""
    queries = MaterializationQueries.for_schema(flowstone.schema)
    other = [("derived", "2025-01-16"), ("source", partition)]
    assert flowstone.database.execute(finish_and_wake_plan(queries, [], other)) == 0
    assert flowstone.database.execute(finish_and_wake_plan(queries, [], [("derived", partition)])) == 1
    assert flowstone.database.execute(finish_and_wake_plan(queries, [], [("derived", None)])) == 1, (
        "any partition"
    )
    job = flowstone.get_job(waiting.job_id)
    assert job is not None and job.meta.get("wake_pending") is True


def test_same_partition_materialized_twice_concurrently_runs_once(flowstone: FlowStone) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    @asset(partitions=DAYS)
    def slow(ctx: Context, deps: dict[str, Any]) -> int:
        calls.append(ctx.run_id)
        started.set()
        assert release.wait(10)
        return 1

    first = materialize("slow", "2025-01-15")
    runner = threading.Thread(target=drain_queue, args=("assets",))
    runner.start()
    try:
        assert started.wait(10)
        second = materialize("slow", "2025-01-15")
        assert drain_queue("assets").snoozed == 1  # the partition is busy
    finally:
        release.set()
        runner.join(10)
    assert flowstone.get_job(second.job_id).state == "available"  # type: ignore[union-attr]
    assert drain_queue("assets").completed == 1
    assert calls == [first.run_id]
    statuses = {m.job_id: m.status for m in Insights(flowstone).history("slow", "2025-01-15")}
    assert statuses == {first.job_id: "success", second.job_id: "skipped"}


def test_a_finish_wakes_the_next_duplicate_of_its_partition_only(flowstone: FlowStone) -> None:
    """Duplicates take the partition's lock one at a time: waking them all would have all
    but one snooze again."""

    @asset(partitions=DAYS)
    def busy(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    jobs = [materialize("busy", "2025-01-15", force=True).job_id for _ in range(4)]
    with flowstone.session() as conn:
        conn.execute(
            "UPDATE flowstone.jobs SET state = 'scheduled', scheduled_at = now() + interval '30 seconds'"
        )
    finished = Insights(flowstone).history("busy", "2025-01-15")[-1]  # the first one's record
    queries = MaterializationQueries.for_schema(flowstone.schema)
    woken = flowstone.database.execute(
        finish_and_wake_plan(queries, [], [("busy", "2025-01-15", finished.id)])
    )
    states = [flowstone.get_job(job).state for job in jobs]  # type: ignore[union-attr]
    assert woken == 1 and states == ["scheduled", "available", "scheduled", "scheduled"]


def test_asset_threads_work_in_a_forked_child() -> None:
    """A child forked after the asset threads started runs asset functions on threads of
    its own: the parent's are not in it, and work handed to them would never run."""
    import os
    import signal

    import anyio

    from flowstone.assets.worker import in_thread

    assert anyio.run(in_thread, threading.get_ident) != threading.get_ident()  # the pool exists
    pid = os.fork()
    if pid == 0:  # the child: SIGALRM ends it should the call never return
        signal.alarm(10)
        os._exit(0 if anyio.run(in_thread, lambda: 42) == 42 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
