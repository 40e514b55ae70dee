"""`AssetWorker`: materializing one asset partition is one job on the `assets` queue.

The job runs on the instance that claimed it (`job.fs`) and resolves its asset in that
instance's graph. Its life is recorded in `materializations` (one record per job). At most one
materialization of an (asset, partition) runs at a time cluster-wide: the job holds a
session advisory lock on its process's bookkeeping connection, which Postgres releases
even if the process dies. When a materialization finishes, the jobs of the same run waiting on it
(snoozed dependents, and duplicates of the same partition) are woken at once.

The bookkeeping runs on the node's event loop, batched with that of the other
materializations running there (see `bookkeeper`); only the IO managers and the asset
function, which are synchronous, go to a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import pydantic

from flowstone.assets.bookkeeper import Begin, Begun, End, bookkeeper
from flowstone.assets.context import Context
from flowstone.assets.definitions import Asset
from flowstone.assets.materializer import Materializer, Readiness
from flowstone.assets.records import (
    Finish,
    Materialization,
    Status,
    finish_plan,
    start_plan,
)
from flowstone.errors import FlowStoneError
from flowstone.queue.instance import FlowStone
from flowstone.queue.job import Job
from flowstone.queue.plan import Row
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
        args = AssetArgs.model_construct(**job.args)  # validated by the executor (args_model)
        fs = job.fs
        materializer = Materializer(fs)
        try:
            asset = materializer.assets.require(args.asset_name)
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
                await anyio.to_thread.run_sync(_fail_unresolved, fs, materializer, job, args, error)
            return Discard(str(error))
        return await _Run(materializer, asset, ctx, job).perform()


def _fail_unresolved(
    fs: FlowStone, materializer: Materializer, job: Job, args: AssetArgs, error: FlowStoneError
) -> None:
    """Record the failure of a job whose asset or partition cannot be resolved (a rare
    path: on the sync pool, which outlives any event loop)."""
    q = materializer.queries
    plan = start_plan(
        q,
        asset=args.asset_name,
        partition=args.partition,
        run_id=args.run_id,
        job_id=job.id if job.id > 0 else None,
        attempt=job.attempt,
    )
    with fs.session() as conn:
        record = fs.execute(plan, conn)
        if record is not None:
            fs.execute(finish_plan(q, [Finish(record.id, Status.FAILED, error=error)]), conn)


@dataclass(frozen=True)
class _Decision:
    """What the synchronous part concluded: skipped, waiting (pending) or stored (success)."""

    status: Status
    readiness: Readiness = field(default_factory=Readiness)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Run:
    """One attempt at materializing: `begin` (lock, running mark, reads), the decision and
    the asset in a thread, then `end` (record, wake-ups, notification, unlock).

    Requests to the bookkeeper are shielded from cancellation, and the thread running the
    asset is waited for (Python cannot stop a thread): a cancelled or stopped job takes
    effect once the function returns, so its partition stays locked exactly while it runs."""

    def __init__(self, materializer: Materializer, asset: Asset, ctx: Context, job: Job) -> None:
        self.m = materializer
        self.asset = asset
        self.ctx = ctx
        self.job = job
        self.book = bookkeeper(materializer.fs, AssetWorker.name)

    async def perform(self) -> Result:
        ctx = self.ctx
        where = self.m.upstream_locations(self.asset, ctx)
        request = Begin(self.asset.name, ctx.partition_key, ctx.run_id, ctx.job_id, ctx.attempt, where)
        begun = await self.book.begin(request)
        if not begun.locked:
            return Snooze(SNOOZE_SECONDS)
        end = End(request.key(self.m.fs.schema))
        try:
            if begun.record is None:  # this job already finished its record (e.g. a lost ack)
                return None
            return await self._materialize(begun.record, begun, end)
        finally:
            await self.book.end(end)

    async def _materialize(self, record: Materialization, begun: Begun, end: End) -> Result:
        try:
            decision = await anyio.to_thread.run_sync(self._decide, begun.last_status, begun.upstream)
        except FlowStoneError as error:
            return self._failed(record, error, end)
        if decision.status == Status.PENDING:
            waiting = ", ".join(decision.readiness.waiting)
            end.pending = (record.id, FlowStoneError("dependency_not_ready", f"waiting for {waiting}"))
            return Snooze(SNOOZE_SECONDS)
        upstream = decision.readiness.upstream_ids
        self._finish(end, Finish(record.id, decision.status, metadata=decision.metadata, upstream=upstream))
        return None

    def _decide(self, last_status: str | None, upstream: list[Row]) -> _Decision:
        """In a worker thread: skip, wait, or load the dependencies, run and store."""
        if self._already_materialized(last_status):
            return _Decision(Status.SKIPPED)
        readiness = self.m.readiness(self.asset, self.ctx, upstream)
        if not readiness.ready:
            return _Decision(Status.PENDING, readiness)
        deps = self.m.load_dependencies(self.asset, self.ctx)
        value = self.m.execute(self.asset, self.ctx, deps)
        return _Decision(Status.SUCCESS, readiness, self.m.store_result(self.asset, self.ctx, value))

    def _already_materialized(self, last_status: str | None) -> bool:
        """Skip unless forced when the last finished record succeeded and the data is there."""
        if self.ctx.force or last_status != Status.SUCCESS:
            return False
        return self.m.io_manager(self.asset).exists(self.ctx)

    def _failed(self, record: Materialization, error: FlowStoneError, end: End) -> Result:
        """Final failure → record failed and Discard; retryable with attempts left → raise."""
        if error.retryable and self.job.attempt < self.job.max_attempts:
            end.pending = (record.id, error)
            raise error
        self._finish(end, Finish(record.id, Status.FAILED, error=error))
        if error.retryable:
            raise error  # out of attempts: the queue discards it, keeping the traceback
        return Discard(str(error))

    def _finish(self, end: End, finish: Finish) -> None:
        end.finish = finish
        end.wake = self._waiting_patterns()

    def _waiting_patterns(self) -> list[dict[str, Any]]:
        """Args of the jobs that may be waiting on this one: dependents in this run (same
        partition when this asset is partitioned) and duplicates of this partition."""
        same_partition = {"partition": self.ctx.partition_key} if self.asset.partitions is not None else {}
        dependents = [
            {"asset_name": name, "run_id": self.ctx.run_id, **same_partition}
            for name in self.m.assets.dependents(self.asset.name)
        ]
        return [*dependents, {"asset_name": self.asset.name, "partition": self.ctx.partition_key}]
