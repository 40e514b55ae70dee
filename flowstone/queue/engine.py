"""The claim/ack engine: the batched statements a producer (or a drain) runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from flowstone.queue.job import Job, JobState
from flowstone.queue.plan import Plan, Row
from flowstone.queue.queries.jobs import JobQueries

MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one execution of a job, ready to acknowledge.

    `delay` schedules the next run (retry backoff or snooze); `refund` gives the
    attempt back (a snooze, or a job handed back at shutdown); `snoozed` counts a snooze;
    `error` is appended to the job's errors (the database adds `at`); `exception` is
    what `perform` raised, kept in memory only.
    """

    job: Job
    state: JobState
    delay: float | None = None
    error: dict[str, Any] | None = None
    snoozed: bool = False
    refund: bool = False
    exception: BaseException | None = None

    @property
    def kind(self) -> str:
        """The outcome as counted by drains and telemetry: a state, or `snoozed`."""
        return "snoozed" if self.snoozed else self.state.value

    def encode(self) -> dict[str, Any]:
        """The row the ack statement reads."""
        return {
            "id": self.job.id,
            "attempt": self.job.attempt,
            "attempted_at": None if self.job.attempted_at is None else self.job.attempted_at.isoformat(),
            "state": self.state.value,
            "delay": self.delay,
            "error": self.error,
            "snoozed": self.snoozed,
            "refund": self.refund,
        }


def claim_plan(
    queries: JobQueries, queue: str, limit: int, node: str, max_id: int = MAX_ID
) -> Plan[list[Job]]:
    """Claim up to `limit` available jobs of `queue` (SKIP LOCKED), in priority order."""
    if limit <= 0:
        return []
    rows = yield queries.claim, {"queue": queue, "limit": limit, "node": node, "max_id": max_id}
    return _claimed(rows)


def ack_plan(queries: JobQueries, outcomes: Sequence[Outcome]) -> Plan[set[int]]:
    """Record many outcomes in one statement; return the ids that were still ours."""
    if not outcomes:
        return set()
    rows = yield queries.ack, _acks(outcomes)
    return {row["id"] for row in rows}


def ack_claim_plan(
    queries: JobQueries, outcomes: Sequence[Outcome], queue: str, limit: int, node: str
) -> Plan[list[Job]]:
    """Acknowledge `outcomes` and claim up to `limit` jobs of `queue` in one statement."""
    params = {
        **_acks(outcomes),
        "queue": queue,
        "limit": limit,
        "node": node,
        "max_id": MAX_ID,
    }
    rows = yield queries.ack_claim, params
    return _claimed(rows)


def release_orphans_plan(queries: JobQueries, queue: str, node: str, keep: Sequence[int]) -> Plan[int]:
    """Hand back jobs of `queue` executing under `node` other than `keep`; how many."""
    rows = yield queries.release_orphans, {"queue": queue, "node": node, "keep": list(keep)}
    return len(rows)


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
