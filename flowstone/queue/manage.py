"""Job management: look jobs up, retry, cancel and delete them, one or in bulk by filter
(plans over the jobs table)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from psycopg.types.json import Jsonb

from flowstone.errors import ValidationError
from flowstone.queue.control import cancel_ids_plan
from flowstone.queue.engine import lock_workflows_of
from flowstone.queue.job import FINAL_STATES, INCOMPLETE_STATES, Job, JobState
from flowstone.queue.plan import Plan, atomic
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries
from flowstone.queue.validation import check_args, check_name, check_text


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

    def given(self) -> bool:
        """Whether any filter narrows the jobs (else every job matches)."""
        return any(value is not None for value in (self.queue, self.state, self.worker, self.tag, self.args))

    def params(self) -> dict[str, Any]:
        """The bound parameters of the listing statement (validated). A filter given is a
        filter: an empty one (`queue=""`, `args={}`) is refused, never read as "any"."""
        if self.queue is not None:
            check_name(self.queue, "queue")
        for value, field in ((self.worker, "worker"), (self.tag, "tag")):
            if value is not None and not check_text(value, field).strip():
                raise ValidationError(f"{field} filter must not be empty (leave it out to match any)")
        if self.args is not None and not self.args:
            raise ValidationError("args filter must name at least one key (leave it out to match any)")
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
    retried = yield from retry_ids_plan(queries, [job_id])
    return retried[0] if retried else None


def retry_ids_plan(queries: JobQueries, ids: Sequence[int]) -> Plan[list[Job]]:
    """Retry those of the jobs `ids` that are neither available nor executing (nor
    waiting on workflow dependencies, which run it when they finish)."""
    rows = yield queries.retry, {"ids": list(ids)}
    return [Job.from_row(row) for row in rows]


def delete_plan(queries: JobQueries, job_id: int) -> Plan[bool]:
    """Delete a job that is not executing; True when a row was deleted."""
    deleted = yield from delete_ids_plan(queries, [job_id])
    return bool(deleted)


def delete_ids_plan(queries: JobQueries, ids: Sequence[int]) -> Plan[list[int]]:
    """Delete those of the jobs `ids` that are not executing; the ids deleted. A deleted
    job that had not finished counts as cancelled for the jobs waiting on it."""
    yield from lock_workflows_of(queries, ids)
    rows = yield queries.delete, {"ids": list(ids)}
    return [row["id"] for row in rows]


BulkAction = Literal["cancel", "retry", "delete"]

BULK_STATES: dict[str, tuple[JobState, ...]] = {
    "cancel": INCOMPLETE_STATES,
    "retry": (JobState.SCHEDULED, JobState.RETRYABLE, *FINAL_STATES),
    "delete": tuple(state for state in JobState if state != JobState.EXECUTING),
}
"""The states each bulk operation applies to."""

MAX_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Bulk:
    """A bulk operation: `action` on the jobs matching `where` (its cursor, limit and
    order are ignored), in transactions of at most `batch_size` jobs; `dry_run` only
    counts them. With no filter it acts on every job only when `everything` says so."""

    action: BulkAction
    where: JobFilter
    batch_size: int = 1000
    dry_run: bool = False
    reason: str | None = None
    everything: bool = False

    def __post_init__(self) -> None:
        if self.action not in BULK_STATES:
            raise ValidationError(f"unknown bulk action {self.action!r}; expected cancel, retry or delete")
        if self.everything and self.where.given():
            raise ValidationError(f"{self.action}: give filters or all=True, not both")
        if not self.everything and not self.where.given():
            raise ValidationError(
                f"{self.action} with no filter would act on every job: give a filter, or all=True to mean it"
            )
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH:
            raise ValidationError(f"batch_size must be an integer from 1 to {MAX_BATCH}; got {size!r}")

    def params(self) -> dict[str, Any]:
        """The filter's parameters with the states the action applies to."""
        return {**self.where.params(), "states": [state.value for state in BULK_STATES[self.action]]}


def bulk_count_plan(queries: JobQueries, bulk: Bulk) -> Plan[int]:
    """How many jobs the operation would act on now (its dry run)."""
    rows = yield queries.count_matching, bulk.params()
    return int(rows[0]["count"])


def bulk_batch_plan(
    queries: JobQueries, nodes: NodeQueries, bulk: Bulk, max_id: int
) -> Plan[tuple[int, bool]]:
    """One batch of the operation (one transaction): how many jobs it acted on, and
    whether more may match (the batch was full)."""
    params = {**bulk.params(), "max_id": max_id, "limit": bulk.batch_size}
    rows = yield queries.matching, params
    ids = [row["id"] for row in rows]
    if not ids:
        return 0, False
    if bulk.action == "cancel":
        done: list[Any] = yield from cancel_ids_plan(queries, nodes, ids, bulk.reason)
    elif bulk.action == "retry":
        done = yield from retry_ids_plan(queries, ids)
    else:
        done = yield from delete_ids_plan(queries, ids)
    return len(done), len(ids) == bulk.batch_size


def bulk_plan(queries: JobQueries, nodes: NodeQueries, bulk: Bulk) -> Plan[int]:
    """The whole operation, run outside a transaction: each batch commits on its own (a
    long operation never holds its locks for long); how many jobs it acted on."""
    if bulk.dry_run:
        return (yield from bulk_count_plan(queries, bulk))
    max_id, done, more = (yield from max_id_plan(queries)), 0, True
    while more:
        count, more = yield from atomic(bulk_batch_plan(queries, nodes, bulk, max_id))
        done += count
    return done


def max_id_plan(queries: JobQueries) -> Plan[int]:
    """The newest job's id (0 when there is none): where a bulk operation stops."""
    rows = yield queries.max_id, {}
    return int(rows[0]["max_id"])
