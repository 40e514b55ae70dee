"""Inserting jobs: one statement per batch, unique conflicts resolved by the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from flowstone.queue.job import STATES, Job
from flowstone.queue.plan import Plan, Row
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.worker import NewJob

# A unique job found by the conflict lookup may finish (and free its key) before we
# read it; then the insert is simply tried again, a bounded number of times.
MAX_UNIQUE_ROUNDS = 5


def _meta(job: NewJob) -> dict[str, Any]:
    if job.unique is None:
        return job.meta
    return {**job.meta, "unique_states": job.unique.state_list}


def _encode(ord_: int, job: NewJob, key: str | None) -> dict[str, Any]:
    """The job as the insert statement reads it; empty and default fields are left out."""
    row: dict[str, Any] = {
        "ord": ord_,
        "queue": job.queue,
        "worker": job.worker,
        "args": job.args,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
    }
    if job.meta or job.unique is not None:
        row["meta"] = _meta(job)
    if job.tags:
        row["tags"] = list(job.tags)
    if job.scheduled_at is not None:
        row["scheduled_at"] = job.scheduled_at.isoformat()
    if job.scheduled_in:
        row["scheduled_in"] = job.scheduled_in
    if key:
        row["unique_key"] = key
    return row


def _inserted(job: NewJob, row: Row) -> Job:
    return Job(
        id=row["id"],
        state=STATES[row["state"]],
        queue=job.queue,
        worker=job.worker,
        args=job.args,
        meta=_meta(job),
        tags=list(job.tags),
        max_attempts=job.max_attempts,
        priority=job.priority,
        inserted_at=row["inserted_at"],
        scheduled_at=row["scheduled_at"],
        unique_key=row["unique_key"],
    )


def _expiring_keys(jobs: Sequence[NewJob], keys: Sequence[str | None]) -> list[dict[str, Any]]:
    periods: dict[str, float] = {}
    for job, key in zip(jobs, keys, strict=True):
        if key is not None and job.unique is not None and job.unique.period is not None:
            periods[key] = float(job.unique.period)
    return [{"unique_key": key, "period": period} for key, period in periods.items()]


def insert_plan(queries: JobQueries, jobs: Sequence[NewJob]) -> Plan[list[Job]]:
    """Insert `jobs` in one statement and return them in order; conflicts flagged.

    Rows of a multi-row INSERT … SELECT … ORDER BY come back in insertion order, so
    returned rows are matched to inputs in order: a unique input whose key the next
    returned row does not carry lost to an existing job, which is then looked up.
    """
    results: list[Job | None] = [None] * len(jobs)
    keys = [job.unique_key for job in jobs]
    pending = list(range(len(jobs)))
    for _ in range(MAX_UNIQUE_ROUNDS):
        if not pending:
            break
        batch = [jobs[i] for i in pending]
        batch_keys = [keys[i] for i in pending]
        expiring = _expiring_keys(batch, batch_keys)
        if expiring:
            yield queries.release_expired_unique, {"keys": Jsonb(expiring)}
        payload = [_encode(n, job, key) for n, (job, key) in enumerate(zip(batch, batch_keys, strict=True))]
        statement = queries.insert_unique if any(batch_keys) else queries.insert
        rows = yield statement, {"jobs": Jsonb(payload)}
        conflicted = _match(pending, jobs, keys, rows, results)
        lost = set(conflicted)
        yield from _release_unheld(queries, jobs, [i for i in pending if i not in lost], results)
        yield from _replace(queries, jobs, keys, conflicted)
        pending = yield from _resolve_conflicts(queries, conflicted, keys, results)
    if pending:
        raise RuntimeError(f"unique insert did not settle after {MAX_UNIQUE_ROUNDS} rounds")
    return [job for job in results if job is not None]


def _match(
    pending: list[int],
    jobs: Sequence[NewJob],
    keys: Sequence[str | None],
    rows: list[Row],
    results: list[Job | None],
) -> list[int]:
    """Pair returned rows with inputs in order; return the indexes that conflicted."""
    conflicted: list[int] = []
    returned = iter(rows)
    row = next(returned, None)
    for index in pending:
        if row is not None and row["unique_key"] == keys[index]:
            results[index] = _inserted(jobs[index], row)
            row = next(returned, None)
        elif keys[index] is not None:
            conflicted.append(index)
        else:
            raise RuntimeError("inserted rows came back out of order")
    return conflicted


def _starts_outside(job: NewJob) -> bool:
    """True when the job's first state (available or scheduled) may not hold its key."""
    return job.unique is not None and not {"available", "scheduled"} <= set(job.unique.state_list)


def _release_unheld(
    queries: JobQueries, jobs: Sequence[NewJob], inserted: list[int], results: list[Job | None]
) -> Plan[None]:
    """Free the keys of new jobs inserted in a state outside their unique states."""
    new = {job.id: job for i in inserted if _starts_outside(jobs[i]) and (job := results[i])}
    if new:
        rows = yield queries.release_unheld_unique, {"ids": list(new)}
        for row in rows:
            new[row["id"]].unique_key = None


def _replace(
    queries: JobQueries, jobs: Sequence[NewJob], keys: Sequence[str | None], conflicted: list[int]
) -> Plan[None]:
    """Set the `replace` fields of the jobs the conflicting inputs lost to (those not yet
    started), before they are read; of inputs sharing a key, the last one wins."""
    latest: dict[str, dict[str, Any]] = {}
    for index in conflicted:
        job, key = jobs[index], keys[index]
        if key is not None and job.unique is not None and job.unique.replace:
            row = _encode(index, job, key)
            row["fields"] = list(job.unique.replace)
            latest[key] = row
    if latest:
        yield queries.replace_unique, {"jobs": Jsonb(list(latest.values()))}


def _resolve_conflicts(
    queries: JobQueries, conflicted: list[int], keys: Sequence[str | None], results: list[Job | None]
) -> Plan[list[int]]:
    """Fill conflicting inputs with the existing jobs; return those whose key was freed."""
    if not conflicted:
        return []
    wanted = sorted({key for i in conflicted if (key := keys[i]) is not None})
    rows = yield queries.by_unique_keys, {"keys": wanted}
    existing = {row["unique_key"]: row for row in rows}
    retry: list[int] = []
    for index in conflicted:
        row = existing.get(keys[index])
        if row is None:
            retry.append(index)
        else:
            results[index] = Job.from_row(row, conflict=True)
    return retry
