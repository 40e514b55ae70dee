"""Inserting jobs: one statement per batch, unique conflicts resolved by the database."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, overload

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


def _encode(job: NewJob, key: str | None) -> dict[str, Any]:
    """The job as the replace statement reads it; empty and default fields are left out."""
    row: dict[str, Any] = {
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


Kind = tuple[str, str, int, int, tuple[str, ...]]
_KIND_FIELDS = ("queue", "worker", "max_attempts", "priority", "tags")


def _payload(jobs: Sequence[NewJob], keys: Sequence[str | None]) -> dict[str, Jsonb]:
    """The insert statement's parameters: the batch's distinct kinds of job, and per job
    [kind, args], followed by meta, scheduled_at, scheduled_in and unique_key only when
    one of them is set (see the statement)."""
    kinds: dict[Kind, int] = {}
    rows: list[list[Any]] = []
    for job, key in zip(jobs, keys, strict=True):
        kind = kinds.setdefault((job.queue, job.worker, job.max_attempts, job.priority, job.tags), len(kinds))
        if key is None and not job.meta and job.scheduled_at is None and not job.scheduled_in:
            rows.append([kind, job.args])
        else:
            at = None if job.scheduled_at is None else job.scheduled_at.isoformat()
            rows.append([kind, job.args, _meta(job) or None, at, job.scheduled_in or None, key])
    shapes = [{"kind": n, **dict(zip(_KIND_FIELDS, kind, strict=True))} for kind, n in kinds.items()]
    return {"kinds": Jsonb(shapes), "jobs": Jsonb(rows)}


Returned = tuple[int, str, datetime, datetime, str | None]
"""What the insert statement returned of one job: id, state, inserted_at, scheduled_at and
unique_key; the rest of the job is what was sent."""


def _inserted(job: NewJob, returned: Returned) -> Job:
    id_, state, inserted_at, scheduled_at, unique_key = returned
    return Job(
        id=id_,
        state=STATES[state],
        queue=job.queue,
        worker=job.worker,
        args=job.args,
        meta=_meta(job),
        tags=list(job.tags),
        max_attempts=job.max_attempts,
        priority=job.priority,
        inserted_at=inserted_at,
        scheduled_at=scheduled_at,
        unique_key=unique_key,
    )


class InsertedJobs(Sequence[Job]):
    """The jobs of one insert, in input order, as a read-only list: each `Job` is built on
    first access (and kept) from what was sent and what the statement returned, so a bulk
    insert whose results go unread builds none. `list(jobs)` gives a plain list."""

    __slots__ = ("_items", "_new")

    def __init__(self, new: Sequence[NewJob], items: Sequence[Job | Returned]) -> None:
        self._new = new
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        item = self._items[index]
        if isinstance(item, Job):
            return item
        job = self._items[index] = _inserted(self._new[index], item)
        return job

    def __iter__(self) -> Iterator[Job]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, InsertedJobs | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one

    def __repr__(self) -> str:
        return repr(list(self))


def _expiring_keys(jobs: Sequence[NewJob], keys: Sequence[str | None]) -> list[dict[str, Any]]:
    periods: dict[str, float] = {}
    for job, key in zip(jobs, keys, strict=True):
        if key is not None and job.unique is not None and job.unique.period is not None:
            periods[key] = float(job.unique.period)
    return [{"unique_key": key, "period": period} for key, period in periods.items()]


def insert_plan(queries: JobQueries, jobs: Sequence[NewJob]) -> Plan[InsertedJobs]:
    """Insert `jobs` in one statement and return them in order; conflicts flagged.

    Rows of a multi-row INSERT … SELECT … ORDER BY are inserted in order (their ids grow
    with it), so returned rows are matched to inputs in order: a unique input whose key
    the next returned row does not carry lost to an existing job, which is then looked up.
    """
    results: list[Job | Returned | None] = [None] * len(jobs)
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
        statement = queries.insert_unique if any(batch_keys) else queries.insert
        rows = yield statement, _payload(batch, batch_keys)
        conflicted = _match(pending, keys, _returned(rows[0]), results)
        lost = set(conflicted)
        yield from _release_unheld(queries, jobs, [i for i in pending if i not in lost], results)
        yield from _replace(queries, jobs, keys, conflicted)
        pending = yield from _resolve_conflicts(queries, conflicted, keys, results)
    if pending:
        raise RuntimeError(f"unique insert did not settle after {MAX_UNIQUE_ROUNDS} rounds")
    return InsertedJobs(jobs, [item for item in results if item is not None])


def _returned(row: Row) -> list[Returned]:
    """The insert statement's one row of arrays, as one tuple per inserted job."""
    at = row["inserted_at"]
    columns = row["ids"], row["states"], row["scheduled_at"], row["unique_keys"]
    return [
        (id_, state, at, scheduled or at, key) for id_, state, scheduled, key in zip(*columns, strict=True)
    ]


def _match(
    pending: list[int],
    keys: Sequence[str | None],
    returned: list[Returned],
    results: list[Job | Returned | None],
) -> list[int]:
    """Pair returned jobs with inputs in order; return the indexes that conflicted."""
    conflicted: list[int] = []
    rows = iter(returned)
    row = next(rows, None)
    for index in pending:
        if row is not None and row[4] == keys[index]:
            results[index] = row
            row = next(rows, None)
        elif keys[index] is not None:
            conflicted.append(index)
        else:
            raise RuntimeError("inserted rows came back out of order")
    return conflicted


def _starts_outside(job: NewJob) -> bool:
    """True when the job's first state (available or scheduled) may not hold its key."""
    return job.unique is not None and not {"available", "scheduled"} <= set(job.unique.state_list)


def _release_unheld(
    queries: JobQueries, jobs: Sequence[NewJob], inserted: list[int], results: list[Job | Returned | None]
) -> Plan[None]:
    """Free the keys of new jobs inserted in a state outside their unique states."""
    new = {
        item[0]: (i, item)
        for i in inserted
        if _starts_outside(jobs[i]) and isinstance(item := results[i], tuple)
    }
    if new:
        rows = yield queries.release_unheld_unique, {"ids": list(new)}
        for row in rows:
            index, item = new[row["id"]]
            results[index] = (*item[:4], None)


def _replace(
    queries: JobQueries, jobs: Sequence[NewJob], keys: Sequence[str | None], conflicted: list[int]
) -> Plan[None]:
    """Set the `replace` fields of the jobs the conflicting inputs lost to (those not yet
    started), before they are read; of inputs sharing a key, the last one wins."""
    latest: dict[str, dict[str, Any]] = {}
    for index in conflicted:
        job, key = jobs[index], keys[index]
        if key is not None and job.unique is not None and job.unique.replace:
            row = _encode(job, key)
            row["fields"] = list(job.unique.replace)
            latest[key] = row
    if latest:
        yield queries.replace_unique, {"jobs": Jsonb(list(latest.values()))}


def _resolve_conflicts(
    queries: JobQueries,
    conflicted: list[int],
    keys: Sequence[str | None],
    results: list[Job | Returned | None],
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
