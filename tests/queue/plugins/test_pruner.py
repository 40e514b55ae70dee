"""The pruner's tick, run by itself: finished jobs past the maximum age go in statements
of at most `limit` rows per terminal state, repeated while a batch comes back full and the
tick's time budget lasts."""

from __future__ import annotations

import psycopg
import pytest
from support import Clock, TickRuntime, rows

from flowstone import FlowStone, Job, Worker
from flowstone.queue import telemetry
from flowstone.queue.plugins import Pruner
from flowstone.queue.plugins.cursor import Cursor

pytestmark = pytest.mark.anyio

FINISHED = ("completed", "discarded", "cancelled")
AGED = (
    "UPDATE flowstone.jobs SET state = %(state)s::flowstone.job_state,"
    " completed_at = now() - make_interval(secs => %(age)s),"
    " discarded_at = now() - make_interval(secs => %(age)s),"
    " cancelled_at = now() - make_interval(secs => %(age)s) WHERE id = ANY(%(ids)s)"
)


class Parked(Worker):
    queue = "parked"

    async def perform(self, job: Job) -> None:
        return None


async def finished(fs: FlowStone, state: str, count: int, age_s: float = 120.0) -> None:
    """`count` jobs that reached `state` `age_s` seconds ago."""
    jobs = await fs.ainsert_all([Parked.new({"n": n}) for n in range(count)])
    await rows(fs, AGED, {"state": state, "age": age_s, "ids": [job.id for job in jobs]})


async def left(fs: FlowStone) -> dict[str, int]:
    found = await rows(fs, "SELECT state::text, count(*) AS n FROM flowstone.jobs GROUP BY 1")
    return {row["state"]: row["n"] for row in found}


async def pruned_by(fs: FlowStone, pruner: Pruner) -> list[int]:
    """Run one tick; the counts its telemetry reported."""
    counts: list[int] = []
    detach = telemetry.attach("pruner.prune", lambda _e, measured, _m: counts.append(measured["count"]))
    try:
        await pruner.tick(TickRuntime(fs))
    finally:
        detach()
    return counts


async def test_a_tick_takes_batches_per_state_until_caught_up(flowstone: FlowStone) -> None:
    for state in FINISHED:
        await finished(flowstone, state, 12)
    await finished(flowstone, "completed", 3, age_s=0)  # too young
    assert await pruned_by(flowstone, Pruner(interval=30, max_age=60, limit=5)) == [36]
    assert await left(flowstone) == {"completed": 3}
    await flowstone.aclose()


async def test_a_tick_stops_when_its_budget_is_spent(flowstone: FlowStone) -> None:
    for state in FINISHED:
        await finished(flowstone, state, 12)
    assert await pruned_by(flowstone, Pruner(interval=30, max_age=60, limit=5, budget=0)) == [15]
    assert await left(flowstone) == dict.fromkeys(FINISHED, 7)
    await flowstone.aclose()


def pruner(clock: Clock, *, budget: float = 10.0, max_age: float = 60.0) -> Pruner:
    """A pruner (margin 60 s) whose full passes come when the test moves `clock` (the
    first tick is one)."""
    made = Pruner(interval=30, max_age=max_age, limit=5, budget=budget)
    made.cursor = Cursor(60.0, full_every=3600.0, clock=clock)
    return made


async def test_a_job_finished_by_a_transaction_older_than_the_last_tick_is_pruned(
    flowstone: FlowStone,
) -> None:
    [job] = await flowstone.ainsert_all([Parked.new({})])
    plugin = pruner(Clock(), max_age=0.0)  # so a job is old enough as soon as it finishes
    await pruned_by(flowstone, plugin)  # the full pass
    async with await psycopg.AsyncConnection.connect(flowstone.database_url) as writer:
        await writer.execute(AGED, {"state": "completed", "age": 0.0, "ids": [job.id]})
        await pruned_by(flowstone, plugin)  # from its cursor; the job is not committed yet
        assert plugin.cursor.after() is not None, "that tick caught up: the next starts at a cursor"
    assert await left(flowstone) == {"completed": 1}
    assert await pruned_by(flowstone, plugin) == [1]


async def test_a_job_finished_far_below_the_cursor_waits_for_the_next_full_pass(flowstone: FlowStone) -> None:
    clock = Clock()
    plugin = pruner(clock)
    await pruned_by(flowstone, plugin)
    await finished(flowstone, "discarded", 1, age_s=3600.0)
    assert await pruned_by(flowstone, plugin) == [], "the cursor's tick does not reach it"
    clock.now += 3600.0
    assert await pruned_by(flowstone, plugin) == [1]


async def test_a_tick_that_did_not_catch_up_leaves_the_cursor(flowstone: FlowStone) -> None:
    await finished(flowstone, "completed", 12, age_s=3600.0)
    plugin = pruner(Clock(), budget=0)
    assert await pruned_by(flowstone, plugin) == [5]
    assert await pruned_by(flowstone, plugin) == [5]
