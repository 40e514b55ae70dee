"""Job management: look jobs up, retry, cancel and delete them (plans over the jobs table)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from flowstone.errors import ValidationError
from flowstone.queue.job import Job, JobState
from flowstone.queue.plan import Plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.validation import check_args, check_name


def get_plan(queries: JobQueries, job_id: int) -> Plan[Job | None]:
    """The job with `job_id`, or None."""
    rows = yield queries.get, {"id": job_id}
    return Job.from_row(rows[0]) if rows else None


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs to list: every given field must match (`args` by containment, `tag`
    among the tags), newest first unless `oldest_first`, after the `cursor` id and not
    past the `within` id."""

    queue: str | None = None
    state: str | JobState | None = None
    worker: str | None = None
    tag: str | None = None
    args: Mapping[str, Any] | None = None
    oldest_first: bool = False
    cursor: int | None = None
    limit: int = 100
    within: int | None = None

    def params(self) -> dict[str, Any]:
        """The bound parameters of the listing statement (validated)."""
        if self.queue is not None:
            check_name(self.queue, "queue")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= 10_000:
            raise ValidationError(f"limit must be an integer from 1 to 10000; got {self.limit!r}")
        return {
            "queue": self.queue,
            "state": None if self.state is None else _state(self.state).value,
            "worker": self.worker,
            "tag": self.tag,
            "args": None if self.args is None else Jsonb(check_args(self.args)),
            "cursor": self.cursor,
            "limit": self.limit,
            "within": self.within,
        }


def _state(state: str | JobState) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise ValidationError(f"unknown job state {state!r} (states: {known})") from None


def list_plan(queries: JobQueries, where: JobFilter) -> Plan[list[Job]]:
    """Jobs matching `where`, one page."""
    statement = queries.list_oldest if where.oldest_first else queries.list_newest
    rows = yield statement, where.params()
    return [Job.from_row(row) for row in rows]


def retry_plan(queries: JobQueries, job_id: int) -> Plan[Job | None]:
    """Make a finished or waiting job available now (with one more attempt if it ran out)."""
    rows = yield queries.retry, {"id": job_id}
    return Job.from_row(rows[0]) if rows else None


def delete_plan(queries: JobQueries, job_id: int) -> Plan[bool]:
    """Delete a job that is not executing; True when a row was deleted."""
    rows = yield queries.delete, {"id": job_id}
    return bool(rows)
