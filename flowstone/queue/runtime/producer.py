"""A queue's producer: one statement per cycle acknowledges what finished and claims up
to `limit - running` jobs, on a dedicated connection.

A slot is reused only in the transaction that writes its job's outcome, so a node that
dies can have lost the outcomes of at most `limit` jobs of the queue. A cycle runs when
a job finishes, when woken (an insert or staging NOTIFY, a control signal) or when the
poll interval passes — polling is only the fallback.

Each job runs in an asyncio task of its own: spawning one costs ~3 µs against ~31 µs
through an anyio task group, a quarter of the worker's CPU per job. The producer keeps
the structure itself: it waits for (or, on shutdown, interrupts) every job it started.

Nothing a job does stops the producer: a statement the database refuses is retried one
outcome at a time and an outcome that still cannot be written is replaced by a plain
failure naming why; a statement that hangs (a frozen connection) is abandoned after
`statement_timeout` and the connection replaced.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import structlog

from flowstone.queue.config import QueueConfig
from flowstone.queue.engine import ack_plans, below_floor_plan, cycle_plans, release_orphans_plan
from flowstone.queue.executor import Executor
from flowstone.queue.floor import BOTTOM, Floor, Key
from flowstone.queue.job import Job, JobState
from flowstone.queue.outcomes import Outcome, describe, error_entry, interrupted
from flowstone.queue.plan import Plan, arun, arun_together
from flowstone.queue.plugins.cursor import Cursor, margin_for
from flowstone.queue.pool import bounded_options, local_timeout, transaction_timeout
from flowstone.queue.process_pool import ProcessPool
from flowstone.queue.runtime.reconnect import TRANSIENT, Backoff
from flowstone.queue.validation import clean_text

if TYPE_CHECKING:
    from flowstone.queue.runtime.node import Node

_log = structlog.get_logger("flowstone.producer")

CANCEL_WAIT = 5.0
"""How long async jobs cancelled at the end of the grace period get to stop; one that has
not stopped by then is left `executing` (the lifeline rescues it once the node is gone)."""

SWEEP_FULL_EVERY = 300.0
"""Seconds between two sweeps for this producer's orphans over all of its claims (see
`Cursor`): under a pinned snapshot the others read only the last minute's entries."""


@dataclass
class Running:
    """A job being executed, and why it was interrupted (if it was)."""

    job: Job
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    interrupted_by: str | None = None


class Producer:
    """Claims and executes the jobs of one queue on one node."""

    def __init__(self, node: Node, queue: str, config: QueueConfig) -> None:
        self.node = node
        self.queue = queue
        self.config = config
        self.limit = config.limit
        self.paused = config.paused
        self.running: dict[int, Running] = {}
        self.lingering: set[int] = set()
        self.finished: list[Outcome] = []
        self.left_behind: list[int] = []
        self.turned_at = time.monotonic()
        self.processes = ProcessPool(node.host.database, queue, config)
        self.executor = Executor(
            node.host.registry, node.host, self._thread_ended, node.progress.note, self.processes, node.chaos
        )
        self._held_back = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lost_connection = False
        self._next_sweep = time.monotonic() + node.settings.node_expiry
        self._sweeps = Cursor(margin_for(node.settings.statement_timeout), SWEEP_FULL_EVERY)
        self.floor = Floor(enabled=node.host.database.sessions)  # no notifications, no floor
        self._auditing = False
        self._wake = anyio.Event()
        self._stopping = False
        self._released = False
        self._drained = anyio.Event()
        self._ended = anyio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Run a cycle as soon as possible."""
        self._wake.set()

    def available(self, key: Key) -> None:
        """A job became available at `key` (notified): claim down to it, soon."""
        self.floor.lower(key)
        self._wake.set()

    def scale(self, limit: int) -> None:
        """Change how many jobs may run at once (a cycle follows a change)."""
        if limit != self.limit:
            self.limit = limit
            self.wake()

    def pause(self, paused: bool) -> None:
        """Stop or resume claiming (a cycle follows a change); running jobs are not affected."""
        if paused != self.paused:
            self.paused = paused
            self.wake()

    def cancel_job(self, job_id: int, reason: str) -> bool:
        """Interrupt a running job (`reason` is "cancel" or "shutdown"). A sync job's thread
        runs on until perform returns, holding its slot (`lingering`) until then."""
        running = self.running.get(job_id)
        if running is None:
            return False
        running.interrupted_by = reason
        running.scope.cancel()
        return True

    def _thread_ended(self, job_id: int) -> None:
        if job_id in self.lingering:
            self.lingering.discard(job_id)
            self.wake()

    @property
    def busy(self) -> int:
        """Slots taken: running jobs and the threads of interrupted sync jobs."""
        return len(self.running) + len(self.lingering)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Cycle until stopped and every outcome is written."""
        backoff = Backoff()
        try:
            while not self._done():
                self._wake = anyio.Event()
                self.turned_at = time.monotonic()
                try:
                    with anyio.fail_after(self._deadline()):
                        await self._turn()
                    backoff.reset()
                except (*TRANSIENT, TimeoutError) as error:
                    _log.warning("ack/claim failed; retrying", queue=self.queue, error=describe(error))
                    await self._lose_connection()
                    await backoff.wait()
                    continue
                if not self.finished:
                    with anyio.move_on_after(self._poll_wait()):
                        await self._wake.wait()
        finally:
            self.left_behind = sorted(self.running)
            for task in self._tasks:  # jobs left behind or torn down with the node; an audit
                task.cancel()
            await self.processes.aclose()
            await self._disconnect()

    async def _turn(self) -> None:
        """One cycle; if the database refuses its statement, the outcomes one by one."""
        try:
            await self._cycle()
        except (*TRANSIENT, anyio.get_cancelled_exc_class()):
            raise
        except Exception as error:  # refused by the database, or not encodable
            _log.error("ack/claim refused; acknowledging one by one", queue=self.queue, error=describe(error))
            self._lost_connection = True  # the claim may have committed before the error
            await self._isolate()

    def _done(self) -> bool:
        """Stopped, every outcome written, and nothing running but what is left behind."""
        if not self._stopping or self.finished:
            return False
        return not self.running or self._released

    def _poll_wait(self) -> float:
        """How long to wait for a wake-up before the next cycle. A rate-limited queue that
        claimed less than it asked for looks again when its window has slid a bucket
        on: nothing announces that room came back."""
        rate = self.config.rate_limit
        if self._held_back and rate is not None:
            return min(self.node.settings.poll_interval, rate.bucket)
        return self.node.settings.poll_interval

    def _deadline(self) -> float:
        """How long one cycle's statements may take before the connection is abandoned."""
        return self.node.settings.statement_timeout + 5.0

    def _demand(self) -> int:
        """How many jobs to claim now: none while paused or stopping."""
        return 0 if self.paused or self._stopping else max(0, self.limit - self.busy)

    async def _cycle(self) -> None:
        outcomes, self.finished = self.finished, []
        sweep = self._lost_connection or time.monotonic() >= self._next_sweep
        if not outcomes and not self._demand() and not sweep:
            return
        try:
            conn = await self._connection()
            if sweep:
                await self._release_orphans(conn, outcomes)
            demand = self._demand()  # a pause may have come while this cycle connected
            floor = self.floor.claiming() if demand else BOTTOM
            plans = cycle_plans(
                self.node.jobs, outcomes, self.queue, demand, self.node.claimer, self.config, floor
            )
            results = await self._together(conn, plans)
        except BaseException:
            self.finished[:0] = outcomes  # written once the database is back
            self.floor.drop()  # a claim that failed may have locked jobs others skipped
            raise
        claimed: list[Job] = results[-1] if demand else []
        if claimed and not self.config.limited:
            last = claimed[-1]
            assert last.scheduled_at is not None  # a claimed row has every column
            self.floor.claimed((last.priority, last.scheduled_at, last.id))
        self._audit_floor()
        self._held_back = len(claimed) < demand
        for job in claimed:
            if self._stopping:  # claimed while the stop began: nobody would stop it later
                self.finished.append(interrupted(job, "shutdown"))
                continue
            self._start(job)

    def _audit_floor(self) -> None:
        """Start the floor's audit when it is due, unless the last one is still running."""
        bounds = self.floor.audit_due()
        if bounds is None or self._auditing:
            return
        self._auditing = True
        audit = asyncio.get_running_loop().create_task(
            self._audit(*bounds), name=f"flowstone audit {self.queue}"
        )
        self._tasks.add(audit)
        audit.add_done_callback(self._task_done)

    async def _audit(self, key: Key, lower: Key) -> None:
        """Look below the floor, down to `lower`, on a pooled connection, off the claim
        path, and lower it to what lies there; if the look fails, drop the floor (the next
        claim starts at the head, which is what the audit spares the claims)."""
        timeout = transaction_timeout(self.node.settings.statement_timeout)
        plan = below_floor_plan(self.node.jobs, self.queue, key, lower)
        try:
            async with self.node.host.database.aconnection() as conn:
                [_, found] = await arun_together(conn, [timeout, plan])
        except Exception as error:
            _log.warning(
                "floor audit failed; claims start at the head", queue=self.queue, error=describe(error)
            )
            self.floor.drop()
        else:
            if found is not None:
                self.available(found)
        finally:
            self._auditing = False

    async def _isolate(self) -> None:
        """Write the pending outcomes one statement each; one the database still refuses is
        replaced by a failure naming why (and, failing that, a bare discard)."""
        outcomes, self.finished = self.finished, []
        written = 0
        try:
            conn = await self._connection()
            for outcome in outcomes:
                await self._ack_alone(conn, outcome)
                written += 1
        except BaseException:
            self.finished[:0] = outcomes[written:]
            raise

    async def _ack_alone(self, conn: psycopg.AsyncConnection[Any], outcome: Outcome) -> None:
        attempt = outcome
        for fallback in (lambda why: _unwritable(outcome, why), lambda why: _bare(outcome), None):
            try:
                await self._together(conn, ack_plans(self.node.jobs, [attempt]))
                return
            except TRANSIENT:
                raise
            except Exception as error:
                _log.error("outcome refused", job_id=outcome.job.id, queue=self.queue, error=describe(error))
                if fallback is None:
                    _log.critical(
                        "no outcome could be recorded; the job stays executing", job_id=outcome.job.id
                    )
                    return
                attempt = fallback(describe(error))

    async def _release_orphans(self, conn: psycopg.AsyncConnection[Any], outcomes: list[Outcome]) -> None:
        """A claim may have committed with its answer lost (or run late on a connection we
        gave up on): hand back the jobs executing under this producer's claimer that it is
        not running. Done after every lost connection and once per node expiry, over the
        claims made since the last sweep less a margin (a claim commits within its
        statement timeout) and over all of them every SWEEP_FULL_EVERY s.

        Kept: running jobs, lingering threads, and every outcome not yet written — those
        of this cycle (`outcomes`) and those of jobs that finished since it took them (in
        `finished`, e.g. while a new connection was made): handing one of those back would
        run a finished job again."""
        unwritten = (outcome.job.id for outcome in (*outcomes, *self.finished))
        keep = [*self.running, *self.lingering, *unwritten]
        after = self._sweeps.after()
        plan = release_orphans_plan(self.node.jobs, self.queue, self.node.claimer, keep, after)
        [(released, mark)] = await self._together(conn, [plan])
        self._sweeps.caught_up(mark)
        self._lost_connection = False
        self._next_sweep = time.monotonic() + self.node.settings.node_expiry
        if released:
            _log.warning("handed back jobs claimed before the connection was lost", count=released)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            settings = self.node.settings
            options = bounded_options(
                settings.statement_timeout,
                pooled=self.node.host.database.pooled,
                generic=True,
                asynchronous=settings.async_commit,
            )
            name = f"flowstone.producer.{self.queue}"[:63]  # visible in pg_stat_activity
            self._conn = await self.node.host.database.aconnect(
                autocommit=True, application_name=name, **options
            )
        return self._conn

    async def _together(self, conn: psycopg.AsyncConnection[Any], plans: list[Plan[Any]]) -> list[Any]:
        """Run one-statement plans in one transaction and round trip (a single one as is),
        behind a transaction pooler after the statement that bounds the transaction."""
        prelude = local_timeout(self.node.settings.statement_timeout, pooled=self.node.host.database.pooled)
        if not prelude and len(plans) == 1:
            return [await arun(conn, plans[0])]
        return (await arun_together(conn, [*prelude, *plans]))[len(prelude) :]

    async def _lose_connection(self) -> None:
        self._lost_connection = True
        await self._disconnect()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await conn.close()

    # -- jobs ---------------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        self.running[job.id] = Running(job)
        task = asyncio.get_running_loop().create_task(self._run_job(job), name=f"flowstone job {job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("job task failed outside its job", queue=self.queue, error=repr(task.exception()))

    async def _run_job(self, job: Job) -> None:
        running = self.running[job.id]
        outcome: Outcome | None = None
        with running.scope:
            outcome = await self.executor.run_job(job)
        del self.running[job.id]
        if outcome is None:  # interrupted before it finished
            outcome = interrupted(job, running.interrupted_by or "shutdown")
            if self.executor.in_thread(job.id):
                self.lingering.add(job.id)
        self.finished.append(outcome)
        self.wake()
        self._ended.set()
        if self._stopping and not self.running:
            self._drained.set()

    # -- stopping -------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop claiming and give running jobs `grace` seconds. Then async jobs are cancelled
        and jobs in child processes killed, and handed back (attempt refunded); sync jobs in
        threads, which cannot be stopped, are left behind `executing` for the lifeline (see
        docs/reliability.md)."""
        self._stopping = True
        self.wake()
        if self.running:
            with anyio.move_on_after(grace):
                await self._drained.wait()
        for job_id in list(self.running):
            if not self.executor.in_thread(job_id):
                self.cancel_job(job_id, "shutdown")
        with anyio.move_on_after(CANCEL_WAIT):
            while any(not self.executor.in_thread(job_id) for job_id in self.running):
                self._ended = anyio.Event()
                await self._ended.wait()
        self._released = True
        self.wake()

    def force(self) -> None:
        """Skip what is left of the grace period (a second SIGTERM/SIGINT)."""
        self._drained.set()


def _unwritable(outcome: Outcome, why: str) -> Outcome:
    """A failure in place of an outcome the database refused."""
    job = outcome.job
    message = clean_text(f"FlowStone could not record this job's outcome ({outcome.kind}): {why}", 2000)
    state = JobState.RETRYABLE if job.attempt < job.max_attempts else JobState.DISCARDED
    delay = 60.0 if state == JobState.RETRYABLE else None
    return Outcome(job, state, delay=delay, error=error_entry(job, message))


def _bare(outcome: Outcome) -> Outcome:
    """The least that can be written: discarded, with a fixed message."""
    job = outcome.job
    return Outcome(job, JobState.DISCARDED, error=error_entry(job, "discarded: no outcome could be recorded"))
