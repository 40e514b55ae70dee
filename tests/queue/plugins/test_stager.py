"""The stager's cursor, one test per guard: a pass starts `margin` below where the last one
that caught up ended (so a job written by a transaction older than that pass is staged),
a pass that did not catch up moves nothing, and a full pass from the head comes every
`full_every` seconds (so a job written far below the cursor is staged too)."""

from __future__ import annotations

import psycopg
import pytest
from support import Clock, TickRuntime, rows

from flowstone import FlowStone, Job, Worker
from flowstone.queue.plugins import Stager
from flowstone.queue.plugins.cursor import Cursor

pytestmark = pytest.mark.anyio

MARGIN = 60.0
DUE = (
    "UPDATE flowstone.jobs SET state = 'retryable', scheduled_at = now() - make_interval(secs => %s)"
    " WHERE id = %s"
)


class Parked(Worker):
    queue = "parked"

    async def perform(self, job: Job) -> None:
        return None


async def scheduled(fs: FlowStone) -> int:
    return (await fs.ainsert(Parked.new(scheduled_in=3600))).id


async def state(fs: FlowStone, job_id: int) -> str:
    return (await fs.aget_job(job_id)).state  # type: ignore[union-attr]


def stager(clock: Clock, limit: int = 5000) -> Stager:
    """A stager whose full passes come when the test moves `clock` (the first pass is one)."""
    made = Stager(interval=1.0, margin=MARGIN, limit=limit)
    made.cursor = Cursor(MARGIN, full_every=3600.0, clock=clock)
    return made


async def test_a_job_due_from_a_transaction_older_than_the_last_pass_is_staged(flowstone: FlowStone) -> None:
    job_id = await scheduled(flowstone)
    plugin, runtime = stager(Clock()), TickRuntime(flowstone)
    await plugin.tick(runtime)  # the full pass
    async with await psycopg.AsyncConnection.connect(flowstone.database_url) as writer:
        await writer.execute(DUE, [0, job_id])  # due at its transaction's start, before the next pass
        await plugin.tick(runtime)  # from its cursor; the job is not committed yet
        assert plugin.cursor.after() is not None, "that pass caught up: the next starts at a cursor"
    assert await state(flowstone, job_id) == "retryable"
    await plugin.tick(runtime)
    assert await state(flowstone, job_id) == "available"


async def test_a_job_due_far_below_the_cursor_waits_for_the_next_full_pass(flowstone: FlowStone) -> None:
    job_id = await scheduled(flowstone)
    clock = Clock()
    plugin, runtime = stager(clock), TickRuntime(flowstone)
    await plugin.tick(runtime)
    await rows(flowstone, DUE, [3 * MARGIN, job_id])  # as plain SQL, or a long transaction, may
    await plugin.tick(runtime)
    assert await state(flowstone, job_id) == "retryable", "the cursor's pass does not reach it"
    clock.now += 3600.0
    await plugin.tick(runtime)
    assert await state(flowstone, job_id) == "available"


async def test_a_pass_that_did_not_catch_up_leaves_the_cursor(flowstone: FlowStone) -> None:
    older, newer = await scheduled(flowstone), await scheduled(flowstone)
    await rows(flowstone, DUE, [3 * MARGIN, newer])
    await rows(flowstone, DUE, [6 * MARGIN, older])
    plugin, runtime = stager(Clock(), limit=1), TickRuntime(flowstone)
    await plugin.tick(runtime)
    assert [await state(flowstone, i) for i in (older, newer)] == ["available", "retryable"]
    await plugin.tick(runtime)
    assert await state(flowstone, newer) == "available"
