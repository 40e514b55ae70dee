"""Waiting for a job to finish: `FlowStone.await_job` / `aawait_job`.

The waiter LISTENs on `<schema>.finished`, then marks the job awaited and reads it in one
statement; a trigger announces the end of an awaited job, so the waiter sleeps until
that notification (or its deadline) and never polls — unless no connection can keep a
LISTEN (behind a transaction pooler without `direct_url`): then it re-reads every `poll`
seconds.
"""

from __future__ import annotations

import time
from typing import Any

from flowstone.errors import AwaitTimeoutError, JobFailedError, ValidationError
from flowstone.queue.job import FINAL_STATES, JobState
from flowstone.queue.plan import Plan, Row, notice_plan, single
from flowstone.queue.queries.jobs import JobQueries

_FINAL = {state.value for state in FINAL_STATES}


def mark_plan(queries: JobQueries, job_id: int) -> Plan[Row | None]:
    """Mark the job awaited and read its state, result and errors (None: no such job)."""
    rows = yield from single(queries.await_job, {"id": job_id})
    return rows[0] if rows else None


def read_plan(queries: JobQueries, job_id: int) -> Plan[Row | None]:
    """Read the awaited job's state, result and errors again."""
    rows = yield from single(queries.ending, {"id": job_id})
    return rows[0] if rows else None


def settled(job_id: int, row: Row | None) -> Any:
    """The recorded result of a completed job; raise for a job that failed or vanished."""
    if row is None:
        raise ValidationError(f"no job with id {job_id} (never inserted, or deleted)")
    if row["state"] == JobState.COMPLETED:
        return row["result"]
    errors = row["errors"] or []
    raise JobFailedError(job_id, row["state"], errors[-1].get("error") if errors else None)


class Deadline:
    """What is left of an optional timeout."""

    def __init__(self, job_id: int, timeout: float | None) -> None:
        if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
            raise ValidationError(f"timeout must be a number of seconds >= 0 or None; got {timeout!r}")
        self.job_id = job_id
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        """Seconds left (None: no deadline); raises once it has passed."""
        if self.at is None or self.timeout is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise AwaitTimeoutError(self.job_id, self.timeout)
        return left

    def next_read(self, poll: float | None) -> float | None:
        """How long to wait for a notification before reading again: what is left, or
        at most `poll` seconds when polling."""
        left = self.left()
        if poll is None:
            return left
        return poll if left is None else min(left, poll)


def await_plan(queries: JobQueries, deadline: Deadline, poll: float | None) -> Plan[Any]:
    """Wait (on an autocommit connection of its own, outside a transaction) for the job to
    finish; see the module."""
    job_id = deadline.job_id
    if poll is None:
        yield queries.listen_finished, {}
    row = yield from mark_plan(queries, job_id)
    while row is not None and row["state"] not in _FINAL:
        yield from notice_plan(str(job_id).__eq__, deadline.next_read(poll))
        row = yield from read_plan(queries, job_id)
    return settled(job_id, row)
