"""The pruner's tick, run by itself: finished jobs past the maximum age go in statements
of at most `limit` rows per terminal state, repeated while a batch comes back full and the
tick's time budget lasts."""

from __future__ import annotations

import pytest
from support import TickRuntime, rows

from flowstone import FlowStone, Job, Worker
from flowstone.queue import telemetry
from flowstone.queue.plugins import Pruner

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
