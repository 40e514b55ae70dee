"""Reads of the asset side for front ends: per-asset status, partition strips, run progress
and lineage, all on one instance's asset graph."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from flowstone.assets.definitions import Asset, AssetRegistry
from flowstone.assets.partitions import PartitionsDefinition
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import (
    FINISHED,
    Materialization,
    latest_plan,
    lineage_plan,
    partitions_latest_plan,
    run_progress_plan,
    status_counts_plan,
)
from flowstone.errors import FlowStoneError
from flowstone.queue.plan import Plan

MISSING = "missing"
"""The status of a partition that was never materialized."""


@dataclass(frozen=True)
class AssetOverview:
    """An asset as defined, with how many partitions' latest record is in each status."""

    asset: Asset
    counts: dict[str, int]

    @property
    def partitions(self) -> str | None:
        """`daily(2025-01-01)`, `static(eu us)`: the kind and its defining values."""
        return describe_partitions(self.asset.partitions)


def describe_partitions(definition: PartitionsDefinition | None) -> str | None:
    """A partitions definition in a few words (None when unpartitioned)."""
    if definition is None:
        return None
    kind = type(definition).__name__.removesuffix("Partitions").lower()
    if not is_dataclass(definition):
        return kind
    values = [getattr(definition, f.name) for f in fields(definition)]
    shown = [" ".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values if v is not None]
    return f"{kind}({', '.join(shown)})"


def assets_plan(q: MaterializationQueries, graph: AssetRegistry) -> Plan[list[AssetOverview]]:
    """Every asset of `graph` in dependency order, with its status counts."""
    counts = yield from status_counts_plan(q)
    ordered = [graph.require(name) for name in graph.topological_order()]
    return [AssetOverview(asset, counts.get(asset.name, {})) for asset in ordered]


@dataclass(frozen=True)
class PartitionStatus:
    """One partition of an asset: its latest record's status, or `missing`."""

    partition: str | None
    status: str
    record: Materialization | None


def partition_keys(asset: Asset, partitions: Sequence[Any] | None, start: Any, end: Any) -> list[str | None]:
    """The serialized partitions asked for: a list, a range, or (unpartitioned) the one."""
    if asset.partitions is None:
        return [None]
    if partitions is not None:
        return [asset.serialize_partition(p) for p in partitions]
    if start is None or end is None:
        raise FlowStoneError("validation_error", f"give partitions=[...] or start and end for {asset.name!r}")
    return [asset.partitions.to_text(key) for key in asset.partitions.range(start, end)]


def partitions_plan(
    q: MaterializationQueries, asset: Asset, keys: Sequence[str | None]
) -> Plan[list[PartitionStatus]]:
    """The status of each partition in `keys`, in order."""
    records = yield from partitions_latest_plan(q, asset.name, keys)
    return [
        PartitionStatus(key, MISSING if record is None else record.status.value, record)
        for key, record in zip(keys, records, strict=True)
    ]


@dataclass(frozen=True)
class RunProgress:
    """A run's records by outcome (pending, running, success, skipped, failed)."""

    run_id: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Records of the run."""
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        """Records that failed (or whose job ended without a result)."""
        return self.counts.get("failed", 0)

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
class Lineage:
    """A partition's latest record, the records it read and the records that read it."""

    record: Materialization
    upstream: list[Materialization]
    downstream: list[Materialization]


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
    upstream = yield from lineage_plan(q, record.id, "upstream")
    downstream = yield from lineage_plan(q, record.id, "downstream")
    return Lineage(record, upstream, downstream)
