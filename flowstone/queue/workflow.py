"""Workflows and batches: jobs that wait on other jobs, inserted together.

    wf = flowstone.Workflow()
    wf.add("fetch", Fetch.new({"url": url}))
    wf.add("parse", Parse.new({}), deps=["fetch"])
    jobs = fs.insert_workflow(wf)            # {"fetch": Job, "parse": Job}

A job with dependencies waits (`scheduled`, held until HELD_AT, its pending
dependencies in `job_deps`) and becomes available in the statement that completes its
last dependency; a dependency discarded or cancelled cancels the jobs waiting on it,
down the graph, unless they ignore that state. `Workflow(id=...)` appends to a workflow
already inserted (its jobs can be named as dependencies). A `Batch` is a workflow whose
callback job waits on every other job: it runs once they all finished (or all
completed), with their counts per state in `job.meta["batch"]["counts"]`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb

from flowstone.errors import ValidationError, ValidationTypeError
from flowstone.queue.engine import lock_plan, workflow_locks
from flowstone.queue.insert import insert_plan
from flowstone.queue.job import FINAL_STATES, Job, JobState
from flowstone.queue.plan import Plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries
from flowstone.queue.validation import check_name
from flowstone.queue.worker import NewJob

HELD_AT = datetime(9999, 1, 1, tzinfo=UTC)
"""`scheduled_at` of a job waiting on its dependencies: the stager never reaches it."""
DEPENDENCY = "dependency"
"""The `kind` of the error entry of a job cancelled because a dependency of its workflow
failed (at insert here, later by the effects of the dependency's end): a retry re-arms it."""

Ignored = Literal["cancelled", "discarded"]
BatchOn = Literal["finished", "completed"]


@dataclass(frozen=True)
class Step:
    """One job of a workflow: its name, the job, the names it waits on and the states of
    its dependencies that do not cancel it."""

    name: str
    job: NewJob
    deps: tuple[str, ...]
    ignore: tuple[Ignored, ...]
    shown_deps: tuple[str, ...] | None = None  # what meta lists (a batch's callback: "*")


class Workflow:
    """A graph of jobs inserted in one transaction by `FlowStone.insert_workflow`.

    `ignore_cancelled` / `ignore_discarded`: the workflow's default for whether a job
    still runs when a dependency ends cancelled / discarded (each `add` may override).
    `id`: append to the workflow of that id (its jobs may be named as dependencies)."""

    def __init__(
        self, id: str | None = None, *, ignore_cancelled: bool = False, ignore_discarded: bool = False
    ) -> None:
        self.appending = id is not None
        self.id = check_name(id, "workflow id") if id is not None else uuid.uuid4().hex
        self.ignore_cancelled = ignore_cancelled
        self.ignore_discarded = ignore_discarded
        self.steps: dict[str, Step] = {}

    def add(
        self,
        name: str,
        job: NewJob,
        *,
        deps: Sequence[str] = (),
        ignore_cancelled: bool | None = None,
        ignore_discarded: bool | None = None,
    ) -> Workflow:
        """Add `job` under `name`, waiting on the jobs named in `deps` (added before, or
        already in the workflow being appended to). Returns the workflow, for chaining."""
        if isinstance(deps, str) or not all(isinstance(dep, str) for dep in deps):
            raise ValidationError(f"deps must be a list of job names; got {deps!r}")
        _check_job(name, job, deps)
        return self._add(name, job, deps, _ignored(self, ignore_cancelled, ignore_discarded))

    def _add(
        self, name: str, job: NewJob, deps: Sequence[str], ignore: tuple[Ignored, ...], shown: Any = None
    ) -> Workflow:
        check_name(name, "workflow job name")
        if name in self.steps:
            raise ValidationError(f"workflow job name {name!r} is used twice; give each job its own name")
        unknown = [dep for dep in deps if dep not in self.steps]
        if unknown and not self.appending:
            raise ValidationError(
                f"workflow job {name!r} depends on {', '.join(map(repr, unknown))}, not added yet; "
                "add dependencies first"
            )
        self.steps[name] = Step(name, job, tuple(dict.fromkeys(deps)), ignore, shown)
        return self


def _ignored(wf: Workflow, cancelled: bool | None, discarded: bool | None) -> tuple[Ignored, ...]:
    ignored: list[Ignored] = []
    if wf.ignore_cancelled if cancelled is None else cancelled:
        ignored.append("cancelled")
    if wf.ignore_discarded if discarded is None else discarded:
        ignored.append("discarded")
    return tuple(ignored)


def _check_job(name: str, job: object, deps: Sequence[str]) -> None:
    if not isinstance(job, NewJob):
        raise ValidationTypeError(f"expected a job built with Worker.new(...); got {type(job).__name__}")
    if job.unique is not None:
        raise ValidationError(f"workflow job {name!r} is unique; a workflow's jobs cannot be unique jobs")
    if "workflow" in job.meta or "batch" in job.meta:
        raise ValidationError(f"workflow job {name!r}: meta keys 'workflow' and 'batch' are FlowStone's")
    if deps and (job.scheduled_at is not None or job.scheduled_in is not None):
        raise ValidationError(
            f"workflow job {name!r} has dependencies and a schedule; it runs when its dependencies finish"
        )


class Batch:
    """Jobs inserted together (`FlowStone.insert_batch`) whose `callback` job runs once
    when they have all finished (`on="finished"`: completed, discarded or cancelled) or,
    with `on="completed"`, only if they all completed (else it is cancelled). The
    callback finds the counts per state in `job.meta["batch"]["counts"]`."""

    def __init__(
        self, callback: NewJob | None = None, *, id: str | None = None, on: BatchOn = "finished"
    ) -> None:
        if on not in ("finished", "completed"):
            raise ValidationError(f"on must be 'finished' or 'completed'; got {on!r}")
        if callback is not None:
            _check_job("callback", callback, ())
        self.id = check_name(id, "batch id") if id is not None else uuid.uuid4().hex
        self.callback = callback
        self.on = on
        self.jobs: list[NewJob] = []

    def add(self, job: NewJob) -> Batch:
        """Add a job to the batch. Returns the batch, for chaining."""
        _check_job(f"#{len(self.jobs)}", job, ())
        self.jobs.append(job)
        return self

    def workflow(self) -> Workflow:
        """The batch as a workflow: its jobs, then the callback waiting on all of them."""
        wf = Workflow()
        wf.id = self.id
        for index, job in enumerate(self.jobs):
            wf._add(str(index), _with_meta(job, {"batch": {"id": self.id}}), (), ())
        if self.callback is not None:
            ignore: tuple[Ignored, ...] = ("cancelled", "discarded") if self.on == "finished" else ()
            about: dict[str, Any] = {"id": self.id, "callback": True, "on": self.on}
            if not self.jobs:
                about["counts"] = {}  # nothing to wait on: it runs at once
            callback = _with_meta(self.callback, {"batch": about})
            wf._add("callback", callback, [str(i) for i in range(len(self.jobs))], ignore, ("*",))
        return wf


def _with_meta(job: NewJob, extra: dict[str, Any]) -> NewJob:
    return dataclasses.replace(job, meta={**job.meta, **extra})


# -- inserting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A job already in the workflow being appended to: its id and state."""

    id: int
    state: JobState


def insert_workflow_plan(jobs: JobQueries, nodes: NodeQueries, wf: Workflow) -> Plan[dict[str, Job]]:
    """Insert a workflow's jobs, their pending dependencies and cancel the jobs whose
    dependencies already failed, under the workflow's lock; the jobs by name."""
    yield from lock_plan(jobs, workflow_locks(jobs.schema, [wf.id]))
    existing: dict[str, Member] = {}
    if wf.appending:
        rows = yield jobs.workflow_jobs, {"workflow": wf.id}
        existing = {_name(row["meta"], row["id"]): Member(row["id"], JobState(row["state"])) for row in rows}
    fates = plan_fates(wf, existing)
    inserted = yield from insert_plan(
        jobs, [prepared(wf, step, fates[step.name]) for step in wf.steps.values()]
    )
    by_name = dict(zip(wf.steps, inserted, strict=True))
    ids = {**{name: member.id for name, member in existing.items()}, **{n: j.id for n, j in by_name.items()}}
    edges = [
        {"dep_id": ids[dep], "job_id": by_name[step.name].id}
        for step in wf.steps.values()
        if fates[step.name] == "held"
        for dep in step.deps
        if _pending(dep, existing, fates)
    ]
    if edges:
        yield jobs.insert_deps, {"edges": Jsonb(edges)}
    doomed = [by_name[name].id for name, fate in fates.items() if fate == "doomed"]
    if doomed:
        reason = "a dependency had already been discarded or cancelled"
        params = {"ids": doomed, "reason": reason, "kind": DEPENDENCY, "channel": nodes.control_channel}
        rows = yield jobs.cancel, params
        cancelled = {row["id"]: row for row in rows}
        for job in by_name.values():
            if job.id in cancelled:
                job.state, job.errors = JobState.CANCELLED, cancelled[job.id]["errors"]
    return by_name


Fate = Literal["ready", "held", "doomed"]


def plan_fates(wf: Workflow, existing: dict[str, Member]) -> dict[str, Fate]:
    """What becomes of each new job at insert: ready (its dependencies all completed,
    or none), held (some still to finish) or doomed (one failed and is not ignored)."""
    clash = sorted(set(wf.steps) & set(existing))
    if clash:
        raise ValidationError(f"workflow {wf.id} already has jobs named {', '.join(map(repr, clash))}")
    fates: dict[str, Fate] = {}
    for step in wf.steps.values():
        unknown = [dep for dep in step.deps if dep not in fates and dep not in existing]
        if unknown:
            raise ValidationError(
                f"workflow job {step.name!r} depends on unknown job(s) {', '.join(map(repr, unknown))}"
            )
        ended = [_ended_as(dep, existing, fates) for dep in step.deps]
        if any(state is not None and state != "completed" and state not in step.ignore for state in ended):
            fates[step.name] = "doomed"
        elif any(state is None for state in ended):
            fates[step.name] = "held"
        else:
            fates[step.name] = "ready"
    return fates


def _ended_as(dep: str, existing: dict[str, Member], fates: dict[str, Fate]) -> str | None:
    """How a dependency ended (None: not yet): a doomed new job ends cancelled."""
    if dep in fates:
        return "cancelled" if fates[dep] == "doomed" else None
    state = existing[dep].state
    return state.value if state in FINAL_STATES else None


def _pending(dep: str, existing: dict[str, Member], fates: dict[str, Fate]) -> bool:
    return _ended_as(dep, existing, fates) is None


def prepared(wf: Workflow, step: Step, fate: Fate) -> NewJob:
    """The job as inserted: its workflow in meta; held until its dependencies finish."""
    flow: dict[str, Any] = {"id": wf.id, "name": step.name, "deps": list(step.shown_deps or step.deps)}
    if step.ignore:
        flow["ignore"] = list(step.ignore)
    job = _with_meta(step.job, {"workflow": flow})
    if fate == "ready":
        return job
    return dataclasses.replace(job, scheduled_at=HELD_AT, scheduled_in=None)


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowJob:
    """A job of a workflow: its name, the names it depends on, how many of them it still
    waits on, and the job itself."""

    name: str
    deps: list[str]
    waiting_on: int
    job: Job


@dataclass(frozen=True)
class BatchState:
    """A batch: its jobs' counts per state, and its callback job (if it has one)."""

    id: str
    total: int
    counts: dict[str, int]
    callback: Job | None

    @property
    def finished(self) -> bool:
        """Whether every job of the batch (not counting the callback) has finished."""
        return sum(self.counts.get(state.value, 0) for state in FINAL_STATES) == self.total


@dataclass(frozen=True)
class WorkflowState:
    """A workflow's jobs (in insertion order) and their counts per state; `done` once
    every job has finished; `batch` when the workflow is a batch."""

    id: str
    jobs: list[WorkflowJob]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether every job of the workflow has finished (completed, discarded, cancelled)."""
        return all(member.job.state in FINAL_STATES for member in self.jobs)

    def __getitem__(self, name: str) -> Job:
        for member in self.jobs:
            if member.name == name:
                return member.job
        raise KeyError(name)

    @property
    def batch(self) -> BatchState | None:
        """The batch view of a workflow inserted by `insert_batch`."""
        members = [m.job for m in self.jobs if "batch" in m.job.meta]
        if not members:
            return None
        callback = next((job for job in members if job.meta["batch"].get("callback")), None)
        states = Counter(job.state.value for job in members if job is not callback)
        return BatchState(self.id, len(members) - (callback is not None), dict(states), callback)


def workflow_plan(queries: JobQueries, workflow_id: str) -> Plan[WorkflowState | None]:
    """A workflow's state, or None when it has no jobs."""
    rows = yield queries.workflow_jobs, {"workflow": workflow_id}
    if not rows:
        return None
    members = [_member(row) for row in rows]
    return WorkflowState(workflow_id, members, dict(Counter(m.job.state.value for m in members)))


def _member(row: dict[str, Any]) -> WorkflowJob:
    values = {key: value for key, value in row.items() if key != "waiting_on"}
    job = Job.from_row(values)
    deps = job.meta["workflow"].get("deps")
    names = [str(dep) for dep in deps] if isinstance(deps, list) else []
    return WorkflowJob(_name(job.meta, job.id), names, int(row["waiting_on"]), job)


def _name(meta: dict[str, Any], job_id: int) -> str:
    """A workflow job's name (a row written by hand may lack one: then `#id`)."""
    return str(meta["workflow"].get("name") or f"#{job_id}")
