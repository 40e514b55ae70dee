"""The bookkeeper: partition locks against other sessions and within one process, batches."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flowstone import DailyPartitions, FlowStone, FlowStoneError, MaterializationRecords, amaterialize, asset
from flowstone.assets.bookkeeper import Begin, Begun, End, bookkeeper
from flowstone.assets.records import Finish, Pending, Status, lock_key

pytestmark = pytest.mark.anyio

DAY = "2025-01-15"
ADVISORY_LOCKS = (  # this test's database only: other tests run beside it on the server
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def begin(partition: str = DAY, upstream: list[tuple[str, str | None]] | None = None) -> Begin:
    return Begin("daily", partition, "run-1", None, 1, upstream or [])


def end(partition: str = DAY, **fields: Any) -> End:
    return End(lock_key("flowstone", "daily", partition), **fields)


def advisory_locks(fs: FlowStone) -> int:
    with fs.session() as conn:
        row = conn.execute(ADVISORY_LOCKS).fetchone()
        return int(row[0]) if row else 0


async def test_a_partition_locked_by_another_session_is_busy_until_released(flowstone: FlowStone) -> None:
    book = bookkeeper(flowstone.database)
    key = lock_key(flowstone.schema, "daily", DAY)
    with flowstone.session() as other:
        other.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        with anyio.fail_after(10):  # turned away, never waiting for the other session
            assert (await book.begin(begin())).locked is False
        other.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    begun = await book.begin(begin())
    assert begun.locked and begun.record is not None and begun.record.status == "running"
    await book.end(end(finish=Finish(begun.record.id, Status.SUCCESS)))
    assert advisory_locks(flowstone) == 0


async def test_one_process_runs_a_partition_once_at_a_time(flowstone: FlowStone) -> None:
    """Postgres advisory locks are re-entrant within a session: the bookkeeper, which holds
    every lock of its process on one session, must turn a second taker away itself."""
    book = bookkeeper(flowstone.database)
    answers: list[Begun] = []

    async def take() -> None:
        answers.append(await book.begin(begin()))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(take)
    assert sorted(answer.locked for answer in answers) == [False, False, True]
    assert (await book.begin(begin())).locked is False  # still held
    await book.end(end())
    assert (await book.begin(begin())).locked is True


async def test_concurrent_requests_are_all_answered_and_every_lock_released(flowstone: FlowStone) -> None:
    book = bookkeeper(flowstone.database)
    days = [f"2025-02-{day:02d}" for day in range(1, 21)]
    begun: dict[str, Begun] = {}

    async def run(day: str) -> None:
        begun[day] = answer = await book.begin(begin(day, upstream=[("source", day)]))
        assert answer.record is not None
        await book.end(end(day, finish=Finish(answer.record.id, Status.SUCCESS)))

    async with anyio.create_task_group() as group:
        for day in days:
            group.start_soon(run, day)
    assert all(answer.locked for answer in begun.values())
    assert all([row["asset"] for row in answer.upstream] == ["source"] for answer in begun.values())
    assert advisory_locks(flowstone) == 0
    with flowstone.session() as conn:
        statuses = conn.execute("SELECT DISTINCT status::text FROM flowstone.materializations").fetchall()
    assert statuses == [("success",)]


async def test_a_record_cancelled_while_its_run_goes_on_stays_cancelled(flowstone: FlowStone) -> None:
    """The job is cancelled (the database cancels its record) while the run holds the
    partition: the run's pending mark (a snooze) does not revive the record, and the job
    starting again does not restart it."""

    @asset(partitions=DailyPartitions("2025-01-01"))
    def daily(ctx: Any, deps: dict[str, Any]) -> int:
        return 1

    queued = await amaterialize("daily", DAY, fs=flowstone)
    book = bookkeeper(flowstone.database)
    started = Begin("daily", DAY, queued.run_id, queued.job_id, 1, [])
    begun = await book.begin(started)
    assert begun.record is not None and begun.record.status == "running"
    await flowstone.acancel_job(queued.job_id, reason="not needed")
    waiting = Pending(begun.record.id, FlowStoneError("dependency_not_ready", "waiting for raw"))
    assert await book.end(end(pending=waiting))
    assert (await MaterializationRecords(flowstone).aget("daily", DAY)).status == "cancelled"  # type: ignore[union-attr]
    again = await book.begin(Begin("daily", DAY, queued.run_id, queued.job_id, 2, []))
    assert again.locked and again.record is None, "a cancelled record is not started again"
    assert await book.end(end())
    record = await MaterializationRecords(flowstone).aget("daily", DAY)
    assert (
        record is not None and record.status == "cancelled" and "not needed" in (record.error_message or "")
    )
