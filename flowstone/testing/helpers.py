"""Oban's test helpers: run one job in-process, assert on enqueued jobs, drain a queue."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from psycopg.types.json import Jsonb

from flowstone.errors import ValidationError
from flowstone.queue.chaos import chaos
from flowstone.queue.config import TestingMode
from flowstone.queue.engine import MAX_ID, ack_plans, claim_plan, stage_plan
from flowstone.queue.executor import Executor
from flowstone.queue.instance import FlowStone, configured_default, get_default
from flowstone.queue.job import Job, JobState, _running
from flowstone.queue.outcomes import Outcome
from flowstone.queue.plan import Plan, arun, arun_together, single
from flowstone.queue.worker import Worker
from flowstone.queue.workflow import HELD_AT

DRAIN_NODE = "flowstone.testing.drain"
DRAIN_BATCH = 100
MAX_DRAIN_ROUNDS = 10_000

with_chaos = chaos  # `with with_chaos(failure_rate, seed):` fails that share of the jobs run inside


def _job_for(
    worker: type[Worker], args: Mapping[str, Any] | None, fs: FlowStone | None, options: dict[str, Any]
) -> Job:
    """An in-memory executing job; `Worker.new` checks the args as an insert would and
    gives them back in their JSON form, as production hands them to `perform`. It runs on
    `fs` (default: the default instance, if one is configured) as a claimed job would."""
    attempt = options.pop("attempt", 1)
    new = worker.new(args or {}, **options)
    worker.parse_args(new.args)
    return Job(
        id=0,
        state=JobState.EXECUTING,
        queue=new.queue,
        worker=new.worker,
        args=new.args,
        meta=new.meta,
        tags=list(new.tags),
        attempt=attempt,
        max_attempts=new.max_attempts,
        priority=new.priority,
        _fs=fs if fs is not None else configured_default(),
    )


@contextmanager
def _running_as(job: Job) -> Iterator[None]:
    token = _running.set(job)
    try:
        yield
    finally:
        _running.reset(token)


def perform_job(
    worker: type[Worker],
    args: Mapping[str, Any] | None = None,
    *,
    fs: FlowStone | None = None,
    **options: Any,
) -> Any:
    """Run `worker.perform` on a job built from `args`; return what it returned, raise what
    it raised. Options are those of `Worker.new` plus `attempt`; `fs` is the instance the
    job runs on (`job.fs`; default: the default instance)."""
    job = _job_for(worker, args, fs, options)
    with _running_as(job):
        result = worker().perform(job)
        if not inspect.isawaitable(result):
            return result
        awaitable = result

        async def wait() -> Any:
            return await awaitable

        return anyio.run(wait)


async def aperform_job(
    worker: type[Worker],
    args: Mapping[str, Any] | None = None,
    *,
    fs: FlowStone | None = None,
    **options: Any,
) -> Any:
    """Async twin of `perform_job`, for tests already running an event loop."""
    job = _job_for(worker, args, fs, options)
    with _running_as(job):
        result = worker().perform(job)
        return await result if inspect.isawaitable(result) else result


def _enqueued_plan(
    fs: FlowStone,
    worker: type[Worker] | str | None,
    queue: str | None,
    args: Mapping[str, Any] | None,
    meta: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
    priority: int | None,
) -> Plan[list[Job]]:
    rows = yield from single(
        fs.database.statements.jobs.enqueued,
        {
            "worker": worker if worker is None or isinstance(worker, str) else worker.name,
            "queue": queue,
            "priority": priority,
            "args": Jsonb(dict(args or {})),
            "meta": Jsonb(dict(meta or {})),
            "tags": list(tags or ()),
        },
    )
    return [Job.from_row(row) for row in rows]


def all_enqueued(
    *,
    worker: type[Worker] | str | None = None,
    queue: str | None = None,
    args: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    priority: int | None = None,
    fs: FlowStone | None = None,
) -> list[Job]:
    """Available or scheduled jobs matching the filters (args and meta match partially)."""
    instance = fs or get_default()
    return instance.database.execute(_enqueued_plan(instance, worker, queue, args, meta, tags, priority))


def assert_enqueued(**filters: Any) -> Job:
    """Fail unless a job matching the filters of `all_enqueued` is enqueued; return the
    first match."""
    found = all_enqueued(**filters)
    if not found:
        raise AssertionError(f"expected a job matching {_describe(filters)} to be enqueued; found none")
    return found[0]


def refute_enqueued(**filters: Any) -> None:
    """Fail if a job matching the filters of `all_enqueued` is enqueued."""
    found = all_enqueued(**filters)
    if found:
        raise AssertionError(
            f"expected no job matching {_describe(filters)}; found {[job.id for job in found]}"
        )


def _describe(filters: Mapping[str, Any]) -> str:
    shown = {k: _worker_name(v) for k, v in filters.items() if k != "fs"}
    return ", ".join(f"{key}={value!r}" for key, value in shown.items()) or "anything"


def _worker_name(value: Any) -> Any:
    return value.name if isinstance(value, type) and issubclass(value, Worker) else value


@dataclass
class DrainResult:
    """Counts per outcome of a drain; `result["completed"]` works as well as attributes."""

    completed: int = 0
    retryable: int = 0
    discarded: int = 0
    cancelled: int = 0
    snoozed: int = 0

    def __getitem__(self, key: str) -> int:
        return int(getattr(self, key))

    def add(self, outcomes: Sequence[Outcome]) -> None:
        """Count a round's outcomes."""
        for outcome in outcomes:
            setattr(self, outcome.kind, self[outcome.kind] + 1)

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return asdict(self)


async def adrain_queue(
    queue: str,
    *,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_scheduled: bool | datetime = False,
    fs: FlowStone | None = None,
) -> DrainResult:
    """Run the queue's jobs in this process until none is left to run.

    `with_scheduled` also runs scheduled and retryable jobs now (True) or those due by a
    datetime; `with_recursion` also runs jobs inserted while draining; `with_safety=False`
    re-raises the first exception a job raised (after recording its outcome).
    """
    instance = fs or get_default()
    executor = Executor(instance.registry, instance)
    until = _LATEST if with_scheduled is True else (with_scheduled or None)
    result = DrainResult()
    conn = await instance.aconnect(autocommit=True)
    try:
        max_id = MAX_ID
        if not with_recursion:
            rows = await arun(conn, single(instance.database.statements.jobs.max_id, {}))
            max_id = rows[0]["max_id"]
        for _ in range(MAX_DRAIN_ROUNDS):
            stage = stage_plan(instance.database.statements.jobs, until=_until_text(until), queue=queue)
            await arun(conn, stage)
            jobs = await arun(
                conn, claim_plan(instance.database.statements.jobs, queue, DRAIN_BATCH, DRAIN_NODE, max_id)
            )
            if not jobs:
                return result
            outcomes = [await executor.run_job(job) for job in jobs]
            await arun_together(conn, ack_plans(instance.database.statements.jobs, outcomes))
            result.add(outcomes)
            raised = next((o.exception for o in outcomes if o.exception is not None), None)
            if raised is not None and not with_safety:
                raise raised
        raise RuntimeError(
            f"drain_queue({queue!r}) did not finish in {MAX_DRAIN_ROUNDS} rounds; does a job snooze forever?"
        )
    finally:
        await conn.close()


_LATEST = (HELD_AT - timedelta(days=1)).isoformat()
"""How far `with_scheduled=True` stages: every scheduled job, but not the workflow jobs
held until their dependencies finish."""


def _until_text(until: str | datetime | None) -> str | None:
    return until.isoformat() if isinstance(until, datetime) else until


def drain_queue(
    queue: str,
    *,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_scheduled: bool | datetime = False,
    fs: FlowStone | None = None,
) -> DrainResult:
    """Sync twin of `adrain_queue` (runs its own event loop)."""

    async def drain() -> DrainResult:
        return await adrain_queue(
            queue,
            with_recursion=with_recursion,
            with_safety=with_safety,
            with_scheduled=with_scheduled,
            fs=fs,
        )

    return anyio.run(drain)


@contextmanager
def with_testing_mode(mode: TestingMode, fs: FlowStone | None = None) -> Iterator[FlowStone]:
    """Within the block, `fs` (default: the default instance) runs in testing `mode`:
    `inline` (jobs run in the caller when inserted, no database), `manual` (inserted
    only; nodes run no queues: drain them) or `disabled` (production behaviour)."""
    if mode not in ("disabled", "inline", "manual"):
        raise ValidationError(f"testing mode must be 'disabled', 'inline' or 'manual'; got {mode!r}")
    instance = fs or get_default()
    before = instance.settings.testing
    instance._use_testing_mode(mode)
    try:
        yield instance
    finally:
        instance._use_testing_mode(before)
