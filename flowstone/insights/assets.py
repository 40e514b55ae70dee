"""Reads of the asset side for front ends: per-asset and per-partition status, run
progress, lineage and check results, all on one instance's asset graph.

**The one vocabulary of a partition's status** (`STATUSES`), which the CLI, the dashboard
(legend, strip, graph), `/api` and the metrics all show:
- fresh: its latest success is current (same code version, the upstream data it read is
  still the latest there, no upstream partition it reads is stale);
- stale: its latest success was computed with another code version, or from upstream
  data that is no longer the latest, or an upstream partition it reads is stale itself
  (staleness flows downstream);
- missing: never materialized;
- queued: its job waits to run (queued, waiting for an upstream, or in retry backoff;
  the reason says which);
- running: its job is executing;
- failed: its latest materialization failed;
- cancelled: its job ended without a result (cancelled, discarded, deleted).
`overdue` is a flag beside them: an asset with a freshness policy whose latest success
is older than the policy allows (see `flowstone.assets.freshness`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any

from flowstone.assets.definitions import Asset, AssetRegistry
from flowstone.assets.freshness import Freshness, freshness_plan
from flowstone.assets.partitions import (
    SEPARATOR,
    KeySpace,
    MultiPartitions,
    PartitionsDefinition,
    dynamic_names,
)
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import (
    FINISHED,
    Materialization,
    PartitionState,
    Status,
    check_results_plan,
    column,
    dynamic_keys_plan,
    latest_plan,
    lineage_plan,
    partition_states_plan,
    record_plan,
    recorded_partitions_plan,
    run_progress_plan,
)
from flowstone.assets.versions import stale_reason
from flowstone.errors import FlowStoneError
from flowstone.queue.job import JobState
from flowstone.queue.plan import Plan

FRESH, STALE, MISSING, QUEUED, RUNNING, FAILED, CANCELLED = (
    "fresh",
    "stale",
    "missing",
    "queued",
    "running",
    "failed",
    "cancelled",
)
STATUSES = (FRESH, STALE, MISSING, QUEUED, RUNNING, FAILED, CANCELLED)
"""A partition's status, in the order front ends list them."""

OVERDUE = "overdue"
"""The flag beside the statuses: the asset's latest success is older than its freshness
policy allows."""

_WAITING = {JobState.AVAILABLE.value, JobState.SCHEDULED.value, JobState.RETRYABLE.value}
_DONE = (Status.SUCCESS, Status.SKIPPED)


@dataclass(frozen=True)
class PartitionStatus:
    """One partition of an asset: its status, why (stale, failed, running), its latest
    record and the data version of its latest success."""

    partition: str | None
    status: str
    record: Materialization | None
    reason: str | None = None
    data_version: str | None = None


@dataclass(frozen=True)
class AssetOverview:
    """An asset as defined, with how many of its partitions (those that exist now) are in
    each status of `STATUSES` (every one, zeros included, in that order), and its
    freshness (None without a policy)."""

    asset: Asset
    counts: dict[str, int]
    freshness: Freshness | None = None

    @property
    def overdue(self) -> bool:
        """Whether its latest success is older than its freshness policy allows."""
        return self.freshness is not None and self.freshness.overdue

    @property
    def partitions(self) -> str | None:
        """`daily(2025-01-01)`, `static(eu us)`: the kind and its defining values."""
        return describe_partitions(self.asset.partitions)


@dataclass(frozen=True)
class PartitionGrid:
    """The statuses of a two-dimensional asset as a table: a row per key of the first
    dimension, a column per key of the second (each in order of first appearance), a cell
    per partition (None where a row lacks that column)."""

    row_name: str
    column_name: str
    columns: list[str]
    rows: list[tuple[str, list[PartitionStatus | None]]]


def partition_grid(
    definition: PartitionsDefinition | None, statuses: Sequence[PartitionStatus]
) -> PartitionGrid | None:
    """`statuses` as a grid when `definition` has exactly two dimensions, else None: the
    one layout the CLI's status table and the dashboard's partition view share."""
    if not isinstance(definition, MultiPartitions) or len(definition.dimensions) != 2:
        return None
    cells: dict[str, dict[str, PartitionStatus]] = {}
    columns: dict[str, None] = {}
    for status in statuses:
        row, column = str(status.partition).split(SEPARATOR)
        cells.setdefault(row, {})[column] = status
        columns.setdefault(column)
    order = list(columns)
    rows = [(row, [found.get(column) for column in order]) for row, found in cells.items()]
    row_name, column_name = definition.names
    return PartitionGrid(row_name, column_name, order, rows)


def describe_partitions(definition: PartitionsDefinition | None) -> str | None:
    """A partitions definition in a few words (None when unpartitioned)."""
    if definition is None:
        return None
    if isinstance(definition, MultiPartitions):
        dimensions = (f"{name}: {describe_partitions(d)}" for name, d in definition.dimensions)
        return f"multi({', '.join(dimensions)})"
    kind = type(definition).__name__.removesuffix("Partitions").lower()
    if not is_dataclass(definition):
        return kind
    values = [getattr(definition, f.name) for f in fields(definition) if f.compare]
    shown = [" ".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values if v is not None]
    return f"{kind}({', '.join(shown)})"


def space_plan(
    q: MaterializationQueries, graph: AssetRegistry, now: datetime | None = None
) -> Plan[KeySpace]:
    """The partitions that exist now (reading the graph's dynamic sets, if it has any)."""
    sets = dynamic_names([asset.partitions for asset in graph])
    dynamic = (yield from dynamic_keys_plan(q, sets)) if sets else {}
    return KeySpace.at_present(dynamic) if now is None else KeySpace(now, dynamic)


def partition_keys(
    asset: Asset, partitions: Sequence[Any] | None, start: Any, end: Any, space: KeySpace
) -> list[str | None]:
    """The serialized partitions asked for: a list, a range (start..end), every one that
    exists (neither), or (unpartitioned) the one."""
    if asset.partitions is None:
        return [None]
    definition = space.resolve(asset.partitions)
    if partitions is not None:
        return [definition.serialize(p) for p in partitions]
    if (start is None) != (end is None):
        raise FlowStoneError("validation_error", f"give both start and end for {asset.name!r}, or neither")
    keys = space.all_keys(definition) if start is None else definition.range(start, end)
    return [definition.to_text(key) for key in keys]


Memo = dict[tuple[str, str | None], PartitionStatus]


def statuses_plan(
    q: MaterializationQueries,
    graph: AssetRegistry,
    asset: Asset,
    keys: Sequence[str | None],
    space: KeySpace,
    memo: Memo | None = None,
) -> Plan[list[PartitionStatus]]:
    """The status of each partition of `asset` in `keys`, in order: one statement for
    them, and (to tell stale from fresh) the statuses of the upstream partitions they
    read, recursively; `memo` keeps what was judged for reuse across assets."""
    memo = {} if memo is None else memo
    wanted = list(dict.fromkeys(key for key in keys if (asset.name, key) not in memo))
    if wanted:
        states = yield from partition_states_plan(q, asset.name, wanted)
        reads = {key: graph.reads(asset, key, space) for key in wanted}
        upstream: dict[str, dict[str | None, None]] = {}
        for up, read in (pair for pairs in reads.values() for pair in pairs):
            upstream.setdefault(up.name, {})[read] = None
        for name, read_keys in upstream.items():
            yield from statuses_plan(q, graph, graph.require(name), list(read_keys), space, memo)
        for state in states:
            memo[asset.name, state.partition] = _judge(asset, state, reads[state.partition], memo)
    return [memo[asset.name, key] for key in keys]


def _judge(
    asset: Asset, state: PartitionState, reads: list[tuple[Asset, str | None]], memo: Memo
) -> PartitionStatus:
    """The status of one partition from its state and its upstream partitions' statuses."""
    latest, version = state.latest, None if state.success is None else state.success.data_version

    def status(name: str, reason: str | None = None) -> PartitionStatus:
        return PartitionStatus(state.partition, name, latest, reason, version)

    if latest is None:
        return status(MISSING)
    if latest.status not in _DONE:
        moving = _moving(latest, state.job_state)
        if moving is not None:
            return status(moving, latest.error_message)
        if latest.status != Status.FAILED:
            ended = f"its job ended {state.job_state or 'deleted'} without a result"
            return status(CANCELLED, latest.error_message if latest.status == Status.CANCELLED else ended)
    if latest.status == Status.FAILED or state.success is None:
        return status(FAILED, f"{latest.error_type}: {latest.error_message}")
    current = {(up.name, column(read)): memo[up.name, read].data_version for up, read in reads}
    reason = stale_reason(asset.code_version, state.success, current)
    if reason is None:
        stale_upstream = next(((up, read) for up, read in reads if memo[up.name, read].status == STALE), None)
        if stale_upstream is not None:
            up, read = stale_upstream
            reason = f"upstream {up.name}{f' partition {read}' if read else ''} is stale"
    return status(STALE if reason else FRESH, reason)


def _moving(latest: Materialization, job_state: str | None) -> str | None:
    """RUNNING while the job of an unfinished (or retried) record executes, QUEUED while
    it waits to (queued, snoozed, in retry backoff); None when the job ended. A record
    without a job (run in the caller: the inline testing mode) says it itself."""
    if latest.job_id is None:
        return {Status.PENDING: QUEUED, Status.RUNNING: RUNNING}.get(latest.status)
    if job_state == JobState.EXECUTING.value:
        return RUNNING
    return QUEUED if job_state in _WAITING else None


def assets_plan(q: MaterializationQueries, graph: AssetRegistry) -> Plan[list[AssetOverview]]:
    """Every asset of `graph` in dependency order, with how many of its existing partitions
    are in each status."""
    ordered = [graph.require(name) for name in graph.topological_order()]
    space = yield from space_plan(q, graph)
    memo: Memo = {}
    overviews = []
    freshness = yield from freshness_plan(q, ordered)
    for asset in ordered:
        counts = yield from _status_counts_plan(q, graph, asset, space, memo)
        overviews.append(AssetOverview(asset, counts, freshness.get(asset.name)))
    return overviews


def _status_counts_plan(
    q: MaterializationQueries, graph: AssetRegistry, asset: Asset, space: KeySpace, memo: Memo
) -> Plan[dict[str, int]]:
    """How many of `asset`'s existing partitions are in each status: those with records
    judged one by one, the others counted as missing."""
    existing = partition_keys(asset, None, None, None, space)
    recorded = set((yield from recorded_partitions_plan(q, asset.name)))
    keys = [key for key in existing if key in recorded]
    found = yield from statuses_plan(q, graph, asset, keys, space, memo)
    tally = Counter(p.status for p in found)
    tally[MISSING] += len(existing) - len(keys)
    return {status: tally[status] for status in STATUSES}


def partitions_plan(
    q: MaterializationQueries,
    graph: AssetRegistry,
    asset: Asset,
    partitions: Sequence[Any] | None,
    start: Any,
    end: Any,
) -> Plan[list[PartitionStatus]]:
    """The status of each partition asked for (see `partition_keys`), in order."""
    space = yield from space_plan(q, graph)
    keys = partition_keys(asset, partitions, start, end, space)
    return (yield from statuses_plan(q, graph, asset, keys, space))


@dataclass(frozen=True)
class RunProgress:
    """A run's records by outcome (pending, running, success, skipped, failed, cancelled)."""

    run_id: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Records of the run."""
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        """Records that failed."""
        return self.counts.get(Status.FAILED.value, 0)

    @property
    def cancelled(self) -> int:
        """Records whose job ended without a result."""
        return self.counts.get(Status.CANCELLED.value, 0)

    @property
    def finished(self) -> int:
        """Records with a final outcome."""
        return sum(self.counts.get(status.value, 0) for status in FINISHED)

    @property
    def done(self) -> bool:
        """Whether every record of the run has a final outcome."""
        return self.finished >= self.total


def progress_plan(q: MaterializationQueries, run_id: str) -> Plan[RunProgress]:
    """How far run `run_id` is."""
    counts = yield from run_progress_plan(q, run_id)
    return RunProgress(run_id, counts)


@dataclass(frozen=True)
class CheckRecord:
    """One asset check's result for one materialization."""

    check_name: str
    passed: bool
    blocking: bool
    description: str | None
    metadata: dict[str, Any]
    checked_at: datetime


@dataclass(frozen=True)
class Lineage:
    """A partition's latest record, the records it read and the records that read it.
    When the latest record is a skip, `source` is the success it stands for, and the
    lineage shown is that success's."""

    record: Materialization
    upstream: list[Materialization]
    downstream: list[Materialization]
    source: Materialization | None = None
    checks: list[CheckRecord] = field(default_factory=list)


def lineage_of_plan(q: MaterializationQueries, asset: str, partition: str | None) -> Plan[Lineage | None]:
    """The lineage of `asset`'s latest record at `partition` (None when never materialized)."""
    record = yield from latest_plan(q, asset, partition)
    return (yield from _lineage_around(q, record))


def record_lineage_plan(q: MaterializationQueries, record_id: int) -> Plan[Lineage | None]:
    """The lineage of the record with `record_id` (None when there is none)."""
    rows = yield q.by_id, {"id": record_id}
    return (yield from _lineage_around(q, Materialization.from_row(rows[0]) if rows else None))


def _lineage_around(q: MaterializationQueries, record: Materialization | None) -> Plan[Lineage | None]:
    if record is None:
        return None
    source = None
    if record.status == Status.SKIPPED and record.stands_for is not None:
        source = yield from record_plan(q, record.stands_for)
    shown = record if source is None else source
    upstream = yield from lineage_plan(q, shown.id, "upstream")
    downstream = yield from lineage_plan(q, shown.id, "downstream")
    rows = yield from check_results_plan(q, [shown.id])
    checks = [CheckRecord(**{k: v for k, v in row.items() if k != "materialization_id"}) for row in rows]
    return Lineage(record, upstream, downstream, source, checks)
