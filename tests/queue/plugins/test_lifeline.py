"""The lifeline's guards, one test each: it rescues the jobs of dead nodes, and never a job
a live node may still be running — whatever its heartbeat, incarnation, claim time, state,
or the leader's own connection say. Ticks run one at a time on a `TickRuntime`."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from psycopg.rows import dict_row
from support import TickRuntime, rows

from flowstone import FlowStone, Job, Worker
from flowstone.queue.engine import rescue_plan
from flowstone.queue.plugins import Lifeline

pytestmark = pytest.mark.anyio

EXPIRY = 10.0
PARKED = "parked"  # a queue no node runs: rescued jobs stay where the lifeline put them
LONG_AGO = 3 * EXPIRY


class Parked(Worker):
    queue = PARKED

    async def perform(self, job: Job) -> None:
        return None


async def claimed(
    fs: FlowStone, by: list[str], ago: float, *, state: str = "executing", attempt: int = 1
) -> int:
    """A job in `state` claimed `ago` seconds ago by `by` (name[, incarnation])."""
    job = await fs.ainsert(Parked.new(max_attempts=3))
    await rows(
        fs,
        "UPDATE flowstone.jobs SET state = %(state)s::flowstone.job_state, attempt = %(attempt)s,"
        " attempted_by = %(by)s, attempted_at = now() - make_interval(secs => %(ago)s),"
        " completed_at = CASE WHEN %(state)s = 'completed' THEN now() END WHERE id = %(id)s",
        {"state": state, "attempt": attempt, "by": by, "ago": ago, "id": job.id},
    )
    return job.id


async def heartbeat(fs: FlowStone, name: str, incarnation: str, ago: float = 0.0) -> None:
    """The nodes row of a node whose last heartbeat was `ago` seconds ago."""
    await rows(
        fs,
        "INSERT INTO flowstone.nodes (name, incarnation, queues, heartbeat_at)"
        " VALUES (%s, %s, '{}', now() - make_interval(secs => %s))",
        [name, incarnation, ago],
    )


async def states(fs: FlowStone, *ids: int) -> list[str]:
    return [(await fs.aget_job(i)).state for i in ids]  # type: ignore[union-attr]


async def tick(fs: FlowStone, *, times: int = 2, connected_for: float = 3600.0) -> TickRuntime:
    """Run the lifeline's tick `times` times (the second one after it forgot dead nodes)."""
    runtime = TickRuntime(fs, connected_for=connected_for)
    for _ in range(times):
        await Lifeline(interval=1.0, expiry=EXPIRY).tick(runtime)
    return runtime


async def test_a_live_nodes_jobs_stay_and_a_dead_ones_are_rescued(flowstone: FlowStone) -> None:
    await heartbeat(flowstone, "live", "inc2")
    current = await claimed(flowstone, ["live", "inc2"], LONG_AGO)
    before_incarnations = await claimed(flowstone, ["live"], LONG_AGO)  # a claim that named no incarnation
    dead = await claimed(flowstone, ["gone", "inc1"], LONG_AGO)
    runtime = await tick(flowstone)
    assert await states(flowstone, current, before_incarnations, dead) == [
        "executing",
        "executing",
        "available",
    ]
    assert runtime.woken == [PARKED]
    job = await flowstone.aget_job(dead)
    assert "rescued by the lifeline: node gone stopped heartbeating" in job.errors[-1]["error"]  # type: ignore[union-attr]


async def test_a_previous_incarnation_of_a_live_name_is_rescued(flowstone: FlowStone) -> None:
    await heartbeat(flowstone, "restarted", "new")
    old = await claimed(flowstone, ["restarted", "old"], LONG_AGO)
    await tick(flowstone)
    assert await states(flowstone, old) == ["available"]


async def test_a_node_row_whose_heartbeat_expired_vouches_for_nothing(flowstone: FlowStone) -> None:
    await heartbeat(flowstone, "stale", "inc", ago=EXPIRY + 5)
    await heartbeat(flowstone, "recent", "inc", ago=EXPIRY - 5)
    stale, recent = (
        await claimed(flowstone, ["stale", "inc"], LONG_AGO),
        await claimed(flowstone, ["recent", "inc"], LONG_AGO),
    )
    await tick(flowstone, times=1)
    assert await states(flowstone, stale, recent) == ["available", "executing"]


async def test_a_job_claimed_within_the_expiry_is_left_alone_whatever_the_nodes_table_says(
    flowstone: FlowStone,
) -> None:
    """A node may claim before its first heartbeat is seen (or between the lifeline's read
    of the nodes and its rescue): its fresh claims wait out one expiry."""
    fresh = await claimed(flowstone, ["unseen", "inc"], EXPIRY - 5)
    old = await claimed(flowstone, ["unseen", "inc"], EXPIRY + 5)
    await tick(flowstone)
    assert await states(flowstone, fresh, old) == ["executing", "available"]


async def test_only_executing_jobs_are_rescued(flowstone: FlowStone) -> None:
    done = await claimed(flowstone, ["gone", "inc"], LONG_AGO, state="completed")
    waiting = await claimed(flowstone, ["gone", "inc"], LONG_AGO, state="retryable")
    await tick(flowstone)
    assert await states(flowstone, done, waiting) == ["completed", "retryable"]


async def test_a_leader_back_from_an_outage_waits_one_expiry_before_rescuing(flowstone: FlowStone) -> None:
    """The other nodes need one expiry to heartbeat again after the leader's own outage."""
    dead = await claimed(flowstone, ["gone", "inc"], LONG_AGO)
    await tick(flowstone, connected_for=EXPIRY - 1)
    assert await states(flowstone, dead) == ["executing"]
    await tick(flowstone, times=1, connected_for=EXPIRY)
    assert await states(flowstone, dead) == ["available"]


def rescue_around(fs: FlowStone, between: str, job_id: int) -> list[dict[str, Any]]:
    """Run the rescue's statements in one transaction, with `between` committed by another
    connection after the orphans were found and before they are rescued."""
    plan = rescue_plan(fs.database.statements.jobs, [], EXPIRY, limit=10)
    with fs.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        query, params = next(plan)
        cursor.execute(query, params)
        found = cursor.fetchall()
        assert [row["id"] for row in found] == [job_id]
        with psycopg.connect(fs.database_url, autocommit=True) as other:
            other.execute(between, {"id": job_id})
        try:
            while True:
                query, params = plan.send(found)
                cursor.execute(query, params)
                found = cursor.fetchall()
        except StopIteration as done:
            return list(done.value)


@pytest.mark.parametrize(
    ("between", "state"),
    [
        (
            "UPDATE flowstone.jobs SET state = 'completed', completed_at = now() WHERE id = %(id)s",
            "completed",
        ),
        (
            "UPDATE flowstone.jobs SET attempted_at = now(), attempted_by = ARRAY['back'] WHERE id = %(id)s",
            "executing",
        ),
    ],
    ids=["it-completed", "it-was-claimed-again"],
)
async def test_the_rescue_checks_again_what_changed_since_the_orphans_were_found(
    flowstone: FlowStone, between: str, state: str
) -> None:
    job = await claimed(flowstone, ["gone", "inc"], LONG_AGO)
    assert rescue_around(flowstone, between, job) == []
    assert await states(flowstone, job) == [state]


# Claimers (attempted_by: none, a name, a name and incarnation) and live keys near each
# other in bytewise order: empty parts, separators, a character above ASCII.
part = st.text(alphabet="ab/*é", max_size=3)
claimers = st.lists(part, max_size=2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.lists(claimers, max_size=8), live=st.lists(st.tuples(part, part), max_size=4), data=st.data())
def test_the_orphan_search_finds_every_job_whose_claimer_is_not_alive(
    flowstone: FlowStone, jobs: list[list[str]], live: list[tuple[str, str]], data: st.DataObject
) -> None:
    """Searched between the live keys, it finds what `NOT (key = ANY(alive))` does."""
    keys = [f"{[*by, ''][0]}/{[*by[1:], '*'][0]}" for by in jobs]
    alive = [f"{name}/{incarnation}" for name, incarnation in live]
    alive += data.draw(st.lists(st.sampled_from(keys), max_size=len(keys))) if keys else []
    with psycopg.connect(flowstone.database_url, autocommit=True) as conn:
        ids = [
            row[0]
            for by in jobs
            for row in conn.execute(
                "INSERT INTO flowstone.jobs (state, queue, worker, attempt, attempted_by, attempted_at)"
                " VALUES ('executing', 'q', 'w', 1, %s, now() - interval '1 hour') RETURNING id",
                [by],
            )
        ]
        try:
            params = {"alive": alive, "grace": EXPIRY, "limit": 100}
            found = {row[0] for row in conn.execute(flowstone.database.statements.jobs.orphans, params)}
        finally:
            conn.execute("DELETE FROM flowstone.jobs")
    assert found == {job_id for job_id, key in zip(ids, keys, strict=True) if key not in alive}
