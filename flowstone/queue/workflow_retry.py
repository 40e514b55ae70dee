"""Retrying a workflow: failed jobs run again and the dependents their failure cancelled
are held again until their dependencies finish.

A failed dependency cancels the jobs waiting on it (and deletes their pending
`job_deps` rows), so retrying it alone would leave them cancelled. The graph stays in
each job's meta (`workflow.deps`, names), so under the workflow's lock the jobs are
walked in insertion order (dependencies come first): a job to retry with no pending
dependency is made available now; one with a pending dependency (one retried or held in
this walk, or not finished) is held, its pending dependencies rows written again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from flowstone.queue import manage
from flowstone.queue.engine import lock_plan, workflow_locks
from flowstone.queue.job import FINAL_STATES, Job, JobState
from flowstone.queue.plan import Plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.workflow import DEPENDENCY, HELD_AT, WorkflowJob, workflow_plan

FAILED = (JobState.DISCARDED, JobState.CANCELLED)


@dataclass
class _Walk:
    """The decisions of one retry: jobs to run now, jobs to hold and their pending edges."""

    members: dict[str, WorkflowJob]
    now: list[int]
    held: list[int]
    edges: list[dict[str, int]]

    def deps(self, member: WorkflowJob) -> list[WorkflowJob]:
        """The members `member` depends on (`*`: every other member, a batch's callback)."""
        if member.deps == ["*"]:
            return [m for m in self.members.values() if m.job.id != member.job.id]
        return [self.members[name] for name in member.deps if name in self.members]

    def pending(self, dep: WorkflowJob) -> bool:
        """Whether `dep` is still to finish once this retry commits."""
        return dep.job.id in self.now or dep.job.id in self.held or dep.job.state not in FINAL_STATES

    def blocked(self, member: WorkflowJob, dep: WorkflowJob) -> bool:
        """Whether `dep` failed for good (not retried here) in a way `member` does not ignore."""
        ignored = member.job.meta["workflow"].get("ignore") or []
        return dep.job.state in FAILED and not self.pending(dep) and dep.job.state.value not in ignored


def cancelled_by_dependency(job: Job) -> bool:
    """Whether `job` was cancelled because a dependency failed (not by hand): the `kind`
    its cancellation recorded, whatever its message says."""
    return job.state == JobState.CANCELLED and bool(job.errors) and job.errors[-1].get("kind") == DEPENDENCY


def retry_workflow_plan(
    queries: JobQueries, workflow_id: str, seeds: Iterable[int] | None = None
) -> Plan[list[Job]]:
    """Retry the workflow's jobs `seeds` (None: every discarded and cancelled one) and
    re-arm the dependents their failures cancelled; the jobs changed, by id."""
    yield from lock_plan(queries, workflow_locks(queries.schema, [workflow_id]))
    state = yield from workflow_plan(queries, workflow_id)
    if state is None:
        return []
    chosen = None if seeds is None else set(seeds)
    walk = _Walk({m.name: m for m in state.jobs}, [], [], [])
    for member in state.jobs:
        seed = member.job.state in FAILED and (chosen is None or member.job.id in chosen)
        if seed or cancelled_by_dependency(member.job):
            _decide(walk, member, seed)
    return (yield from _apply(queries, walk))


def _decide(walk: _Walk, member: WorkflowJob, seed: bool) -> None:
    """Run `member` now, hold it on its pending dependencies, or leave it (a cancelled
    dependent whose failed dependency is not retried)."""
    deps = walk.deps(member)
    pending = [dep for dep in deps if walk.pending(dep)]
    if not seed and (not pending or any(walk.blocked(member, dep) for dep in deps)):
        return
    if not pending:
        walk.now.append(member.job.id)
        return
    walk.held.append(member.job.id)
    walk.edges.extend({"dep_id": dep.job.id, "job_id": member.job.id} for dep in pending)


def _apply(queries: JobQueries, walk: _Walk) -> Plan[list[Job]]:
    jobs: list[Job] = []
    if walk.now:
        rows = yield queries.retry, {"ids": walk.now}
        jobs.extend(Job.from_row(row) for row in rows)
    if walk.held:
        yield queries.insert_deps, {"edges": Jsonb(walk.edges)}
        rows = yield queries.rearm, {"ids": walk.held, "held": HELD_AT}
        jobs.extend(Job.from_row(row) for row in rows)
    return sorted(jobs, key=lambda job: job.id)


def retry_job_plan(queries: JobQueries, job_id: int) -> Plan[Job | None]:
    """Retry one job; a failed workflow job re-arms the dependents its failure cancelled."""
    job = yield from manage.get_plan(queries, job_id)
    flow = job.meta.get("workflow") if job is not None else None
    if job is None or job.state not in FAILED or not isinstance(flow, dict) or not flow.get("id"):
        return (yield from manage.retry_plan(queries, job_id))
    changed = yield from retry_workflow_plan(queries, str(flow["id"]), [job_id])
    return next((found for found in changed if found.id == job_id), None)
