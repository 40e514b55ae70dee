"""A queue's producer: claims up to `limit - in flight` jobs per query and runs them.

A job is in flight from its claim until its outcome is written, so a node that dies
can have run at most `limit` jobs of a queue whose outcomes are lost.

It fetches when woken (an insert NOTIFY, the stager, a finished job while the last
claim came back full) or when the poll interval passes — polling is only the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import structlog
from anyio.abc import TaskGroup

from flowstone.queue.engine import Outcome, claim_plan
from flowstone.queue.executor import Executor, error_entry
from flowstone.queue.job import Job, JobState
from flowstone.queue.runtime.retry import TRANSIENT, Backoff

if TYPE_CHECKING:
    from flowstone.queue.runtime.node import Node

_log = structlog.get_logger("flowstone.producer")


@dataclass
class Running:
    """A job being executed, and why it was interrupted (if it was)."""

    job: Job
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    interrupted_by: str | None = None


class Producer:
    """Claims and executes the jobs of one queue on one node."""

    def __init__(self, node: Node, queue: str, limit: int) -> None:
        self.node = node
        self.queue = queue
        self.limit = limit
        self.paused = False
        self.running: dict[int, Running] = {}
        self.unacked = 0
        self.executor = Executor(node.fs.registry, anyio.CapacityLimiter(limit))
        self._wake = anyio.Event()
        self._stopping = False
        self._full = False
        self._drained = anyio.Event()

    def wake(self) -> None:
        """Fetch as soon as possible."""
        self._wake.set()

    def release(self) -> None:
        """One finished job's outcome was written: its slot is free."""
        self.unacked -= 1
        self.wake()

    def scale(self, limit: int) -> None:
        """Change how many jobs may run at once (sync jobs' thread slots too)."""
        self.limit = limit
        assert self.executor.limiter is not None
        self.executor.limiter.total_tokens = limit
        self.wake()

    def pause(self, paused: bool) -> None:
        """Stop or resume claiming; running jobs are not affected."""
        self.paused = paused
        self.wake()

    def cancel_job(self, job_id: int, reason: str) -> bool:
        """Interrupt a running job (`reason` is "cancel" or "shutdown")."""
        running = self.running.get(job_id)
        if running is None:
            return False
        running.interrupted_by = reason
        running.scope.cancel()
        return True

    async def run(self, jobs: TaskGroup) -> None:
        """Claim and start jobs in `jobs` until `stop` is called."""
        backoff = Backoff()
        while not self._stopping:
            self._wake = anyio.Event()
            try:
                await self._fetch(jobs)
                backoff.reset()
            except TRANSIENT as error:
                _log.warning("claim failed; retrying", queue=self.queue, error=str(error))
                await backoff.wait()
                continue
            with anyio.move_on_after(self.node.fs.settings.poll_interval):
                await self._wake.wait()

    async def _fetch(self, jobs: TaskGroup) -> None:
        demand = self.limit - len(self.running) - self.unacked
        if self.paused or demand <= 0:
            return
        plan = claim_plan(self.node.fs.queries, self.queue, demand, self.node.name)
        claimed = await self.node.fs.aexecute(plan)
        self._full = len(claimed) == demand
        for job in claimed:
            self.running[job.id] = Running(job)
            jobs.start_soon(self._execute, job, name=f"job {job.id}")
        if self._full:
            self._wake.set()

    async def _execute(self, job: Job) -> None:
        running = self.running[job.id]
        outcome: Outcome | None = None
        with running.scope:
            outcome = await self.executor.execute(job)
        if outcome is None or running.interrupted_by is not None:
            outcome = interrupted(job, running.interrupted_by or "shutdown")
        del self.running[job.id]
        self.unacked += 1
        self.node.acker.push(outcome)
        if self._stopping and not self.running:
            self._drained.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming, give running jobs `grace` seconds, then hand the rest back."""
        self._stopping = True
        self.wake()
        if self.running:
            with anyio.move_on_after(grace):
                await self._drained.wait()
        for job_id in list(self.running):
            self.cancel_job(job_id, "shutdown")


def interrupted(job: Job, reason: str) -> Outcome:
    """The outcome of a job the node stopped: cancelled on request, else handed back."""
    if reason == "cancel":
        return Outcome(job, JobState.CANCELLED, error=error_entry(job, "cancelled while executing"))
    return Outcome(job, JobState.AVAILABLE, delay=0.0, refund=True)
