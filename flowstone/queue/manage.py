"""Job management: look jobs up, retry, cancel and delete them (plans over the jobs table)."""

from __future__ import annotations

from flowstone.queue.job import Job, JobState
from flowstone.queue.plan import Plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.validation import check_name


def get_plan(queries: JobQueries, job_id: int) -> Plan[Job | None]:
    """The job with `job_id`, or None."""
    rows = yield queries.get, {"id": job_id}
    return Job.from_row(rows[0]) if rows else None


def list_plan(
    queries: JobQueries,
    *,
    queue: str | None = None,
    state: str | JobState | None = None,
    worker: str | None = None,
    limit: int = 100,
) -> Plan[list[Job]]:
    """Jobs matching every given filter, oldest first."""
    if queue is not None:
        check_name(queue, "queue")
    state_value = None if state is None else JobState(state).value
    rows = yield queries.list, {"queue": queue, "state": state_value, "worker": worker, "limit": limit}
    return [Job.from_row(row) for row in rows]


def retry_plan(queries: JobQueries, job_id: int) -> Plan[Job | None]:
    """Make a finished or waiting job available now (with one more attempt if it ran out)."""
    rows = yield queries.retry, {"id": job_id}
    return Job.from_row(rows[0]) if rows else None


def delete_plan(queries: JobQueries, job_id: int) -> Plan[bool]:
    """Delete a job that is not executing; True when a row was deleted."""
    rows = yield queries.delete, {"id": job_id}
    return bool(rows)
