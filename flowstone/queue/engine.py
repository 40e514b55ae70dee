"""The claim/ack engine: the batched statements a producer (or a drain) runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from flowstone.queue.job import Job
from flowstone.queue.outcomes import Outcome
from flowstone.queue.plan import Plan, Row
from flowstone.queue.queries.jobs import JobQueries

MAX_ID = 2**63 - 1


def claim_plan(
    queries: JobQueries, queue: str, limit: int, claimer: str | Sequence[str], max_id: int = MAX_ID
) -> Plan[list[Job]]:
    """Claim up to `limit` available jobs of `queue` (SKIP LOCKED), in priority order, for
    `claimer` (node name and incarnation, stored in `attempted_by`)."""
    if limit <= 0:
        return []
    params = {"queue": queue, "limit": limit, "claimer": _claimer(claimer), "max_id": max_id}
    rows = yield queries.claim, params
    return _claimed(rows)


def ack_plan(queries: JobQueries, outcomes: Sequence[Outcome]) -> Plan[set[int]]:
    """Record many outcomes in one statement; return the ids that were still ours."""
    if not outcomes:
        return set()
    rows = yield queries.ack, _acks(outcomes)
    return {row["id"] for row in rows}


def ack_claim_plan(
    queries: JobQueries, outcomes: Sequence[Outcome], queue: str, limit: int, claimer: str | Sequence[str]
) -> Plan[list[Job]]:
    """Acknowledge `outcomes` and claim up to `limit` jobs of `queue` in one statement."""
    params = {
        **_acks(outcomes),
        "queue": queue,
        "limit": limit,
        "claimer": _claimer(claimer),
        "max_id": MAX_ID,
    }
    rows = yield queries.ack_claim, params
    return _claimed(rows)


def release_orphans_plan(
    queries: JobQueries, queue: str, claimer: Sequence[str], keep: Sequence[int]
) -> Plan[int]:
    """Hand back jobs of `queue` executing under `claimer` other than `keep`; how many."""
    rows = yield queries.release_orphans, {"queue": queue, "claimer": list(claimer), "keep": list(keep)}
    return len(rows)


def _claimer(claimer: str | Sequence[str]) -> list[str]:
    """`attempted_by` of claimed jobs: the node's name, then its incarnation."""
    return [claimer] if isinstance(claimer, str) else list(claimer)


def _acks(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    return {
        "acks": Jsonb([outcome.encode() for outcome in outcomes]),
        "ids": [outcome.job.id for outcome in outcomes],
    }


def _claimed(rows: list[Row]) -> list[Job]:
    jobs = [Job.from_row(row) for row in rows]
    jobs.sort(key=lambda job: (job.priority, job.scheduled_at, job.id))
    return jobs


def stage_plan(
    queries: JobQueries, *, until: str | None = None, queue: str | None = None, limit: int = 5000
) -> Plan[dict[str, int]]:
    """Make due scheduled/retryable jobs available (up to `until`, default now); a trigger
    notifies their queues. Returns the count per queue."""
    rows = yield (
        queries.stage,
        {
            "until": until,
            "queue": queue,
            "limit": limit,
        },
    )
    return {row["queue"]: row["count"] for row in rows}
