"""A producer's sweep for its own orphans (jobs executing under its claimer that it is
not running): over all of its claims, or from a cursor over the claim time, walking
only the claimer index entries since then (migration 0016)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from test_manage import QUEUE, Ok

from flowstone import FlowStone
from flowstone.queue.engine import release_orphans_plan

CLAIMER = ["sweeper", "1"]


def orphan(flowstone: FlowStone, url: str, claimed_ago: str) -> int:
    """A job left executing under CLAIMER, claimed `claimed_ago` (an interval)."""
    job = flowstone.insert(Ok.new({}))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE flowstone.jobs SET state = 'executing', attempt = 1, attempted_by = %s,"
            " attempted_at = now() - %s::interval WHERE id = %s",
            [CLAIMER, claimed_ago, job.id],
        )
    return job.id


def sweep(flowstone: FlowStone, keep: list[int], after: object = None) -> tuple[int, object]:
    plan = release_orphans_plan(flowstone.database.statements.jobs, QUEUE, CLAIMER, keep, after)  # type: ignore[arg-type]
    return flowstone.database.execute(plan)


def test_a_sweep_from_a_cursor_hands_back_only_the_claims_since(
    flowstone: FlowStone, flowstone_url: str
) -> None:
    old, recent, running = (orphan(flowstone, flowstone_url, ago) for ago in ("1 hour", "10 s", "5 s"))
    released, mark = sweep(flowstone, [running], after=None)
    assert released == 2 and mark is not None
    for job_id in (old, recent):
        assert flowstone.get_job(job_id).state == "available"
    assert flowstone.get_job(running).state == "executing", "a running job is kept"

    old, recent = orphan(flowstone, flowstone_url, "1 hour"), orphan(flowstone, flowstone_url, "10 s")
    released, _ = sweep(flowstone, [running], after=mark - timedelta(minutes=1))  # type: ignore[operator]
    assert released == 1
    assert (flowstone.get_job(old).state, flowstone.get_job(recent).state) == ("executing", "available")
    assert sweep(flowstone, [running])[0] == 1, "a full sweep finds the old one"
