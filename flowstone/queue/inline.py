"""The `inline` testing mode (Oban.Testing's): a job runs in the caller when it is
inserted, once, through the executor production uses, and nothing touches the database.

The inserted job comes back in the state its one execution left it in (`completed`,
`retryable`, `discarded`, `cancelled`, `scheduled` after a snooze) with its errors and
recorded result; a job it inserts runs inline too. Workflows run in the order their
jobs were added, a job whose dependency failed being cancelled as in production; a
batch's callback runs last with its counts. Retries and snoozes are not waited for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio

from flowstone.errors import JobFailedError
from flowstone.queue.awaiting import settled
from flowstone.queue.executor import Executor
from flowstone.queue.job import FINAL_STATES, Job, JobState
from flowstone.queue.outcomes import Outcome
from flowstone.queue.worker import NewJob, WorkerRegistry
from flowstone.queue.workflow import DEPENDENCY, Member, Workflow, plan_fates, prepared

T = TypeVar("T")


def call(run: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function to its end from sync code (on a thread of its own when
    this thread already runs an event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(run)
    with ThreadPoolExecutor(1, thread_name_prefix="flowstone-inline") as pool:
        return pool.submit(anyio.run, run).result()


class InlineEngine:
    """Runs an instance's jobs at insert (on `registry`'s workers, `instance` being their
    `job.fs`); keeps them (by id, and workflows by name) so `await_job` and appended
    workflows find them. Nodes run no queues and no plugins."""

    runs_queues = False

    def __init__(self, registry: WorkerRegistry, instance: object) -> None:
        self.registry = registry
        self.instance = instance
        self.jobs: dict[int, Job] = {}
        self.workflows: dict[str, dict[str, Job]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def insert_all(self, jobs: Sequence[NewJob], conn: Any) -> Sequence[Job]:
        """Run each job once, in order (`conn` is not used); the jobs as their executions left them."""
        return call(lambda: self.ainsert_all(jobs, conn))

    async def ainsert_all(self, jobs: Sequence[NewJob], conn: Any) -> Sequence[Job]:
        """Async twin of `insert_all`."""
        return [await self._run(job) for job in jobs]

    def insert_workflow(self, workflow: Workflow, conn: Any) -> dict[str, Job]:
        """Run a workflow's jobs in order (see `ainsert_workflow`)."""
        return call(lambda: self.ainsert_workflow(workflow, conn))

    async def ainsert_workflow(self, workflow: Workflow, conn: Any) -> dict[str, Job]:
        """Run a workflow's jobs in order: a job whose dependency failed (and does not
        ignore it) is cancelled; one whose dependency did not finish stays waiting."""
        known = self.workflows.setdefault(workflow.id, {})
        plan_fates(workflow, {name: Member(job.id, job.state) for name, job in known.items()})  # checks names
        ran: dict[str, Job] = {}
        for step in workflow.steps.values():
            job = prepared(workflow, step, "ready")
            states = [{**known, **ran}[dep].state for dep in step.deps]
            if any(s in _FAILED and s.value not in step.ignore for s in states):
                ran[step.name] = self._end(self._new(job), JobState.CANCELLED, "a dependency failed")
            elif any(s not in FINAL_STATES for s in states):
                ran[step.name] = self._end(self._new(job), JobState.SCHEDULED)
            else:
                if job.meta.get("batch", {}).get("callback"):
                    job = _with_counts(job, [j for j in ran.values() if "batch" in j.meta])
                ran[step.name] = await self._run(job)
        known.update(ran)
        return ran

    def await_job(self, job_id: int, timeout: float | None) -> Any:
        """An inline job's recorded result, or the error it failed with (it ran already)."""
        job = self.jobs.get(job_id)
        row = None if job is None else {"state": job.state.value, "result": job.result, "errors": job.errors}
        if row is not None and row["state"] not in _ENDED:
            raise JobFailedError(job_id, row["state"], "it did not finish when it ran inline")
        return settled(job_id, row)

    async def aawait_job(self, job_id: int, timeout: float | None) -> Any:
        """Async twin of `await_job`."""
        return self.await_job(job_id, timeout)

    def _new(self, new: NewJob) -> Job:
        now = datetime.now(UTC)
        with self._lock:
            job_id = next(self._ids)
        return Job(
            id=job_id,
            state=JobState.EXECUTING,
            queue=new.queue,
            worker=new.worker,
            args=new.args,
            meta=dict(new.meta),
            tags=list(new.tags),
            attempt=1,
            max_attempts=new.max_attempts,
            priority=new.priority,
            inserted_at=now,
            scheduled_at=now,
            attempted_at=now,
            attempted_by=["inline"],
        )

    async def _run(self, new: NewJob) -> Job:
        job = self._new(new)
        outcome = await Executor(self.registry, self.instance).run_job(job)
        return self._apply(job, outcome)

    def _apply(self, job: Job, outcome: Outcome) -> Job:
        now = datetime.now(UTC)
        job.state = outcome.state
        if outcome.refund:
            job.attempt -= 1
        if outcome.error is not None:
            job.errors.append({**outcome.error, "at": now.isoformat()})
        if outcome.recorded:
            job.result = outcome.result
        setattr(job, _STAMPS.get(job.state, "scheduled_at"), now)
        job._fs = None
        self.jobs[job.id] = job
        return job

    def _end(self, job: Job, state: JobState, why: str | None = None) -> Job:
        """A job that does not run: cancelled because a dependency failed (why) or left waiting."""
        job.attempt = 0
        error = None
        if why is not None:
            error = {"attempt": 0, "error": f"cancelled: {why}", "kind": DEPENDENCY, "traceback": None}
        return self._apply(job, Outcome(job, state, error=error))


_FAILED = (JobState.DISCARDED, JobState.CANCELLED)
_ENDED = {state.value for state in FINAL_STATES}
_STAMPS = {
    JobState.COMPLETED: "completed_at",
    JobState.DISCARDED: "discarded_at",
    JobState.CANCELLED: "cancelled_at",
}


def _with_counts(job: NewJob, members: list[Job]) -> NewJob:
    counts = Counter(member.state.value for member in members)
    return dataclasses.replace(job, meta={**job.meta, "batch": {**job.meta["batch"], "counts": dict(counts)}})
