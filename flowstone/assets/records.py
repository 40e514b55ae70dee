"""Materialization records: the `Materialization` row, plans over the records, and
`MaterializationRecords`, the read API over them (also importable as `Store`).

Plans (sans-IO, see flowstone.queue.plan) carry the logic once; `MaterializationRecords`
runs the read side for users with sync and async twins, the worker and the API run the
write side, and the read layer (`flowstone.insights`) reads for front ends.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from flowstone.assets.definitions import Asset, AssetRegistry, registry_of
from flowstone.assets.queries import MaterializationQueries
from flowstone.errors import FlowStoneError
from flowstone.queue.instance import FlowStone, get_default
from flowstone.queue.plan import Plan, Row


class Status(enum.StrEnum):
    """Mirrors the `materialization_status` enum."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


FINISHED = (Status.SUCCESS, Status.FAILED, Status.SKIPPED)


@dataclass(slots=True)
class Materialization:
    """One row of `materializations`; `partition` is the serialized key (None: unpartitioned)."""

    id: int
    asset: str
    partition: str | None
    run_id: str
    status: Status
    inserted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: timedelta | None = None
    error_type: str | None = None
    error_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None
    attempt: int = 0

    @classmethod
    def from_row(cls, row: Row) -> Materialization:
        """Build from a dict row of the materializations table."""
        values = dict(row)
        values["status"] = Status(values["status"])
        values["partition"] = values["partition"] or None
        return cls(**values)

    @property
    def error(self) -> FlowStoneError | None:
        """The recorded error as a FlowStoneError, if any."""
        if self.error_type is None:
            return None
        return FlowStoneError(
            self.error_type,  # type: ignore[arg-type]
            self.error_message or "",
            context={"asset": self.asset, "partition": self.partition, "materialization_id": self.id},
        )


def column(partition: str | None) -> str:
    """The `partition` column value of a serialized key ('' when unpartitioned)."""
    return partition or ""


def _one(rows: list[Row]) -> Materialization | None:
    return Materialization.from_row(rows[0]) if rows else None


def _record(row: Row, *extra: str) -> Materialization | None:
    """The record in a row that also holds `extra` columns (None when its id is NULL)."""
    if row["id"] is None:
        return None
    return Materialization.from_row({k: v for k, v in row.items() if k not in extra})


def _error_params(error: FlowStoneError | None) -> dict[str, Any]:
    return {
        "error_type": None if error is None else error.type,
        "error_message": None if error is None else error.message,
    }


# -- write plans -----------------------------------------------------------------------


def pending_plan(q: MaterializationQueries, records: Sequence[dict[str, Any]]) -> Plan[None]:
    """Create pending records (`asset`, `partition`, `run_id`, `job_id`) for enqueued jobs."""
    yield q.create_pending, {"records": Jsonb([{**r, "partition": column(r["partition"])} for r in records])}


def start_plan(
    q: MaterializationQueries,
    *,
    asset: str,
    partition: str | None,
    run_id: str,
    job_id: int | None,
    attempt: int,
) -> Plan[Materialization | None]:
    """Mark the job's record running; None when this job already finished it."""
    params = {
        "asset": asset,
        "partition": column(partition),
        "run_id": run_id,
        "job_id": job_id,
        "attempt": attempt,
    }
    rows = yield q.start, params
    return _one(rows)


def lock_key(schema: str, asset: str, partition: str | None) -> str:
    """The advisory lock key of one (asset, partition) in one schema."""
    return f"{schema}.materialize/{asset}/{column(partition)}"


def locked_start_plan(
    q: MaterializationQueries, requests: Sequence[Mapping[str, Any]]
) -> Plan[list[tuple[bool, Materialization | None, str | None]]]:
    """Per request (`asset`, `partition`, `run_id`, `job_id`, `attempt`; distinct
    partitions), in order: take the partition's session lock and, if taken, mark the
    job's record running; with the status of the partition's last success or failure.
    (False, None, _): another session holds the lock; (True, None, _): the job already
    finished its record."""
    payload = [
        {
            **r,
            "n": n,
            "partition": column(r["partition"]),
            "key": lock_key(q.schema, r["asset"], r["partition"]),
        }
        for n, r in enumerate(requests)
    ]
    rows = yield q.locked_start, {"requests": Jsonb(payload)}
    return [
        (bool(row["locked"]), _record(row, "n", "locked", "last_status"), row["last_status"]) for row in rows
    ]


def unlock_plan(q: MaterializationQueries, keys: Sequence[str]) -> Plan[None]:
    """Release partition locks (keys of `lock_key`) taken by `locked_start_plan`."""
    yield q.unlock, {"keys": list(keys)}


def set_pending_plan(q: MaterializationQueries, records: Sequence[tuple[int, FlowStoneError]]) -> Plan[None]:
    """Back to pending (waiting or retrying), keeping each reason."""
    payload = [{"id": id_, **_error_params(error)} for id_, error in records]
    yield q.set_pending, {"records": Jsonb(payload), "ids": [id_ for id_, _ in records]}


@dataclass(frozen=True)
class Finish:
    """How one record finishes: its status, error, metadata and lineage."""

    record_id: int
    status: Status
    error: FlowStoneError | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    upstream: Sequence[int] = ()


def finish_plan(q: MaterializationQueries, finishes: Sequence[Finish]) -> Plan[None]:
    """Finish records (success/failed/skipped) with their metadata and lineage, in one statement."""
    yield q.finish, _finish_params(finishes)


def finish_and_wake_plan(
    q: MaterializationQueries,
    finishes: Sequence[Finish],
    worker: str,
    patterns: Sequence[Mapping[str, Any]],
) -> Plan[int]:
    """Finish records as `finish_plan` does and, in the same statement, wake the jobs of
    `worker` waiting on them: scheduled ones whose args contain a pattern (`asset_name`,
    `run_id`, `partition`; no `partition` key: any) become available, and those found
    through their records while still executing are spared their next snooze. Returns
    the number of jobs woken or marked."""
    waiting = [
        {
            "asset": p["asset_name"],
            "partition": column(p["partition"]) if "partition" in p else None,
            "run_id": p.get("run_id"),
        }
        for p in patterns
    ]
    params = {"worker": worker, "patterns": Jsonb([dict(p) for p in patterns]), "waiting": Jsonb(waiting)}
    rows = yield q.finish_and_wake, {**_finish_params(finishes), **params}
    return sum(row["count"] for row in rows)


def _finish_params(finishes: Sequence[Finish]) -> dict[str, Any]:
    records = [
        {
            "id": f.record_id,
            "status": f.status.value,
            "metadata": f.metadata,
            "upstream": list(f.upstream),
            **_error_params(f.error),
        }
        for f in finishes
    ]
    return {"records": Jsonb(records), "ids": [f.record_id for f in finishes]}


# -- read plans ------------------------------------------------------------------------


def latest_plan(q: MaterializationQueries, asset: str, partition: str | None) -> Plan[Materialization | None]:
    """The latest record of an asset and partition."""
    rows = yield q.latest, {"asset": asset, "partition": column(partition)}
    return _one(rows)


def partitions_latest_plan(
    q: MaterializationQueries, asset: str, partitions: Sequence[str | None]
) -> Plan[list[Materialization | None]]:
    """The latest record of each partition of `asset`, in order (None where there is none)."""
    rows = yield q.partitions_latest, {"asset": asset, "partitions": [column(p) for p in partitions]}
    return [_record(row, "n") for row in rows]


def dependencies_plan(
    q: MaterializationQueries, deps: Sequence[tuple[int, str, str | None]]
) -> Plan[list[Row]]:
    """Per (request, asset, partition), in order: latest record status, its job's state,
    latest success id."""
    payload = [{"request": n, "asset": asset, "partition": column(p)} for n, asset, p in deps]
    rows = yield q.dependencies, {"deps": Jsonb(payload)}
    return rows


def by_job_plan(q: MaterializationQueries, job_id: int) -> Plan[tuple[Materialization | None, str | None]]:
    """The record of a job and the job's state (None when the job is gone)."""
    rows = yield q.by_job, {"job_id": job_id}
    states = yield q.job_state, {"job_id": job_id}
    return _one(rows), (states[0]["state"] if states else None)


def history_plan(
    q: MaterializationQueries, asset: str | None, partition: str | None, run_id: str | None, limit: int
) -> Plan[list[Materialization]]:
    """Records matching every given filter, newest first."""
    rows = yield q.history, {"asset": asset, "partition": partition, "run_id": run_id, "limit": limit}
    return [Materialization.from_row(row) for row in rows]


def lineage_plan(q: MaterializationQueries, record_id: int, direction: str) -> Plan[list[Materialization]]:
    """What record `record_id` read (`upstream`) or what read it (`downstream`)."""
    query = q.upstream if direction == "upstream" else q.downstream
    rows = yield query, {"id": record_id}
    return [Materialization.from_row(row) for row in rows]


def status_counts_plan(q: MaterializationQueries) -> Plan[dict[str, dict[str, int]]]:
    """Per asset, how many partitions' latest record is in each status."""
    rows = yield q.status_counts, {}
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["asset"], {})[row["status"]] = row["count"]
    return counts


def run_progress_plan(q: MaterializationQueries, run_id: str) -> Plan[dict[str, int]]:
    """How many records of run `run_id` are pending, running, success, skipped or failed
    (an unfinished record whose job ended counts as failed)."""
    rows = yield q.run_progress, {"run_id": run_id}
    return {row["outcome"]: row["count"] for row in rows}


class MaterializationRecords:
    """Read materialization records: latest per partition, history and lineage.

    On `fs` (default: the default instance) with `fs`'s asset graph unless given one."""

    def __init__(self, fs: FlowStone | None = None, assets: AssetRegistry | None = None) -> None:
        self.fs = fs or get_default()
        self.assets = assets if assets is not None else registry_of(self.fs)
        self.queries = MaterializationQueries.for_schema(self.fs.schema)

    def _partition(self, asset: str | Asset, partition: Any) -> tuple[str, str | None]:
        """Asset name and serialized partition; registered assets validate the key."""
        name = asset.name if isinstance(asset, Asset) else asset
        defined = asset if isinstance(asset, Asset) else self.assets.get(name)
        if defined is not None:
            return name, defined.serialize_partition(partition)
        if partition is not None and not isinstance(partition, str):
            raise FlowStoneError(
                "validation_error", f"asset {name!r} is not registered; give the partition as a string"
            )
        return name, partition

    def get(self, asset: str | Asset, partition: Any = None) -> Materialization | None:
        """The latest record of `asset` and `partition` (a key or its string form)."""
        return self.fs.execute(latest_plan(self.queries, *self._partition(asset, partition)))

    async def aget(self, asset: str | Asset, partition: Any = None) -> Materialization | None:
        """Async twin of `get`."""
        return await self.fs.aexecute(latest_plan(self.queries, *self._partition(asset, partition)))

    def history(
        self,
        asset: str | Asset | None = None,
        partition: Any = None,
        *,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[Materialization]:
        """Records (newest first) of an asset, partition and/or run."""
        name, key = self._partition(asset, partition) if asset is not None else (None, None)
        return self.fs.execute(history_plan(self.queries, name, key, run_id, limit))

    async def ahistory(
        self,
        asset: str | Asset | None = None,
        partition: Any = None,
        *,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[Materialization]:
        """Async twin of `history`."""
        name, key = self._partition(asset, partition) if asset is not None else (None, None)
        return await self.fs.aexecute(history_plan(self.queries, name, key, run_id, limit))

    def upstream(self, record_id: int) -> list[Materialization]:
        """The upstream materializations record `record_id` read."""
        return self.fs.execute(lineage_plan(self.queries, record_id, "upstream"))

    async def aupstream(self, record_id: int) -> list[Materialization]:
        """Async twin of `upstream`."""
        return await self.fs.aexecute(lineage_plan(self.queries, record_id, "upstream"))

    def downstream(self, record_id: int) -> list[Materialization]:
        """The materializations that read record `record_id`."""
        return self.fs.execute(lineage_plan(self.queries, record_id, "downstream"))

    async def adownstream(self, record_id: int) -> list[Materialization]:
        """Async twin of `downstream`."""
        return await self.fs.aexecute(lineage_plan(self.queries, record_id, "downstream"))


Store = MaterializationRecords
"""The earlier name of `MaterializationRecords` (an IO manager is what stores values)."""
