"""`AssetWorker`: materializing one asset partition is one job on the `assets` queue.

The job runs on the instance that claimed it (`job.fs`) and resolves its asset in that
instance's graph. Its life is recorded in `materializations` (one record per job). At most
one materialization of an (asset, partition) runs at a time cluster-wide: the job holds a
session advisory lock on its process's bookkeeping connection, which Postgres releases
even if the process dies.

A run decides, in this order: wait while an upstream partition it reads is being
materialized; skip when its partition is fresh (its last success read the upstream data
versions there are now, with the same code version) unless forced; fail when an
upstream failed for good; wait, at most the asset's `dependency_timeout`, for an upstream
partition that nothing is materializing, then fail with dependency_not_ready; else load,
run, store, check. Its finish wakes every job waiting on it, whatever their run (the
dependent partitions that read it, duplicates of its partition), and queues its eager
dependents when its data version changed.

The bookkeeping runs on the node's event loop, batched with that of the other
materializations running there (see `bookkeeper`); only the IO managers, the asset
function and its checks, which are synchronous, go to a thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import pydantic

from flowstone.assets.bookkeeper import Begin, Begun, Candidate, End, bookkeeper, check_sessions
from flowstone.assets.checks import blocking_failure
from flowstone.assets.compute_logs import ComputeLog, capturing
from flowstone.assets.context import Context
from flowstone.assets.definitions import ASSET_WORKER, Asset
from flowstone.assets.materializer import Materializer, Readiness, Upstream
from flowstone.assets.partitions import KeySpace, StaticPartitions, TimeWindowPartitions
from flowstone.assets.records import (
    Finish,
    LastFinished,
    Materialization,
    Pending,
    Status,
    Waiting,
    column,
    dynamic_keys_plan,
    finish_plan,
    start_plan,
)
from flowstone.assets.versions import LastSuccess, Output, derived_version, stale_reason
from flowstone.errors import FlowStoneError
from flowstone.queue.instance import FlowStone
from flowstone.queue.job import Job
from flowstone.queue.results import Discard, Result, Snooze
from flowstone.queue.unique import Unique
from flowstone.queue.worker import NewJob, Worker

SNOOZE_SECONDS = 30
"""How long a job waits for its dependencies (or a busy partition) before looking again."""

EAGER_UNIQUE = Unique(
    period=None, keys=["asset_name", "partition"], states=["available", "scheduled", "retryable"]
)
"""An eager materialization is queued once per partition while one waits to run (one that
is already running does not block it: it may have read the data before the change)."""


ASSET_THREADS = 40
"""How many asset functions (with their IO managers and checks) run at once in a process
(anyio's default thread limit, which they shared before they had their own threads)."""

T = TypeVar("T")

_threads: ThreadPoolExecutor | None = None


def _forget_threads() -> None:
    """In a forked child: the parent's threads are not there; start a pool of its own."""
    global _threads
    _threads = None


os.register_at_fork(after_in_child=_forget_threads)


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in one of the asset threads, in a copy of this context, waited
    for even when cancelled (a thread cannot be stopped; the cancellation takes effect
    once it returns). It is `anyio.to_thread.run_sync` without the capacity limiter,
    run variables and cancel scopes that made it cost a third more CPU per call."""
    global _threads
    if _threads is None:
        _threads = ThreadPoolExecutor(ASSET_THREADS, thread_name_prefix="flowstone asset")
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(_threads, context.run, function, *args)
    with anyio.CancelScope(shield=True):
        result = await future
    return result


class AssetArgs(pydantic.BaseModel):
    """The args of an asset job: which asset and partition (serialized), in which run."""

    model_config = pydantic.ConfigDict(extra="forbid")

    asset_name: str
    partition: str | None = None
    run_id: str
    force: bool = False


class AssetWorker(Worker):
    """Materializes `args.asset_name` at `args.partition` for run `args.run_id`."""

    name = ASSET_WORKER
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
        fs: FlowStone = job.fs
        materializer = Materializer(fs)
        try:
            check_sessions(fs.database)
            asset = materializer.assets.require(args.asset_name)
            ctx = materializer.build_context(
                asset,
                args.partition,
                args.run_id,
                attempt=job.attempt,
                job_id=job.id if job.id > 0 else None,
                force=args.force,
            )
            space = await _key_space(materializer, asset)
            upstream = materializer.upstream(asset, ctx, space)
        except FlowStoneError as error:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_fail_unresolved, materializer, job, args, error)
            return Discard(str(error))
        return await _Run(materializer, asset, ctx, job, upstream, space).perform()


def asset_job(
    asset: Asset, partition: str | None, run_id: str, *, force: bool = False, **options: Any
) -> NewJob:
    """The job materializing `asset` at `partition` (serialized) in run `run_id`."""
    args = {"asset_name": asset.name, "partition": partition, "run_id": run_id, "force": force}
    return AssetWorker.new(args, max_attempts=asset.max_attempts, **options)


async def _key_space(m: Materializer, asset: Asset) -> KeySpace:
    """The partitions that exist now, with the dynamic sets this run may read (or queue)."""
    if not m.assets.has_dynamic:
        return KeySpace.at_present()
    dependents = (m.assets.require(name) for name in m.assets.dependents(asset.name))
    eager = [dependent for dependent in dependents if dependent.automation == "eager"]
    sets = sorted({name for a in [asset, *eager] for name in m.assets.dynamic_sets(a)})
    if not sets:
        return KeySpace.at_present()
    return KeySpace.at_present(await m.database.aexecute(dynamic_keys_plan(m.materializations, sets)))


def _fail_unresolved(materializer: Materializer, job: Job, args: AssetArgs, error: FlowStoneError) -> None:
    """Record the failure of a job whose asset or partition cannot be resolved (a rare
    path: on the sync pool, which outlives any event loop)."""
    database, materializations = materializer.database, materializer.materializations
    plan = start_plan(
        materializations,
        asset=args.asset_name,
        partition=args.partition,
        run_id=args.run_id,
        job_id=job.id if job.id > 0 else None,
        attempt=job.attempt,
    )
    with database.session() as conn:
        record = database.execute(plan, conn)
        if record is not None:
            database.execute(
                finish_plan(materializations, [Finish(record.id, Status.FAILED, error=error)]), conn
            )


@dataclass(frozen=True)
class _Decision:
    """What the synchronous part concluded: a finish (with the eager dependents it
    queues), or a wait (the reason, whether for a dependency nothing materializes, how
    long to snooze)."""

    finish: Finish | None = None
    eager: list[Candidate] = field(default_factory=list)
    wait: Pending | None = None
    snooze: float = SNOOZE_SECONDS


class _Run:
    """One attempt at materializing: `begin` (lock, running mark, reads), the decision and
    the asset in a thread, then `end` (record, wake-ups, eager dependents, unlock).

    Requests to the bookkeeper are shielded from cancellation, and the thread running the
    asset is waited for (Python cannot stop a thread): a cancelled or stopped job takes
    effect once the function returns, so its partition stays locked exactly while it runs."""

    def __init__(
        self,
        materializer: Materializer,
        asset: Asset,
        ctx: Context,
        job: Job,
        upstream: list[Upstream],
        space: KeySpace,
    ) -> None:
        self.m = materializer
        self.asset = asset
        self.ctx = ctx
        self.job = job
        self.upstream = upstream
        self.space = space
        self.book = bookkeeper(materializer.database)
        self.log = ComputeLog()  # what the function, its IO manager and checks print and log

    async def perform(self) -> Result:
        ctx = self.ctx
        where = self.m.upstream_locations(self.asset, ctx, self.upstream)
        request = Begin(self.asset.name, ctx.partition_key, ctx.run_id, ctx.job_id, ctx.attempt, where)
        begun = await self.book.begin(request)
        if not begun.locked:
            return Snooze(SNOOZE_SECONDS)
        end = End(request.key(self.m.database.schema))
        try:
            outcome = None if begun.record is None else await self._materialize(begun.record, begun, end)
        except BaseException:
            await self.book.end(end)
            raise
        kept = await self.book.end(end)
        return outcome if kept else Snooze(SNOOZE_SECONDS)

    async def _materialize(self, record: Materialization, begun: Begun, end: End) -> Result:
        try:
            decision = await in_thread(self._decide, record, begun)
        except FlowStoneError as error:
            return self._failed(record, error, end)
        if decision.wait is not None:
            end.pending = decision.wait
            return Snooze(decision.snooze)
        assert decision.finish is not None
        end.finish, end.eager, end.waiting = decision.finish, decision.eager, self._waiting(record)
        if decision.finish.error is not None:
            return Discard(str(decision.finish.error))
        return None

    def _decide(self, record: Materialization, begun: Begun) -> _Decision:
        """In a worker thread: wait, skip, fail, or load the dependencies, run, store, check."""
        readiness = self.m.readiness(self.asset, self.ctx, begun.upstream, self.upstream)
        if readiness.in_progress:
            waiting = FlowStoneError("dependency_not_ready", f"waiting for {', '.join(readiness.waiting)}")
            return _Decision(wait=Pending(record.id, waiting))
        fresh = self._fresh(begun.last, readiness)
        if fresh is not None:
            skip = Finish(
                record.id,
                Status.SKIPPED,
                code_version=fresh.code_version,
                data_version=fresh.data_version,
                stands_for=fresh.id,
            )
            return _Decision(skip)
        if readiness.failed is not None:
            raise readiness.failed
        if readiness.absent:
            return self._wait_for_absent(record, readiness)
        with capturing(self.log):
            return self._compute(record, readiness, begun.last)

    def _fresh(self, last: LastFinished | None, readiness: Readiness) -> LastSuccess | None:
        """The last success when it is fresh (same code version, same upstream data
        versions) and its data is there; None when this run must compute."""
        if self.ctx.force or self.asset.observed or last is None or last.success is None:
            return None  # an observed source is never fresh without looking
        if stale_reason(self.asset.code_version, last.success, readiness.inputs) is not None:
            return None
        return last.success if self.m.io_manager(self.asset).exists(self.ctx) else None

    def _wait_for_absent(self, record: Materialization, readiness: Readiness) -> _Decision:
        """Wait for upstream partitions nothing is materializing, until the asset's
        dependency_timeout since the wait began; then fail with dependency_not_ready."""
        waited = 0.0
        if record.waiting_since is not None and record.started_at is not None:
            waited = (record.started_at - record.waiting_since).total_seconds()
        timeout = self.asset.dependency_timeout
        absent = ", ".join(readiness.absent)
        if waited >= timeout:
            raise FlowStoneError(
                "dependency_not_ready",
                f"waited {timeout:g} s for {absent}, which nothing is materializing (never materialized, "
                f"not queued): materialize it, or use materialize_all to queue the upstream too",
                retryable=False,
                context={"asset": self.asset.name, "partition": self.ctx.partition_key, "waiting": absent},
            )
        reason = FlowStoneError("dependency_not_ready", f"waiting for {absent} (nothing is materializing it)")
        return _Decision(
            wait=Pending(record.id, reason, absent=True),
            snooze=min(SNOOZE_SECONDS, math.ceil(timeout - waited)),
        )

    def _compute(self, record: Materialization, readiness: Readiness, last: LastFinished | None) -> _Decision:
        """Load, run, store and check; the finish (failed when a blocking check failed)."""
        deps = self.m.load_dependencies(self.asset, self.ctx, self.upstream)
        value = self.m.call_asset(self.asset, self.ctx, deps)
        version = None
        if isinstance(value, Output):
            value, version = value.value, value.data_version
        metadata = self.m.store_result(self.asset, self.ctx, value)
        outcomes = [check.run(self.ctx, value) for check in self.m.assets.checks(self.asset.name)]
        version = version or derived_version(self.asset.code_version, record.id, readiness.inputs)
        error = blocking_failure(outcomes, self.ctx)
        finish = Finish(
            record.id,
            Status.FAILED if error else Status.SUCCESS,
            error=error,
            metadata=metadata,
            upstream=readiness.upstream_ids,
            code_version=self.asset.code_version,
            data_version=version,
            checks=[outcome.row() for outcome in outcomes],
            logs=self.log.text(),
        )
        previous = last.success.data_version if last is not None and last.success is not None else None
        changed = error is None and version != previous
        return _Decision(finish, self._eager_candidates() if changed else [])

    def _failed(self, record: Materialization, error: FlowStoneError, end: End) -> Result:
        """Final failure → record failed and Discard; retryable with attempts left → raise."""
        logs = self.log.text()
        if error.retryable and self.job.attempt < self.job.max_attempts:
            end.pending = Pending(record.id, error, logs=logs)
            raise error
        end.finish = Finish(record.id, Status.FAILED, error=error, logs=logs)
        end.waiting = self._waiting(record)
        if error.retryable:
            raise error  # out of attempts: the queue discards it, keeping the traceback
        return Discard(str(error))

    def _waiting(self, record: Materialization) -> list[Waiting]:
        """The jobs that may be waiting on this one, whatever their run: the dependent
        partitions that read this partition (through their mappings; None: any partition)
        and the next duplicate of this partition (after `record`)."""
        found: list[Waiting] = []
        for name in self.m.assets.dependents(self.asset.name):
            dependent = self.m.assets.require(name)
            keys = self.m.assets.downstream_partitions(self.asset, self.ctx.partition, dependent)
            if keys is None:
                found.append((name, None))
            else:
                found.extend((name, column(dependent.text_of(key))) for key in keys)
        return [*found, (self.asset.name, column(self.ctx.partition_key), record.id)]

    def _eager_candidates(self) -> list[Candidate]:
        """The jobs of the eager dependent partitions that read this partition, each with
        the upstream partitions it reads (queued only if all of them have data)."""
        candidates: list[Candidate] = []
        for name in self.m.assets.dependents(self.asset.name):
            dependent = self.m.assets.require(name)
            if dependent.automation != "eager":
                continue
            keys = self.m.assets.downstream_partitions(self.asset, self.ctx.partition, dependent)
            run = f"automation/{self.asset.name}/{self.ctx.run_id}"
            for key in _fan_out(dependent, self.space) if keys is None else keys:
                text = dependent.text_of(key)
                needs = [(up.name, read) for up, read in self.m.assets.reads(dependent, text, self.space)]
                candidates.append((asset_job(dependent, text, run, unique=EAGER_UNIQUE), needs))
        return candidates


def _fan_out(dependent: Asset, space: KeySpace) -> list[Any]:
    """The partitions of an eager dependent that reads every partition of what changed:
    the latest closed (time-based), all (static), the one (unpartitioned); a dynamic set
    would be all of it, which eager automation leaves to an explicit backfill."""
    definition = dependent.partitions
    if definition is None:
        return [None]
    if isinstance(definition, TimeWindowPartitions):
        last = definition.last_closed(space.now)
        return [] if last is None else [last]
    if isinstance(definition, StaticPartitions):
        return list(definition.values)
    return []
