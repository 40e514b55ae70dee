"""Run one claimed job: resolve its worker, call `perform`, turn what happened into an Outcome.

Shared by the runtime's producers and by `flowstone.testing.drain_queue`, so tests
exercise exactly the code that production runs.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import pydantic

from flowstone.errors import ValidationError, one_line
from flowstone.queue import chaos, telemetry
from flowstone.queue.job import Job, _running
from flowstone.queue.jsonb import UndecodableJSON
from flowstone.queue.outcomes import JobTimeoutError, Outcome, failure, from_result, last_resort, unresolvable
from flowstone.queue.threads import DaemonThreads
from flowstone.queue.validation import MAX_JSON_DEPTH
from flowstone.queue.worker import Worker, WorkerRegistry

if TYPE_CHECKING:
    from flowstone.queue.process_pool import ProcessPool


class UnknownWorkerError(LookupError):
    """The job names a worker this node's registry does not hold."""


class InvalidArgsError(ValueError):
    """The job's args do not match its worker's `args_model`."""


class Executor:
    """Executes jobs of `registry`'s workers; sync `perform` runs in a daemon thread.

    The job runs on the instance that claimed it: `job.fs` is `instance` (the facade users
    hold, given as a value) while `perform` runs, and `running_job()` returns the job in
    that context (a sync job's thread included). A sync job cannot be stopped:
    `in_thread(job_id)` tells whether its thread still runs after its caller stopped
    waiting, and `on_thread_end(job_id)` when it ends. With `processes`, the sync jobs it
    takes run in its child processes instead, which are killed at a timeout or cancel (the
    testing helpers give none: theirs run here). Built inside `with_chaos`, or given a
    node's `chaos`, it fails a share of executions (see `chaos`)."""

    def __init__(
        self,
        registry: WorkerRegistry,
        instance: object,
        on_thread_end: Callable[[int], None] = lambda job_id: None,
        on_progress: Callable[[Job], None] | None = None,
        processes: ProcessPool | None = None,
        node_chaos: chaos.Chaos | None = None,
    ):
        self.registry = registry
        self.instance = instance
        self.threads = DaemonThreads(on_thread_end)
        self.on_progress = on_progress
        self.processes = processes
        injected = node_chaos or chaos.active()
        self._call = self._perform if injected is None else injected.wrap(self._perform)

    def in_thread(self, job_id: int) -> bool:
        """Whether a sync `perform` of this job is still running in its thread."""
        return self.threads.running(job_id)

    async def run_job(self, job: Job) -> Outcome:
        """Run `job` once and return its outcome; never raises but to cancel the caller.

        Whatever perform does (raise anything, return anything, hang in a hostile
        `__str__`), the result is an outcome the ack statement can store."""
        job._fs = self.instance
        job._on_progress = self.on_progress
        token = _running.set(job)
        try:
            return await self._run(job)
        except BaseException as error:  # building the outcome itself failed
            if _being_cancelled(error):
                raise
            return last_resort(job, error)
        finally:
            _running.reset(token)

    async def _run(self, job: Job) -> Outcome:
        start = time.perf_counter()
        worker_cls = self.registry.get(job.worker)
        if worker_cls is None:
            unknown = UnknownWorkerError(f"worker {job.worker!r} is not registered on this node")
            return _unresolved(job, start, unknown)
        undecodable = _undecodable(job)
        if undecodable is not None:
            return _unresolved(job, start, InvalidArgsError(undecodable))
        if worker_cls.args_model is not None:
            try:
                worker_cls.parse_args(job.args)
            except pydantic.ValidationError as error:
                message = f"args do not match {worker_cls.__name__}'s args_model: {one_line(error)}"
                return _unresolved(job, start, InvalidArgsError(message))
        observed = telemetry.observed(JOB_EVENTS)
        if observed:
            telemetry.emit("job.start", {"queue_time": _queue_time(job)}, _job_meta(job))
        worker: Worker | None = None
        try:
            worker = worker_cls()
            record = worker_cls.result_limit if worker_cls.record_result else None
            outcome = from_result(job, await self._call(worker, job), record)
        except BaseException as error:  # a job's failure, whatever it raised, is the job's
            if _being_cancelled(error):
                raise
            outcome = failure(None if worker is None else worker.backoff, job, error)
            if observed:
                _emit_end("job.exception", job, start, outcome, error=outcome.exception or error)
            return outcome
        if observed:
            _emit_end("job.stop", job, start, outcome)
        return outcome

    async def _perform(self, worker: Worker, job: Job) -> object:
        timeout = _checked_timeout(worker.timeout(job))
        if not inspect.iscoroutinefunction(worker.perform):
            if self.processes is not None and self.processes.takes(type(worker)):
                return await self.processes.perform(type(worker), job, timeout)
            return await self._perform_in_thread(worker, job, timeout)
        if timeout is None:
            return await worker.perform(job)
        with anyio.move_on_after(timeout) as scope:
            result = await worker.perform(job)
        if scope.cancelled_caught:
            raise JobTimeoutError(f"perform exceeded its timeout of {timeout} s")
        return result

    async def _perform_in_thread(self, worker: Worker, job: Job, timeout: float | None) -> object:
        """A sync perform, in a daemon thread. Its timeout is recorded when the thread
        returns: the thread cannot be stopped, and the job must not run again meanwhile."""
        began = time.monotonic()
        result = await self.threads.run(job.id, worker.perform, job)
        if inspect.isawaitable(result):
            result = await result
        took = time.monotonic() - began
        if timeout is not None and took > timeout:
            raise JobTimeoutError(
                f"perform exceeded its timeout of {timeout} s (it ran {took:.1f} s; a sync job's thread "
                "cannot be stopped, so the timeout is recorded when it returns)"
            )
        return result


def _checked_timeout(timeout: object) -> float | None:
    """A worker's `timeout(job)`: None or a positive finite number of seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise ValidationError(f"timeout() must return None or a positive number of seconds; got {timeout!r}")
    return float(timeout)


def _unresolved(job: Job, start: float, error: Exception) -> Outcome:
    """A job that cannot run as stored: discarded (kept for inspection), and reported."""
    outcome = unresolvable(job, str(error))
    if telemetry.observed(JOB_EVENTS):
        _emit_end("job.exception", job, start, outcome, error=error)
    return outcome


def _undecodable(job: Job) -> str | None:
    """Why the job's args or meta could not be decoded, if they could not."""
    for field_name, value in (("args", job.args), ("meta", job.meta)):
        if isinstance(value, UndecodableJSON):
            return (
                f"the job's {field_name} cannot be decoded: {value.reason}; a node reads JSON nested at "
                f"most {MAX_JSON_DEPTH} levels deep, as Worker.new writes it"
            )
    return None


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
