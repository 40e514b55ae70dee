"""The public asset API: `materialize`, `materialize_all`, `backfill` and their async twins.

Each call validates everything first (asset_not_found with a suggestion, validation_error
for a partition that does not fit), then inserts its jobs in one statement together with
their pending records, in one transaction. `wait=True` listens on
`<schema>.materializations` (a trigger notifies when a record finishes) — no polling.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg

from flowstone.assets.definitions import Asset, AssetRegistry, registry_of
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import (
    Materialization,
    Status,
    by_job_plan,
    pending_plan,
)
from flowstone.assets.worker import AssetWorker
from flowstone.errors import FlowStoneError
from flowstone.queue.insert import insert_plan
from flowstone.queue.instance import FlowStone, current
from flowstone.queue.job import Job, JobState
from flowstone.queue.plan import Plan

RunStatus = Literal["queued", "completed", "failed"]
Target = tuple[Asset, str | None]


@dataclass(frozen=True)
class MaterializeResult:
    """What `materialize` did: the run, its status and, once finished, the record."""

    run_id: str
    status: RunStatus
    asset: str
    partition: str | None
    job_id: int
    materialization: Materialization | None = None
    error: FlowStoneError | None = None


@dataclass(frozen=True)
class MaterializeAllResult:
    """The run `materialize_all` queued and its assets in dependency order."""

    run_id: str
    assets: list[str]
    job_ids: list[int]
    status: RunStatus = "queued"


@dataclass(frozen=True)
class BackfillResult:
    """The run a backfill queued: `total` jobs, one per partition."""

    run_id: str
    total: int
    partitions: list[str] = field(default_factory=list)
    job_ids: list[int] = field(default_factory=list)


def _enqueue_plan(fs: FlowStone, targets: Sequence[Target], run_id: str, force: bool) -> Plan[list[Job]]:
    """Insert one job per target (one statement) and their pending records."""
    new = [
        AssetWorker.new(
            {"asset_name": a.name, "partition": p, "run_id": run_id, "force": force},
            max_attempts=a.max_attempts,
        )
        for a, p in targets
    ]
    jobs = yield from insert_plan(fs.queries, new)
    records = [
        {"asset": a.name, "partition": p, "run_id": run_id, "job_id": job.id}
        for (a, p), job in zip(targets, jobs, strict=True)
    ]
    yield from pending_plan(MaterializationQueries.for_schema(fs.schema), records)
    return jobs


def _run_id(run_id: str | None) -> str:
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise FlowStoneError("validation_error", f"run_id must be a non-empty string; got {run_id!r}")
    return run_id or str(uuid.uuid4())


def _single(graph: AssetRegistry, asset: str | Asset, partition: Any) -> Target:
    target = graph.require(asset)
    return target, target.serialize_partition(partition)


def _closure(graph: AssetRegistry, asset: str | Asset, partition: Any) -> list[Target]:
    """The asset and its upstream closure in dependency order, each at `partition`."""
    target = graph.require(asset)
    key = target.partition_key(partition)
    order = graph.topological_order({target.name, *graph.upstream(target.name)})
    chosen = [graph.require(name) for name in order]
    return [(a, a.serialize_partition(key if a.partitions is not None else None)) for a in chosen]


def _partitions(
    graph: AssetRegistry, asset: str | Asset, partitions: Iterable[Any] | None, start: Any, end: Any
) -> list[Target]:
    """One target per distinct partition: the given ones, or the range start..end."""
    target = graph.require(asset)
    if target.partitions is None:
        raise FlowStoneError("validation_error", f"asset {target.name!r} is not partitioned")
    if (partitions is None) == (start is None and end is None):
        raise FlowStoneError("validation_error", "backfill takes partitions=[...] or start= and end=")
    keys = target.partitions.range(start, end) if partitions is None else list(partitions)
    texts = list(dict.fromkeys(target.partitions.serialize(key) for key in keys))
    if not texts:
        raise FlowStoneError("validation_error", f"backfill of {target.name!r} got no partitions")
    return [(target, text) for text in texts]


def _outcome(
    run_id: str, target: Target, job: Job, record: Materialization | None, job_state: str | None
) -> MaterializeResult | None:
    """The finished result, or None while the materialization is still under way."""
    asset, partition = target

    def finished(status: RunStatus, error: FlowStoneError | None = None) -> MaterializeResult:
        return MaterializeResult(run_id, status, asset.name, partition, job.id, record, error)

    if record is not None and record.status in (Status.SUCCESS, Status.SKIPPED):
        return finished("completed")
    if record is not None and record.status == Status.FAILED:
        return finished("failed", record.error)
    if job_state is None or job_state in (JobState.DISCARDED, JobState.CANCELLED):
        ended = f"job {job.id} ended {job_state or 'deleted'} without a result"
        return finished("failed", FlowStoneError("execution_error", ended))
    return None


def _concerns(payload: str, job_id: int) -> bool:
    return bool(json.loads(payload).get("job_id") == job_id)


def _timed_out(target: Target, run_id: str, job: Job, timeout: float | None) -> FlowStoneError:
    return FlowStoneError(
        "timeout",
        f"materialization of {target[0].name!r} ({target[1]!r}) did not finish within {timeout} s",
        context={"run_id": run_id, "job_id": job.id},
    )


# A job can end without finishing its record (discarded by the lifeline, cancelled,
# deleted) and then nothing notifies: re-check that often even without a notification.
RECHECK_SECONDS = 5.0


def _remaining(deadline: float | None) -> float:
    """How long to wait for the next notification before checking again."""
    if deadline is None:
        return RECHECK_SECONDS
    return min(RECHECK_SECONDS, max(0.0, deadline - time.monotonic()))


def _wait(
    fs: FlowStone, conn: psycopg.Connection[Any], target: Target, run_id: str, job: Job, timeout: float | None
) -> MaterializeResult:
    """Check the job's record whenever a finish notification names the job, until it
    finished or `timeout` passed (checked one last time then, e.g. for a job discarded
    before it could finish its record)."""
    queries = MaterializationQueries.for_schema(fs.schema)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        result = _outcome(run_id, target, job, *fs.execute(by_job_plan(queries, job.id), conn))
        if result is not None:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            raise _timed_out(target, run_id, job, timeout)
        for notify in conn.notifies(timeout=_remaining(deadline)):
            if _concerns(notify.payload, job.id):
                break


async def _await(
    fs: FlowStone,
    conn: psycopg.AsyncConnection[Any],
    target: Target,
    run_id: str,
    job: Job,
    timeout: float | None,
) -> MaterializeResult:
    """Async twin of `_wait`."""
    queries = MaterializationQueries.for_schema(fs.schema)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        result = _outcome(run_id, target, job, *await fs.aexecute(by_job_plan(queries, job.id), conn))
        if result is not None:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            raise _timed_out(target, run_id, job, timeout)
        async for notify in conn.notifies(timeout=_remaining(deadline)):
            if _concerns(notify.payload, job.id):
                break


def materialize(
    asset: str | Asset,
    partition: Any = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    wait: bool = False,
    timeout: float | None = None,
    fs: FlowStone | None = None,
) -> MaterializeResult:
    """Queue the materialization of `asset` at `partition`; with `wait`, block until it
    finished (status completed/failed) or `timeout` seconds passed (a `timeout` error)."""
    instance = fs or current()
    target, run = _single(registry_of(instance), asset, partition), _run_id(run_id)
    plan = _enqueue_plan(instance, [target], run, force)
    if not wait:
        job = instance.execute(plan)[0]
        return MaterializeResult(run, "queued", target[0].name, target[1], job.id)
    with instance.connect(autocommit=True) as conn:
        conn.execute(MaterializationQueries.for_schema(instance.schema).listen)
        with conn.transaction():
            job = instance.execute(plan, conn)[0]
        return _wait(instance, conn, target, run, job, timeout)


async def amaterialize(
    asset: str | Asset,
    partition: Any = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    wait: bool = False,
    timeout: float | None = None,
    fs: FlowStone | None = None,
) -> MaterializeResult:
    """Async twin of `materialize`."""
    instance = fs or current()
    target, run = _single(registry_of(instance), asset, partition), _run_id(run_id)
    plan = _enqueue_plan(instance, [target], run, force)
    if not wait:
        job = (await instance.aexecute(plan))[0]
        return MaterializeResult(run, "queued", target[0].name, target[1], job.id)
    async with await instance.aconnect(autocommit=True) as conn:
        await conn.execute(MaterializationQueries.for_schema(instance.schema).listen)
        async with conn.transaction():
            job = (await instance.aexecute(plan, conn))[0]
        return await _await(instance, conn, target, run, job, timeout)


def materialize_all(
    asset: str | Asset,
    partition: Any = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    fs: FlowStone | None = None,
) -> MaterializeAllResult:
    """Queue `asset` and everything upstream of it, in dependency order, as one run."""
    instance = fs or current()
    targets, run = _closure(registry_of(instance), asset, partition), _run_id(run_id)
    jobs = instance.execute(_enqueue_plan(instance, targets, run, force))
    return MaterializeAllResult(run, [a.name for a, _ in targets], [job.id for job in jobs])


async def amaterialize_all(
    asset: str | Asset,
    partition: Any = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    fs: FlowStone | None = None,
) -> MaterializeAllResult:
    """Async twin of `materialize_all`."""
    instance = fs or current()
    targets, run = _closure(registry_of(instance), asset, partition), _run_id(run_id)
    jobs = await instance.aexecute(_enqueue_plan(instance, targets, run, force))
    return MaterializeAllResult(run, [a.name for a, _ in targets], [job.id for job in jobs])


def backfill(
    asset: str | Asset,
    partitions: Iterable[Any] | None = None,
    *,
    start: Any = None,
    end: Any = None,
    run_id: str | None = None,
    force: bool = False,
    fs: FlowStone | None = None,
) -> BackfillResult:
    """Queue one job per partition (the list, or start..end inclusive) in one bulk insert."""
    instance = fs or current()
    targets = _partitions(registry_of(instance), asset, partitions, start, end)
    run = _run_id(run_id)
    jobs = instance.execute(_enqueue_plan(instance, targets, run, force))
    return BackfillResult(run, len(jobs), [p for _, p in targets if p is not None], [job.id for job in jobs])


async def abackfill(
    asset: str | Asset,
    partitions: Iterable[Any] | None = None,
    *,
    start: Any = None,
    end: Any = None,
    run_id: str | None = None,
    force: bool = False,
    fs: FlowStone | None = None,
) -> BackfillResult:
    """Async twin of `backfill`."""
    instance = fs or current()
    targets = _partitions(registry_of(instance), asset, partitions, start, end)
    run = _run_id(run_id)
    jobs = await instance.aexecute(_enqueue_plan(instance, targets, run, force))
    return BackfillResult(run, len(jobs), [p for _, p in targets if p is not None], [job.id for job in jobs])
