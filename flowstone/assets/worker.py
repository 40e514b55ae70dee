"""`AssetWorker`: materializing one asset partition is one job on the `assets` queue.

The job's life is recorded in `materializations` (one record per job). At most one
materialization of an (asset, partition) runs at a time cluster-wide: the job holds a
session advisory lock on a dedicated connection, which Postgres releases even if the
process dies. When a materialization finishes, the jobs of the same run waiting on it
(snoozed dependents, and duplicates of the same partition) are woken at once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pydantic
from psycopg_pool import ConnectionPool

from flowstone.assets.definitions import Asset, default_assets
from flowstone.assets.errors import FlowStoneError
from flowstone.assets.materializer import Context, Materializer
from flowstone.assets.store import (
    Materialization,
    Status,
    finish_plan,
    last_finished_plan,
    set_pending_plan,
    start_plan,
)
from flowstone.queue.instance import FlowStone, get_default
from flowstone.queue.job import Job
from flowstone.queue.manage import wake_plan
from flowstone.queue.pool import mark_used, sync_pool
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

    def perform(self, job: Job) -> Result:
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
            _fail_unresolved(fs, materializer, job, args, error)
            return Discard(str(error))
        with _partition_lock(fs, materializer, ctx) as conn:
            if conn is None:
                return Snooze(SNOOZE_SECONDS)
            return _Run(materializer, asset, ctx, job, conn).perform()


def _fail_unresolved(
    fs: FlowStone, materializer: Materializer, job: Job, args: AssetArgs, error: FlowStoneError
) -> None:
    """Record the failure of a job whose asset or partition cannot be resolved."""
    plan = start_plan(
        materializer.queries,
        asset=args.asset_name,
        partition=args.partition,
        run_id=args.run_id,
        job_id=job.id if job.id > 0 else None,
        attempt=job.attempt,
    )
    record = fs.execute(plan)
    if record is not None:
        fs.execute(finish_plan(materializer.queries, record.id, Status.FAILED, error=error))


@contextmanager
def _partition_lock(
    fs: FlowStone, materializer: Materializer, ctx: Context
) -> Iterator[psycopg.Connection[Any] | None]:
    """A connection holding the partition's lock, or None if busy.

    The lock is a session lock, so no transaction stays open while the asset runs; it
    is released before the connection goes back to its pool (and with the connection,
    should the process die). The pool is the lock's own: a connection held for a whole
    materialization must not starve the instance's pool the asset itself may use."""
    key = {"key": f"{fs.schema}.materialize/{ctx.asset}/{ctx.partition_key or ''}"}
    with _lock_pool(fs).connection() as conn:
        locked = conn.execute(materializer.queries.try_lock, key).fetchone()
        if locked is None or not locked[0]:
            yield None
            return
        try:
            yield conn
        finally:
            conn.execute(materializer.queries.unlock, key)
            mark_used(conn)


LOCK_POOL_SIZE = 64
_lock_pools: weakref.WeakKeyDictionary[FlowStone, ConnectionPool] = weakref.WeakKeyDictionary()
_lock_pools_guard = threading.Lock()


def _lock_pool(fs: FlowStone) -> ConnectionPool:
    """The connections this process holds partition locks on, reused across jobs."""
    with _lock_pools_guard:
        if fs not in _lock_pools:
            _lock_pools[fs] = sync_pool(fs.database_url, LOCK_POOL_SIZE, min_size=0)
        return _lock_pools[fs]


class _Run:
    """One attempt at materializing, under the lock: records, steps, wake-ups, outcome."""

    def __init__(
        self, materializer: Materializer, asset: Asset, ctx: Context, job: Job, conn: psycopg.Connection[Any]
    ) -> None:
        self.m = materializer
        self.asset = asset
        self.ctx = ctx
        self.job = job
        self.conn = conn

    def _execute(self, plan: Any) -> Any:
        return self.m.fs.execute(plan, self.conn)

    def perform(self) -> Result:
        record = self._execute(
            start_plan(
                self.m.queries,
                asset=self.asset.name,
                partition=self.ctx.partition_key,
                run_id=self.ctx.run_id,
                job_id=self.ctx.job_id,
                attempt=self.ctx.attempt,
            )
        )
        if record is None:  # this job already finished its record (e.g. a lost ack)
            return None
        if self._already_materialized(record):
            self._finish(record, Status.SKIPPED)
            return None
        try:
            readiness = self.m.check_dependencies_ready(self.asset, self.ctx, self.conn)
            if not readiness.ready:
                waiting = ", ".join(readiness.waiting)
                reason = FlowStoneError("dependency_not_ready", f"waiting for {waiting}")
                self._execute(set_pending_plan(self.m.queries, record.id, reason))
                return Snooze(SNOOZE_SECONDS)
            deps = self.m.load_dependencies(self.asset, self.ctx)
            value = self.m.execute(self.asset, self.ctx, deps)
            metadata = self.m.store_result(self.asset, self.ctx, value)
        except FlowStoneError as error:
            return self._failed(record, error)
        self._finish(record, Status.SUCCESS, metadata=metadata, upstream=readiness.upstream_ids)
        return None

    def _already_materialized(self, record: Materialization) -> bool:
        """Skip unless forced when the last finished record succeeded and the data is there."""
        if self.ctx.force:
            return False
        last = self._execute(
            last_finished_plan(self.m.queries, self.asset.name, self.ctx.partition_key, record.id)
        )
        if last is None or last.status != Status.SUCCESS:
            return False
        return self.m.io_manager(self.asset).exists(self.ctx)

    def _failed(self, record: Materialization, error: FlowStoneError) -> Result:
        """Final failure → record failed and Discard; retryable with attempts left → raise."""
        if error.retryable and self.job.attempt < self.job.max_attempts:
            self._execute(set_pending_plan(self.m.queries, record.id, error))
            raise error
        self._finish(record, Status.FAILED, error=error)
        if error.retryable:
            raise error  # out of attempts: the queue discards it, keeping the traceback
        return Discard(str(error))

    def _finish(self, record: Materialization, status: Status, **details: Any) -> None:
        self._execute(finish_plan(self.m.queries, record.id, status, **details))
        self._execute(wake_plan(self.m.fs.queries, AssetWorker.name, self._waiting_patterns()))

    def _waiting_patterns(self) -> list[dict[str, Any]]:
        """Args of the jobs that may be waiting on this one: dependents in this run (same
        partition when this asset is partitioned) and duplicates of this partition."""
        same_partition = {"partition": self.ctx.partition_key} if self.asset.partitions is not None else {}
        dependents = [
            {"asset_name": name, "run_id": self.ctx.run_id, **same_partition}
            for name in default_assets.dependents(self.asset.name)
        ]
        return [*dependents, {"asset_name": self.asset.name, "partition": self.ctx.partition_key}]
