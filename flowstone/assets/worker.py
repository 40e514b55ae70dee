"""`AssetWorker`: materializing one asset partition is one job on the `assets` queue.

The job's life is recorded in `materializations` (one record per job). At most one
materialization of an (asset, partition) runs at a time cluster-wide: the job holds a
session advisory lock on a dedicated connection, which Postgres releases even if the
process dies. When a materialization finishes, the jobs of the same run waiting on it
(snoozed dependents, and duplicates of the same partition) are woken at once.

The bookkeeping runs on the node's event loop, in two round trips per materialization;
only the IO managers and the asset function, which are synchronous, go to a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
import pydantic

from flowstone.assets.definitions import Asset, default_assets
from flowstone.assets.errors import FlowStoneError
from flowstone.assets.materializer import Context, Materializer, Readiness
from flowstone.assets.store import (
    Materialization,
    Status,
    finish_plan,
    last_finished_plan,
    locked_start_plan,
    notify_finished_plan,
    set_pending_plan,
    start_plan,
    unlock_plan,
)
from flowstone.queue.instance import FlowStone, get_default
from flowstone.queue.job import Job
from flowstone.queue.manage import wake_plan
from flowstone.queue.plan import Plan, Row, arun_together
from flowstone.queue.results import Discard, Result, Snooze
from flowstone.queue.worker import Worker

SNOOZE_SECONDS = 30
"""How long a job waits for its dependencies (or a busy partition) before looking again."""


class AssetArgs(pydantic.BaseModel):
    """The args of an asset job: which asset and partition (serialized), in which run."""

    model_config = pydantic.ConfigDict(extra="forbid")

    asset_name: str
    partition: str | None = None
    run_id: str
    force: bool = False


class AssetWorker(Worker):
    """Materializes `args.asset_name` at `args.partition` for run `args.run_id`."""

    name = "flowstone.AssetWorker"
    queue = "assets"
    max_attempts = 3
    priority = 1
    args_model = AssetArgs

    def backoff(self, job: Job) -> float:
        """30, 90, 270 s: 30·3^(attempt-1)."""
        return float(SNOOZE_SECONDS * 3 ** max(0, job.attempt - 1))

    async def perform(self, job: Job) -> Result:
        """Resolve the asset and partition, then materialize under the partition's lock."""
        args = AssetArgs.model_validate(job.args)
        fs = get_default()
        materializer = Materializer(fs)
        try:
            asset = default_assets.require(args.asset_name)
            ctx = materializer.build_context(
                asset,
                args.partition,
                args.run_id,
                attempt=job.attempt,
                job_id=job.id if job.id > 0 else None,
                force=args.force,
            )
        except FlowStoneError as error:
            with anyio.CancelScope(shield=True):
                await _fail_unresolved(fs, materializer, job, args, error)
            return Discard(str(error))
        async with fs.aheld_session() as conn:
            return await _Run(materializer, asset, ctx, job, conn).perform()


async def _fail_unresolved(
    fs: FlowStone, materializer: Materializer, job: Job, args: AssetArgs, error: FlowStoneError
) -> None:
    """Record the failure of a job whose asset or partition cannot be resolved."""
    q = materializer.queries
    plan = start_plan(
        q,
        asset=args.asset_name,
        partition=args.partition,
        run_id=args.run_id,
        job_id=job.id if job.id > 0 else None,
        attempt=job.attempt,
    )
    async with fs.asession() as conn:
        record = await fs.aexecute(plan, conn)
        if record is not None:
            finish = finish_plan(q, record.id, Status.FAILED, error=error)
            await arun_together(conn, [finish], relaxed=[notify_finished_plan(q, record.id)])


@dataclass(frozen=True)
class _Decision:
    """What the synchronous part concluded: skipped, waiting (pending) or stored (success)."""

    status: Status
    readiness: Readiness = field(default_factory=Readiness)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Run:
    """One attempt at materializing, in two round trips: the first takes the partition's
    lock, marks the record running and reads what the decision needs (the last finished
    record, the dependencies' records); the second records the outcome together with the
    wake-up of the jobs waiting on it and the release of the lock.

    Database steps are shielded from cancellation, and the thread running the asset is
    waited for (Python cannot stop a thread): a cancelled or stopped job takes effect once
    the function returns, so its partition stays locked exactly while it runs."""

    def __init__(
        self,
        materializer: Materializer,
        asset: Asset,
        ctx: Context,
        job: Job,
        conn: psycopg.AsyncConnection[Any],
    ) -> None:
        self.m = materializer
        self.asset = asset
        self.ctx = ctx
        self.job = job
        self.conn = conn
        self.locked = False

    async def perform(self) -> Result:
        try:
            with anyio.CancelScope(shield=True):
                (locked, record), last, upstream = await self._begin()
        except BaseException:
            await self._release()  # the lock may have been taken before the failure
            raise
        if not locked:
            return Snooze(SNOOZE_SECONDS)
        self.locked = True
        try:
            if record is None:  # this job already finished its record (e.g. a lost ack)
                return None
            return await self._materialize(record, last, upstream)
        finally:
            if self.locked:
                await self._release()

    async def _begin(self) -> list[Any]:
        q, ctx = self.m.queries, self.ctx
        start = locked_start_plan(
            q,
            asset=self.asset.name,
            partition=ctx.partition_key,
            run_id=ctx.run_id,
            job_id=ctx.job_id,
            attempt=ctx.attempt,
        )
        last = last_finished_plan(q, self.asset.name, ctx.partition_key)
        upstream = self.m.upstream_records_plan(self.asset, ctx)
        return await arun_together(self.conn, [], relaxed=[start, last, upstream])

    async def _materialize(
        self, record: Materialization, last: Materialization | None, upstream: list[Row]
    ) -> Result:
        try:
            decision = await anyio.to_thread.run_sync(self._decide, last, upstream)
        except FlowStoneError as error:
            return await self._failed(record, error)
        if decision.status == Status.PENDING:
            waiting = ", ".join(decision.readiness.waiting)
            reason = FlowStoneError("dependency_not_ready", f"waiting for {waiting}")
            await self._end(relaxed=[set_pending_plan(self.m.queries, record.id, reason)])
            return Snooze(SNOOZE_SECONDS)
        details = {"metadata": decision.metadata, "upstream": decision.readiness.upstream_ids}
        await self._finish(record, decision.status, **details)
        return None

    def _decide(self, last: Materialization | None, upstream: list[Row]) -> _Decision:
        """In a worker thread: skip, wait, or load the dependencies, run and store."""
        if self._already_materialized(last):
            return _Decision(Status.SKIPPED)
        readiness = self.m.readiness(self.asset, self.ctx, upstream)
        if not readiness.ready:
            return _Decision(Status.PENDING, readiness)
        deps = self.m.load_dependencies(self.asset, self.ctx)
        value = self.m.execute(self.asset, self.ctx, deps)
        return _Decision(Status.SUCCESS, readiness, self.m.store_result(self.asset, self.ctx, value))

    def _already_materialized(self, last: Materialization | None) -> bool:
        """Skip unless forced when the last finished record succeeded and the data is there."""
        if self.ctx.force or last is None or last.status != Status.SUCCESS:
            return False
        return self.m.io_manager(self.asset).exists(self.ctx)

    async def _failed(self, record: Materialization, error: FlowStoneError) -> Result:
        """Final failure → record failed and Discard; retryable with attempts left → raise."""
        if error.retryable and self.job.attempt < self.job.max_attempts:
            await self._end(relaxed=[set_pending_plan(self.m.queries, record.id, error)])
            raise error
        await self._finish(record, Status.FAILED, error=error)
        if error.retryable:
            raise error  # out of attempts: the queue discards it, keeping the traceback
        return Discard(str(error))

    async def _finish(self, record: Materialization, status: Status, **details: Any) -> None:
        await self._end(
            [
                finish_plan(self.m.queries, record.id, status, **details),
                wake_plan(self.m.fs.queries, AssetWorker.name, self._waiting_patterns()),
            ],
            relaxed=[notify_finished_plan(self.m.queries, record.id)],
        )

    async def _end(self, plans: Sequence[Plan[Any]] = (), relaxed: Sequence[Plan[Any]] = ()) -> None:
        """Commit the closing statements, then release the lock: one round trip. What the
        job's durable acknowledgement will flush anyway (a pending mark before a snooze or
        a retry) and what may be lost (the notification) do not wait for a flush."""
        with anyio.CancelScope(shield=True):
            await arun_together(self.conn, plans, relaxed=[*relaxed, self._unlock_plan()])
        self.locked = False

    async def _release(self) -> None:
        """Release the lock on its own (a broken connection has already lost it)."""
        with anyio.CancelScope(shield=True):
            if not self.conn.broken:
                await self.m.fs.aexecute(self._unlock_plan(), self.conn)
        self.locked = False

    def _unlock_plan(self) -> Plan[None]:
        return unlock_plan(self.m.queries, self.asset.name, self.ctx.partition_key)

    def _waiting_patterns(self) -> list[dict[str, Any]]:
        """Args of the jobs that may be waiting on this one: dependents in this run (same
        partition when this asset is partitioned) and duplicates of this partition."""
        same_partition = {"partition": self.ctx.partition_key} if self.asset.partitions is not None else {}
        dependents = [
            {"asset_name": name, "run_id": self.ctx.run_id, **same_partition}
            for name in default_assets.dependents(self.asset.name)
        ]
        return [*dependents, {"asset_name": self.asset.name, "partition": self.ctx.partition_key}]
