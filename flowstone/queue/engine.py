"""The claim/ack engine: the batched statements a producer (or a drain) runs.

A plain queue's cycle is one statement (`ack_claim_plan`). A cycle that must do more —
claim under a global or rate limit, record results, end jobs of workflows — is a few
one-statement plans run together in one transaction (`cycle_plans`): the advisory locks
first (the queue's, the workflows'), then the acknowledgement, then the claim.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from flowstone.queue.config import QueueConfig
from flowstone.queue.floor import BOTTOM, Key
from flowstone.queue.job import Job
from flowstone.queue.outcomes import Outcome
from flowstone.queue.plan import Plan, Row
from flowstone.queue.queries.jobs import JobQueries

MAX_ID = 2**63 - 1


def claim_plan(
    queries: JobQueries,
    queue: str,
    limit: int,
    claimer: str | Sequence[str],
    max_id: int = MAX_ID,
    floor: Key = BOTTOM,
) -> Plan[list[Job]]:
    """Claim up to `limit` available jobs of `queue` (SKIP LOCKED), in priority order past
    `floor`, for `claimer` (node name and incarnation, stored in `attempted_by`)."""
    if limit <= 0:
        return []
    params = {
        "queue": queue,
        "limit": limit,
        "claimer": _claimer(claimer),
        "max_id": max_id,
        **_key("floor", floor),
    }
    rows = yield queries.claim, params
    return _claimed(rows)


def ack_plan(queries: JobQueries, outcomes: Sequence[Outcome]) -> Plan[set[int]]:
    """Record many outcomes in one statement; return the ids that were still ours. Run it
    after the workflows' locks (`ack_plans`) when an outcome ends a workflow's job."""
    if not outcomes:
        return set()
    statement = queries.ack_effects if any(outcome.rich for outcome in outcomes) else queries.ack
    rows = yield statement, _acks(outcomes)
    return {row["id"] for row in rows}


def ack_plans(queries: JobQueries, outcomes: Sequence[Outcome]) -> list[Plan[Any]]:
    """The plans that acknowledge `outcomes` (to run together): the locks of the
    workflows they end jobs of, if any, then the acknowledgement."""
    names = workflow_locks(queries.schema, _ending_workflows(outcomes))
    return [*([lock_plan(queries, names)] if names else []), ack_plan(queries, outcomes)]


def lock_plan(queries: JobQueries, names: Sequence[str]) -> Plan[None]:
    """Take the transaction's advisory locks on `names`, in a deadlock-free order."""
    yield queries.lock, {"names": sorted(set(names))}


def queue_lock(schema: str, queue: str) -> str:
    """The lock name that serializes the claims of a limited queue."""
    return f"{schema}.queue/{queue}"


def workflow_locks(schema: str, workflows: Iterable[Any]) -> list[str]:
    """The lock names that serialize the ends and appends of these workflows."""
    return sorted({f"{schema}.workflow/{workflow}" for workflow in workflows if workflow})


def _ending_workflows(outcomes: Sequence[Outcome]) -> list[Any]:
    """The workflow ids of the outcomes' jobs (meta as stored: possibly written by hand)."""
    flows = (outcome.job.meta.get("workflow") for outcome in outcomes if outcome.rich)
    return [flow.get("id") for flow in flows if isinstance(flow, dict)]


PARTITION_LOOKAHEAD = 1000
"""How many available jobs a partitioned queue's claim ranks to find partitions with room."""


def claim_limited_plan(
    queries: JobQueries, queue: str, limit: int, claimer: Sequence[str], config: QueueConfig
) -> Plan[list[Job]]:
    """Claim up to `limit` jobs of a queue with a global and/or rate limit (partitioned or
    not); run it after the queue's lock (`cycle_plans`)."""
    rate = config.rate_limit
    keys = list(config.partition.args) if config.partition is not None else []
    params = {
        "queue": queue,
        "limit": limit,
        "claimer": list(claimer),
        "global_limit": config.global_limit,
        "allowed": None if rate is None else rate.allowed,
        "period": None if rate is None else rate.period,
        "bucket": None if rate is None else rate.bucket,
        "keys": keys,
        "lookahead": max(limit, PARTITION_LOOKAHEAD) if keys else limit,
    }
    rows = yield queries.claim_limited, params
    return _claimed(rows)


def cycle_plans(
    queries: JobQueries,
    outcomes: Sequence[Outcome],
    queue: str,
    limit: int,
    claimer: Sequence[str],
    config: QueueConfig,
    floor: Key = BOTTOM,
) -> list[Plan[Any]]:
    """One producer cycle as plans to run together in one transaction; when `limit` > 0,
    the last one's result is the claimed jobs. A plain cycle is the one statement of
    `ack_claim_plan`. A limited queue's claim ignores `floor` (it ranks from the head)."""
    limited = config.limited and limit > 0
    if not limited and not any(outcome.rich for outcome in outcomes):
        return [ack_claim_plan(queries, outcomes, queue, limit, claimer, floor)]
    names = workflow_locks(queries.schema, _ending_workflows(outcomes))
    if limited:
        names.append(queue_lock(queries.schema, queue))
    plans: list[Plan[Any]] = [lock_plan(queries, names)] if names else []
    if outcomes:
        plans.append(ack_plan(queries, outcomes))
    if limited:
        plans.append(claim_limited_plan(queries, queue, limit, claimer, config))
    elif limit > 0:
        plans.append(claim_plan(queries, queue, limit, claimer, floor=floor))
    return plans


def ack_claim_plan(
    queries: JobQueries,
    outcomes: Sequence[Outcome],
    queue: str,
    limit: int,
    claimer: str | Sequence[str],
    floor: Key = BOTTOM,
) -> Plan[list[Job]]:
    """Acknowledge `outcomes` and claim up to `limit` jobs of `queue` past `floor` in one
    statement."""
    params = {
        **_acks(outcomes),
        "queue": queue,
        "limit": limit,
        "claimer": _claimer(claimer),
        "max_id": MAX_ID,
        **_key("floor", floor),
    }
    rows = yield queries.ack_claim, params
    return _claimed(rows)


def release_orphans_plan(
    queries: JobQueries,
    queue: str,
    claimer: Sequence[str],
    keep: Sequence[int],
    after: datetime | None = None,
) -> Plan[tuple[int, datetime]]:
    """Hand back jobs of `queue` executing under `claimer` other than `keep`, claimed from
    `after` on (None: whenever); how many, and the mark a next sweep may start below."""
    params = {"queue": queue, "claimer": list(claimer), "keep": list(keep), "after": after}
    [row] = yield queries.release_orphans, params
    return row["count"], row["mark"]


def below_floor_plan(queries: JobQueries, queue: str, floor: Key, lower: Key = BOTTOM) -> Plan[Key | None]:
    """The lowest available key of `queue` below `floor` and from `lower` on, if any (the
    floor's audit)."""
    rows = yield queries.below_floor, {"queue": queue, **_key("floor", floor), **_key("lower", lower)}
    if not rows:
        return None
    row = rows[0]
    return (row["priority"], row["scheduled_at"], row["id"])


def _claimer(claimer: str | Sequence[str]) -> list[str]:
    """`attempted_by` of claimed jobs: the node's name, then its incarnation."""
    return [claimer] if isinstance(claimer, str) else list(claimer)


def _key(name: str, key: Key) -> dict[str, Any]:
    """The parameters `name`_priority, `name`_at and `name`_id of a claim key."""
    priority, at, job_id = key
    return {f"{name}_priority": priority, f"{name}_at": at, f"{name}_id": job_id}


def _acks(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    return {
        "acks": Jsonb([outcome.encode() for outcome in outcomes]),
        "ids": [outcome.job.id for outcome in outcomes],
    }


def _claimed(rows: list[Row]) -> list[Job]:
    jobs = [Job.from_row(row) for row in rows]
    jobs.sort(key=lambda job: (job.priority, job.scheduled_at, job.id))
    return jobs


def rescue_plan(queries: JobQueries, alive: Sequence[str], grace: float, limit: int) -> Plan[list[Row]]:
    """The lifeline's rescue: jobs executing under a claimer not in `alive` (for longer
    than `grace` s) go back to available, or are discarded when out of attempts (ending
    them for their workflows, whose locks are taken first). Rows: id, state, queue."""
    orphans = yield queries.orphans, {"alive": list(alive), "grace": grace, "limit": limit}
    if not orphans:
        return []
    names = workflow_locks(queries.schema, (row["workflow"] for row in orphans))
    if names:
        yield from lock_plan(queries, names)
    ids = [row["id"] for row in orphans]
    rows = yield queries.rescue, {"alive": list(alive), "grace": grace, "ids": ids}
    return rows


def lock_workflows_of(queries: JobQueries, ids: Sequence[int]) -> Plan[None]:
    """Take the locks of the workflows of the jobs `ids` (before ending any of them)."""
    rows = yield queries.workflows_of, {"ids": list(ids)}
    names = workflow_locks(queries.schema, (row["workflow"] for row in rows))
    if names:
        yield from lock_plan(queries, names)


def stage_plan(
    queries: JobQueries, *, until: str | None = None, queue: str | None = None, limit: int = 5000
) -> Plan[dict[str, int]]:
    """Make due scheduled/retryable jobs available (up to `until`, default now); a trigger
    notifies their queues. Returns the count per queue."""
    staged, _ = yield from staging_plan(queries, until=until, queue=queue, limit=limit)
    return staged


def staging_plan(
    queries: JobQueries,
    *,
    after: datetime | None = None,
    until: str | None = None,
    queue: str | None = None,
    limit: int = 5000,
) -> Plan[tuple[dict[str, int], datetime]]:
    """`stage_plan` for due jobs scheduled from `after` on (None: all), also returning the
    upper bound it staged up to (the database's now, or `until` when earlier)."""
    rows = yield queries.stage, {"after": after, "until": until, "queue": queue, "limit": limit}
    return {row["queue"]: row["count"] for row in rows if row["queue"] is not None}, rows[0]["upto"]
