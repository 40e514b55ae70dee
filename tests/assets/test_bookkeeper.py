"""The bookkeeper: partition locks against other sessions and within one process, batches."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flowstone import FlowStone
from flowstone.assets.bookkeeper import Begin, Begun, End, bookkeeper
from flowstone.assets.records import Finish, Status, lock_key

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
    book = bookkeeper(flowstone)
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
    book = bookkeeper(flowstone)
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
    book = bookkeeper(flowstone)
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
