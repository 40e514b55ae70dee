"""The public asset API: `materialize`, `materialize_all`, `backfill`, dynamic partitions
(`add_partitions`, `delete_partitions`, `list_partitions`) and their async twins.

Each call validates everything first (asset_not_found with a suggestion, validation_error
for a partition that does not fit, dependency_not_ready for an upstream partition that
has never succeeded and that nothing is materializing), then inserts its jobs in one
statement together with their pending records, in one transaction. `wait=True` listens on
`<schema>.materializations` (a trigger notifies when a record finishes) — no polling.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from flowstone.assets.context import Context
from flowstone.assets.definitions import Asset, AssetRegistry, registry_of
from flowstone.assets.partitions import DynamicPartitions, KeySpace
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import (
    Materialization,
    Status,
    add_partitions_plan,
    by_job_plan,
    delete_partitions_plan,
    dynamic_keys_plan,
    enqueue_plan,
    finish_notice_plan,
    unavailable_plan,
)
from flowstone.assets.worker import asset_job
from flowstone.errors import FlowStoneError, ValidationError
from flowstone.queue.instance import FlowStone, current
from flowstone.queue.job import Job, JobState
from flowstone.queue.plan import Plan, atomic

RunStatus = Literal["queued", "completed", "skipped", "failed"]
Target = tuple[Asset, str | None]

DEFAULT_WAIT_TIMEOUT = 3600.0
"""How long `materialize(wait=True)` waits by default before a `timeout` error (the job
runs on); `timeout=None` waits without limit."""

_log = logging.getLogger("flowstone.assets")
"""Where `wait=True` says what a materialization waits for (a warning: stderr by default)."""


@dataclass(frozen=True)
class MaterializeResult:
    """What `materialize` did: the run, its status and, once finished, the record.
    `completed`: computed and stored; `skipped`: already fresh, nothing computed."""

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


def _materializations(fs: FlowStone) -> MaterializationQueries:
    """The materialization records' statements of `fs`'s schema."""
    return fs.database.statements.of(MaterializationQueries)


def _enqueue_plan(fs: FlowStone, targets: Sequence[Target], run_id: str, force: bool) -> Plan[list[Job]]:
    """Insert one job per target (one statement) and their pending records."""
    new = [asset_job(asset, partition, run_id, force=force) for asset, partition in targets]
    return enqueue_plan(fs.database.statements.jobs, _materializations(fs), new)


def _run_id(run_id: str | None) -> str:
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise FlowStoneError("validation_error", f"run_id must be a non-empty string; got {run_id!r}")
    return run_id or str(uuid.uuid4())


# -- the partitions that exist (dynamic sets are read from the database) ------------------


def _dynamic_sets(graph: AssetRegistry, asset: str | Asset) -> list[str]:
    return graph.dynamic_sets(graph.require(asset))


def _space(fs: FlowStone, graph: AssetRegistry, asset: str | Asset) -> KeySpace:
    """The partitions that exist now for `asset` and its dependencies."""
    sets = _dynamic_sets(graph, asset)
    materializations = _materializations(fs)
    return KeySpace.at_present(
        fs.database.execute(dynamic_keys_plan(materializations, sets)) if sets else None
    )


async def _aspace(fs: FlowStone, graph: AssetRegistry, asset: str | Asset) -> KeySpace:
    """Async twin of `_space`."""
    sets = _dynamic_sets(graph, asset)
    materializations = _materializations(fs)
    return KeySpace.at_present(
        await fs.database.aexecute(dynamic_keys_plan(materializations, sets)) if sets else None
    )


def _serialized(asset: Asset, partition: Any, space: KeySpace) -> str | None:
    """`partition` validated (a dynamic key must have been added) and serialized."""
    if asset.partitions is None:
        return asset.serialize_partition(partition)
    asset.partition_key(partition)  # the message names the asset when no partition is given
    return space.resolve(asset.partitions).serialize(partition)


def _single(graph: AssetRegistry, asset: str | Asset, partition: Any, space: KeySpace) -> Target:
    target = graph.require(asset)
    return target, _serialized(target, partition, space)


def _closure(graph: AssetRegistry, asset: str | Asset, partition: Any, space: KeySpace) -> list[Target]:
    """The asset and its upstream closure in dependency order, each at the partitions the
    one below reads (through the partition mappings)."""
    target = graph.require(asset)
    wanted: dict[str, dict[str | None, Any]] = {target.name: {_serialized(target, partition, space): None}}
    order = graph.topological_order({target.name, *graph.upstream(target.name)})
    for name in reversed(order):
        for text in list(wanted.get(name, {})):
            for up, read in graph.reads(graph.require(name), text, space):
                wanted.setdefault(up.name, {})[read] = None
    return [(graph.require(name), text) for name in order for text in wanted.get(name, {})]


def _partitions(
    graph: AssetRegistry,
    asset: str | Asset,
    partitions: Iterable[Any] | None,
    start: Any,
    end: Any,
    space: KeySpace,
) -> list[Target]:
    """One target per distinct partition: the given ones, or the range start..end."""
    target = graph.require(asset)
    if target.partitions is None:
        raise FlowStoneError("validation_error", f"asset {target.name!r} is not partitioned")
    if (partitions is None) == (start is None and end is None):
        raise FlowStoneError("validation_error", "backfill takes partitions=[...] or start= and end=")
    definition = space.resolve(target.partitions)
    keys = definition.range(start, end) if partitions is None else list(partitions)
    texts = list(dict.fromkeys(definition.serialize(key) for key in keys))
    if not texts:
        raise FlowStoneError("validation_error", f"backfill of {target.name!r} got no partitions")
    return [(target, text) for text in texts]


# -- upstream partitions nothing will ever provide ---------------------------------------------


def _reads(graph: AssetRegistry, targets: Sequence[Target], space: KeySpace) -> list[tuple[str, str | None]]:
    """The upstream (asset, partition) pairs the targets read."""
    found = {(up.name, read): None for asset, text in targets for up, read in graph.reads(asset, text, space)}
    return list(found)


def _check_provided(
    fs: FlowStone, graph: AssetRegistry, targets: Sequence[Target], missing: list[tuple[str, str | None]]
) -> None:
    """dependency_not_ready, at once, for upstream partitions with no success, nothing
    queued and no data from outside: their dependents would wait for nothing."""
    unprovided = []
    for name, text in missing:
        up = graph.require(name)
        ctx = Context(name, partition=up.partition_key(text), partition_key=text, fs=fs)
        if not graph.io_managers.get(up.io_manager).exists(ctx):
            unprovided.append(name if text is None else f"{name} {text}")
    if not unprovided:
        return
    unprovided.sort()  # partitions in their order, not the order a set gave them
    shown = ", ".join(unprovided[:5]) + (f" and {len(unprovided) - 5} more" if len(unprovided) > 5 else "")
    asset = targets[0][0].name
    raise FlowStoneError(
        "dependency_not_ready",
        f"{asset!r} reads {shown}, which has never been materialized and is not queued: materialize "
        f"it first, or queue it too with materialize_all({asset!r}, ...)",
        retryable=False,
        context={"asset": asset, "upstream": unprovided},
    )


def _check_upstream(fs: FlowStone, graph: AssetRegistry, targets: Sequence[Target], space: KeySpace) -> None:
    reads = _reads(graph, targets, space)
    if reads:
        missing = fs.database.execute(unavailable_plan(_materializations(fs), reads))
        _check_provided(fs, graph, targets, missing)


async def _acheck_upstream(
    fs: FlowStone, graph: AssetRegistry, targets: Sequence[Target], space: KeySpace
) -> None:
    """Async twin of `_check_upstream`."""
    reads = _reads(graph, targets, space)
    if reads:
        missing = await fs.database.aexecute(unavailable_plan(_materializations(fs), reads))
        if missing:  # IO managers are synchronous: in a thread
            await anyio.to_thread.run_sync(_check_provided, fs, graph, targets, missing)


# -- waiting -------------------------------------------------------------------------------


def _outcome(
    run_id: str, target: Target, job: Job, record: Materialization | None, job_state: str | None
) -> MaterializeResult | None:
    """The finished result, or None while the materialization is still under way."""
    asset, partition = target

    def finished(status: RunStatus, error: FlowStoneError | None = None) -> MaterializeResult:
        return MaterializeResult(run_id, status, asset.name, partition, job.id, record, error)

    if record is not None and record.status == Status.SUCCESS:
        return finished("completed")
    if record is not None and record.status == Status.SKIPPED:
        return finished("skipped")
    if record is not None and record.status == Status.FAILED:
        return finished("failed", record.error)
    if record is not None and record.status == Status.CANCELLED:
        return finished("failed", FlowStoneError("execution_error", record.error_message or "cancelled"))
    if job_state is None or job_state in (JobState.DISCARDED, JobState.CANCELLED):
        ended = f"job {job.id} ended {job_state or 'deleted'} without a result"
        return finished("failed", FlowStoneError("execution_error", ended))
    return None


def _where(record: Materialization | None) -> str:
    """What the record says it is doing, for messages."""
    if record is None:
        return "not started"
    return record.status.value + (f": {record.error_message}" if record.error_message else "")


def _timed_out(
    target: Target, run_id: str, job: Job, timeout: float | None, record: Materialization | None
) -> FlowStoneError:
    return FlowStoneError(
        "timeout",
        f"materialization of {target[0].name!r} ({target[1]!r}) did not finish within {timeout} s "
        f"(still {_where(record)})",
        context={"run_id": run_id, "job_id": job.id},
    )


class _Reporter:
    """Says (once per reason) what a waited-for materialization is waiting on, so that a
    long `wait=True` is not silent."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.said: str | None = None

    def see(self, record: Materialization | None) -> None:
        if record is None or record.error_type != "dependency_not_ready" or record.error_message == self.said:
            return
        self.said = record.error_message
        where = "" if self.target[1] is None else f" partition {self.target[1]}"
        _log.warning("materialization of %s%s is %s", self.target[0].name, where, self.said)


def _wait_plan(
    fs: FlowStone, enqueue: Plan[list[Job]], target: Target, run_id: str, timeout: float | None
) -> Plan[MaterializeResult]:
    """Insert the job (its own transaction), then check its record whenever a finish
    notification names the job, until it finished or `timeout` passed (checked one last
    time then, e.g. for a job discarded before it could finish its record). Runs outside
    a transaction, on a connection of its own."""
    queries = _materializations(fs)
    if fs.database.sessions:
        yield queries.listen, {}
    [job] = yield from atomic(enqueue)
    deadline = None if timeout is None else time.monotonic() + timeout
    reporter = _Reporter(target)
    while True:
        record, state = yield from by_job_plan(queries, job.id)
        result = _outcome(run_id, target, job, record, state)
        if result is not None:
            return result
        reporter.see(record)
        if deadline is not None and time.monotonic() >= deadline:
            raise _timed_out(target, run_id, job, timeout, record)
        yield from finish_notice_plan("job_id", job.id, deadline, fs.database.poll_notices)


# -- materialize, materialize_all, backfill ----------------------------------------------------


def materialize(
    asset: str | Asset,
    partition: Any = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    wait: bool = False,
    timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    fs: FlowStone | None = None,
) -> MaterializeResult:
    """Queue the materialization of `asset` at `partition` (recomputed when stale or
    missing, skipped when fresh, unless `force`); with `wait`, block until it finished
    (status completed / skipped / failed) or `timeout` seconds passed (a `timeout` error).
    An upstream partition it reads that has never succeeded and that nothing is
    materializing is a dependency_not_ready error at once (materialize_all queues it)."""
    instance = fs or current()
    graph, run = registry_of(instance), _run_id(run_id)
    space = _space(instance, graph, asset)
    target = _single(graph, asset, partition, space)
    _check_upstream(instance, graph, [target], space)
    plan = _enqueue_plan(instance, [target], run, force)
    if not wait:
        job = instance.database.execute(plan)[0]
        return MaterializeResult(run, "queued", target[0].name, target[1], job.id)
    with instance.connect(direct=True, autocommit=True) as conn:
        return instance.database.execute(_wait_plan(instance, plan, target, run, timeout), conn, atomic=False)


async def amaterialize(
    asset: str | Asset,
    partition: Any = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    wait: bool = False,
    timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    fs: FlowStone | None = None,
) -> MaterializeResult:
    """Async twin of `materialize`."""
    instance = fs or current()
    graph, run = registry_of(instance), _run_id(run_id)
    space = await _aspace(instance, graph, asset)
    target = _single(graph, asset, partition, space)
    await _acheck_upstream(instance, graph, [target], space)
    plan = _enqueue_plan(instance, [target], run, force)
    if not wait:
        job = (await instance.database.aexecute(plan))[0]
        return MaterializeResult(run, "queued", target[0].name, target[1], job.id)
    async with await instance.aconnect(direct=True, autocommit=True) as conn:
        return await instance.database.aexecute(
            _wait_plan(instance, plan, target, run, timeout), conn, atomic=False
        )


def materialize_all(
    asset: str | Asset,
    partition: Any = None,
    *,
    run_id: str | None = None,
    force: bool = False,
    fs: FlowStone | None = None,
) -> MaterializeAllResult:
    """Queue `asset` and everything upstream of it (the partitions it reads, through the
    mappings), in dependency order, as one run: each recomputes if stale or missing and
    skips if fresh, so exactly the stale part of the closure is computed."""
    instance = fs or current()
    graph, run = registry_of(instance), _run_id(run_id)
    targets = _closure(graph, asset, partition, _space(instance, graph, asset))
    jobs = instance.database.execute(_enqueue_plan(instance, targets, run, force))
    return MaterializeAllResult(
        run, list(dict.fromkeys(a.name for a, _ in targets)), [job.id for job in jobs]
    )


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
    graph, run = registry_of(instance), _run_id(run_id)
    targets = _closure(graph, asset, partition, await _aspace(instance, graph, asset))
    jobs = await instance.database.aexecute(_enqueue_plan(instance, targets, run, force))
    return MaterializeAllResult(
        run, list(dict.fromkeys(a.name for a, _ in targets)), [job.id for job in jobs]
    )


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
    graph = registry_of(instance)
    space = _space(instance, graph, asset)
    targets = _partitions(graph, asset, partitions, start, end, space)
    run = _run_id(run_id)
    _check_upstream(instance, graph, targets, space)
    jobs = instance.database.execute(_enqueue_plan(instance, targets, run, force))
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
    graph = registry_of(instance)
    space = await _aspace(instance, graph, asset)
    targets = _partitions(graph, asset, partitions, start, end, space)
    run = _run_id(run_id)
    await _acheck_upstream(instance, graph, targets, space)
    jobs = await instance.database.aexecute(_enqueue_plan(instance, targets, run, force))
    return BackfillResult(run, len(jobs), [p for _, p in targets if p is not None], [job.id for job in jobs])


# -- dynamic partitions ----------------------------------------------------------------------


def _set_and_keys(
    definition: str | DynamicPartitions, keys: Sequence[str] | None = None
) -> tuple[str, list[str]]:
    """The set's name and the keys, validated."""
    try:
        dynamic = definition if isinstance(definition, DynamicPartitions) else DynamicPartitions(definition)
    except ValueError as error:
        raise ValidationError(str(error)) from error
    if keys is None:
        return dynamic.name, []
    if isinstance(keys, str):
        raise ValidationError(f"partition keys are a list of strings; got the string {keys!r}")
    return dynamic.name, [dynamic.serialize(key) for key in keys]


def add_partitions(
    definition: str | DynamicPartitions, keys: Sequence[str], *, fs: FlowStone | None = None
) -> list[str]:
    """Add partitions to a dynamic set (those already there are left as they are); the
    keys that were new."""
    instance = fs or current()
    plan = add_partitions_plan(_materializations(instance), *_set_and_keys(definition, keys))
    return instance.database.execute(plan)


async def aadd_partitions(
    definition: str | DynamicPartitions, keys: Sequence[str], *, fs: FlowStone | None = None
) -> list[str]:
    """Async twin of `add_partitions`."""
    instance = fs or current()
    plan = add_partitions_plan(_materializations(instance), *_set_and_keys(definition, keys))
    return await instance.database.aexecute(plan)


def delete_partitions(
    definition: str | DynamicPartitions, keys: Sequence[str], *, fs: FlowStone | None = None
) -> list[str]:
    """Remove partitions from a dynamic set (their records and data stay); the keys that
    were there."""
    instance = fs or current()
    materializations = _materializations(instance)
    return instance.database.execute(
        delete_partitions_plan(materializations, *_set_and_keys(definition, keys))
    )


async def adelete_partitions(
    definition: str | DynamicPartitions, keys: Sequence[str], *, fs: FlowStone | None = None
) -> list[str]:
    """Async twin of `delete_partitions`."""
    instance = fs or current()
    materializations = _materializations(instance)
    return await instance.database.aexecute(
        delete_partitions_plan(materializations, *_set_and_keys(definition, keys))
    )


def list_partitions(definition: str | DynamicPartitions, *, fs: FlowStone | None = None) -> list[str]:
    """The keys of a dynamic set, in the order they were added."""
    instance = fs or current()
    name, _ = _set_and_keys(definition)
    return instance.database.execute(dynamic_keys_plan(_materializations(instance), [name]))[name]


async def alist_partitions(definition: str | DynamicPartitions, *, fs: FlowStone | None = None) -> list[str]:
    """Async twin of `list_partitions`."""
    instance = fs or current()
    name, _ = _set_and_keys(definition)
    plan = dynamic_keys_plan(_materializations(instance), [name])
    return (await instance.database.aexecute(plan))[name]
