"""Run one claimed job: resolve its worker, call `perform`, turn what happened into an Outcome.

Shared by the runtime's producers and by `flowstone.testing.drain_queue`, so tests
exercise exactly the code that production runs.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import pydantic

from flowstone.errors import ValidationError, one_line
from flowstone.queue import telemetry
from flowstone.queue.engine import Outcome
from flowstone.queue.job import Job, JobState, _running
from flowstone.queue.results import Cancel, Discard, Snooze
from flowstone.queue.worker import Worker

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone


class ChaosError(Exception):
    """A failure injected by `flowstone.testing.with_chaos`."""


class JobTimeoutError(TimeoutError):
    """`perform` ran longer than the worker's `timeout(job)`."""


class UnknownWorkerError(LookupError):
    """The job names a worker this node's registry does not hold."""


class InvalidArgsError(ValueError):
    """The job's args do not match its worker's `args_model`."""


@dataclass
class Chaos:
    """Fail a share of executions, reproducibly from `seed`."""

    failure_rate: float
    seed: int | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValidationError(f"failure_rate must be between 0 and 1; got {self.failure_rate!r}")
        self.rng = random.Random(self.seed)  # test chaos, not crypto

    def strike(self) -> bool:
        """True when this execution should fail."""
        return self.rng.random() < self.failure_rate


_chaos: ContextVar[Chaos | None] = ContextVar("flowstone_chaos", default=None)


@contextmanager
def chaos(failure_rate: float, seed: int | None = None) -> Iterator[Chaos]:
    """Within the block, each execution fails with probability `failure_rate`."""
    token = _chaos.set(Chaos(failure_rate, seed))
    try:
        yield _chaos.get()  # type: ignore[misc]
    finally:
        _chaos.reset(token)


def error_entry(job: Job, message: str, trace: str | None = None) -> dict[str, Any]:
    """One element of the job's `errors` list (the database stamps `at`)."""
    return {"attempt": job.attempt, "error": message, "traceback": trace}


def failure(worker: Worker | None, job: Job, error: BaseException) -> Outcome:
    """A raised error: retryable with backoff while attempts remain, else discarded."""
    message = f"{type(error).__name__}: {error}"
    trace = "".join(traceback.format_exception(error))
    entry = error_entry(job, message, trace)
    if job.attempt < job.max_attempts:
        delay = worker.backoff(job) if worker is not None else 0.0
        return Outcome(job, JobState.RETRYABLE, delay=max(0.0, float(delay)), error=entry, exception=error)
    return Outcome(job, JobState.DISCARDED, error=entry, exception=error)


def from_result(job: Job, result: object) -> Outcome:
    """What `perform` returned, as an outcome."""
    if isinstance(result, Snooze):
        return Outcome(job, JobState.SCHEDULED, delay=float(result.seconds), snoozed=True, refund=True)
    if isinstance(result, Discard):
        return Outcome(job, JobState.DISCARDED, error=error_entry(job, f"discarded: {result.reason}"))
    if isinstance(result, Cancel):
        return Outcome(job, JobState.CANCELLED, error=error_entry(job, f"cancelled: {result.reason}"))
    return Outcome(job, JobState.COMPLETED)


def unresolvable(job: Job, message: str) -> Outcome:
    """A job that can never run as stored: discarded, kept for inspection."""
    return Outcome(job, JobState.DISCARDED, error=error_entry(job, message))


class Executor:
    """Executes jobs of `fs`'s registered workers; sync `perform` runs in a worker thread.

    The job runs on the instance that claimed it: `job.fs` is `fs` while `perform` runs,
    and `running_job()` returns the job in that context (a sync job's thread included)."""

    def __init__(self, fs: FlowStone, limiter: anyio.CapacityLimiter | None = None):
        self.fs = fs
        self.registry = fs.registry
        self.limiter = limiter

    async def execute(self, job: Job) -> Outcome:
        """Run `job` once and return its outcome; never raises for a job's own failure."""
        job._fs = self.fs
        token = _running.set(job)
        try:
            return await self._execute(job)
        finally:
            _running.reset(token)

    async def _execute(self, job: Job) -> Outcome:
        start = time.perf_counter()
        worker_cls = self.registry.get(job.worker)
        if worker_cls is None:
            return _unresolved(
                job, start, UnknownWorkerError(f"worker {job.worker!r} is not registered on this node")
            )
        if worker_cls.args_model is not None:
            try:
                worker_cls.parse_args(job.args)
            except pydantic.ValidationError as error:
                message = f"args do not match {worker_cls.__name__}'s args_model: {one_line(error)}"
                return _unresolved(job, start, InvalidArgsError(message))
        worker = worker_cls()
        observed = telemetry.observed(JOB_EVENTS)
        if observed:
            telemetry.emit("job.start", {"queue_time": _queue_time(job)}, _job_meta(job))
        try:
            outcome = from_result(job, await self._perform(worker, job))
        except BaseException as error:  # a job's failure, whatever it raised, is the job's
            if _being_cancelled(error):
                raise
            outcome = failure(worker, job, error)
            if observed:
                _emit_end("job.exception", job, start, outcome, error=error)
            return outcome
        if observed:
            _emit_end("job.stop", job, start, outcome)
        return outcome

    async def _perform(self, worker: Worker, job: Job) -> object:
        active = _chaos.get()
        if active is not None and active.strike():
            raise ChaosError(f"injected failure (rate {active.failure_rate})")
        timeout = worker.timeout(job)
        if timeout is None:
            return await self._call(worker, job)
        with anyio.move_on_after(timeout) as scope:
            result = await self._call(worker, job)
        if scope.cancelled_caught:
            raise JobTimeoutError(f"perform exceeded its timeout of {timeout} s")
        return result

    async def _call(self, worker: Worker, job: Job) -> object:
        if inspect.iscoroutinefunction(worker.perform):
            return await worker.perform(job)
        result = await anyio.to_thread.run_sync(
            worker.perform, job, limiter=self.limiter, abandon_on_cancel=True
        )
        if inspect.isawaitable(result):
            return await result
        return result


def _unresolved(job: Job, start: float, error: Exception) -> Outcome:
    """A job that cannot run as stored: discarded (kept for inspection), and reported."""
    outcome = unresolvable(job, str(error))
    if telemetry.observed(JOB_EVENTS):
        _emit_end("job.exception", job, start, outcome, error=error)
    return outcome


def _being_cancelled(error: BaseException) -> bool:
    """Whether `error` cancels the running task, rather than being a CancelledError the job
    raised itself (only asyncio can tell; elsewhere every cancellation counts as real)."""
    if not isinstance(error, anyio.get_cancelled_exc_class()):
        return False
    if not isinstance(error, asyncio.CancelledError):
        return True
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


JOB_EVENTS = ("job.start", "job.stop", "job.exception")


def _job_meta(job: Job) -> dict[str, Any]:
    return {"job": job, "queue": job.queue, "worker": job.worker}


def _emit_end(event: str, job: Job, start: float, outcome: Outcome, **extra: Any) -> None:
    measurements = {"duration": time.perf_counter() - start, "queue_time": _queue_time(job)}
    recorded = None if outcome.error is None else outcome.error["error"]
    telemetry.emit(
        event, measurements, {**_job_meta(job), "state": outcome.kind, "reason": recorded, **extra}
    )


def _queue_time(job: Job) -> float:
    if job.attempted_at is None or job.scheduled_at is None:
        return 0.0
    return max(0.0, (job.attempted_at - job.scheduled_at).total_seconds())
