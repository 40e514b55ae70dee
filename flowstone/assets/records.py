"""Materialization records: the `Materialization` row, plans over the records, and
`MaterializationRecords`, the latest record of a partition.

Plans (sans-IO, see flowstone.queue.plan) carry the logic once: the worker and the API
run the write side; the read layer (`flowstone.insights`: history, lineage, statuses,
run progress) runs the reads people look at. `MaterializationRecords` keeps only what a
caller that queued a job needs next: the record it left.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from flowstone.assets.definitions import Asset, AssetRegistry, registry_of
from flowstone.assets.queries import COLUMNS, START_COLUMNS, MaterializationQueries
from flowstone.assets.versions import LastSuccess, inputs_of
from flowstone.errors import FlowStoneError
from flowstone.queue.insert import insert_plan
from flowstone.queue.instance import FlowStone, get_default
from flowstone.queue.job import Job
from flowstone.queue.plan import Plan, Row, notice_plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.worker import NewJob


class Status(enum.StrEnum):
    """Mirrors the `materialization_status` enum."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    """Its job ended without a result (cancelled, discarded, deleted): set by the database
    (migration 0009), whoever ended the job."""


FINISHED = (Status.SUCCESS, Status.FAILED, Status.SKIPPED, Status.CANCELLED)


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
    code_version: str | None = None
    data_version: str | None = None
    stands_for: int | None = None
    waiting_since: datetime | None = None

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


_FIELDS = tuple(COLUMNS.split(", "))
_START_FIELDS = tuple(START_COLUMNS.split(", "))


def _record(row: Row, fields: tuple[str, ...]) -> Materialization | None:
    """The record in a row that also holds other columns: its `fields` (None when its id
    is NULL)."""
    if row["id"] is None:
        return None
    return Materialization.from_row({name: row[name] for name in fields})


def _error_params(error: FlowStoneError | None) -> dict[str, Any]:
    return {
        "error_type": None if error is None else error.type,
        "error_message": None if error is None else error.message,
    }


# -- write plans -----------------------------------------------------------------------


def pending_plan(materializations: MaterializationQueries, records: Sequence[dict[str, Any]]) -> Plan[None]:
    """Create pending records (`asset`, `partition`, `run_id`, `job_id`) for enqueued jobs."""
    yield (
        materializations.create_pending,
        {"records": Jsonb([{**r, "partition": column(r["partition"])} for r in records])},
    )


def start_plan(
    materializations: MaterializationQueries,
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
    rows = yield materializations.start, params
    return _one(rows)


def lock_key(schema: str, asset: str, partition: str | None) -> str:
    """The advisory lock key of one (asset, partition) in one schema."""
    return f"{schema}.materialize/{asset}/{column(partition)}"


@dataclass(frozen=True)
class LastFinished:
    """A partition's last success or failure: its status and, for a success, what it was."""

    status: Status
    success: LastSuccess | None = None


def _last_finished(row: Row) -> LastFinished | None:
    if row["last_id"] is None:
        return None
    if row["last_status"] != Status.SUCCESS:
        return LastFinished(Status(row["last_status"]))
    success = LastSuccess(
        row["last_id"], row["last_code_version"], row["last_data_version"], inputs_of(row["last_inputs"])
    )
    return LastFinished(Status.SUCCESS, success)


def locked_start_plan(
    materializations: MaterializationQueries, requests: Sequence[Mapping[str, Any]]
) -> Plan[list[tuple[bool, Materialization | None, LastFinished | None]]]:
    """Per request (`asset`, `partition`, `run_id`, `job_id`, `attempt`; distinct
    partitions), in order: take the partition's session lock and, if taken, mark the
    job's record running; with the partition's last success or failure.
    (False, None, _): another session holds the lock; (True, None, _): the job already
    finished its record."""
    payload = [
        {
            **r,
            "n": n,
            "partition": column(r["partition"]),
            "key": lock_key(materializations.schema, r["asset"], r["partition"]),
        }
        for n, r in enumerate(requests)
    ]
    rows = yield materializations.locked_start, {"requests": Jsonb(payload)}
    return [(bool(row["locked"]), _record(row, _START_FIELDS), _last_finished(row)) for row in rows]


def unlock_plan(materializations: MaterializationQueries, keys: Sequence[str]) -> Plan[None]:
    """Release partition locks (keys of `lock_key`) taken by `locked_start_plan`."""
    yield materializations.unlock, {"keys": list(keys)}


def relock_plan(materializations: MaterializationQueries, keys: Sequence[str]) -> Plan[set[str]]:
    """Take partition locks again (after a reconnect); the keys taken."""
    rows = yield materializations.relock, {"keys": list(keys)}
    return {row["key"] for row in rows if row["locked"]}


def enqueue_plan(
    jobs: JobQueries, materializations: MaterializationQueries, new: Sequence[NewJob]
) -> Plan[list[Job]]:
    """Insert asset jobs (one statement) and their pending records (a unique job that
    already existed keeps its own)."""
    inserted = yield from insert_plan(jobs, new)
    records = [
        {
            "asset": j.args["asset_name"],
            "partition": j.args["partition"],
            "run_id": j.args["run_id"],
            "job_id": job.id,
        }
        for j, job in zip(new, inserted, strict=True)
    ]
    yield from pending_plan(materializations, records)
    return list(inserted)


def eager_plan(
    jobs: JobQueries,
    materializations: MaterializationQueries,
    candidates: Sequence[tuple[NewJob, Sequence[tuple[str, str | None]]]],
) -> Plan[list[Job]]:
    """Enqueue the candidates (a job and the upstream partitions it reads) whose every
    upstream partition has a success."""
    ready = yield from ready_candidates_plan(materializations, [needs for _, needs in candidates])
    if not ready:
        return []
    return (yield from enqueue_plan(jobs, materializations, [candidates[n][0] for n in ready]))


@dataclass(frozen=True)
class Pending:
    """A record going back to pending, and why; `absent`: waiting for a dependency that
    nothing materializes (the time that wait began is kept)."""

    record_id: int
    error: FlowStoneError
    absent: bool = False
    logs: str | None = None


def set_pending_plan(materializations: MaterializationQueries, records: Sequence[Pending]) -> Plan[None]:
    """Back to pending (waiting or retrying), keeping each reason; a record cancelled
    meanwhile (its job ended) stays cancelled."""
    payload = [
        {"id": p.record_id, "absent": p.absent, "logs": p.logs, **_error_params(p.error)} for p in records
    ]
    yield materializations.set_pending, {"records": Jsonb(payload), "ids": [p.record_id for p in records]}


@dataclass(frozen=True)
class Finish:
    """How one record finishes: its status, error, metadata, lineage, versions (a skip:
    the success it stands for), check results (rows of `CheckOutcome.row`) and compute
    logs (None: nothing printed or logged)."""

    record_id: int
    status: Status
    error: FlowStoneError | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    upstream: Sequence[int] = ()
    code_version: str | None = None
    data_version: str | None = None
    stands_for: int | None = None
    checks: Sequence[Mapping[str, Any]] = ()
    logs: str | None = None


def finish_plan(materializations: MaterializationQueries, finishes: Sequence[Finish]) -> Plan[None]:
    """Finish records (success/failed/skipped) with their metadata and lineage, in one statement."""
    yield materializations.finish, _finish_params(finishes)


Waiting = tuple[str, str | None] | tuple[str, str, int]
"""Jobs waiting on a finish: (asset, partition column), the partition None for any; or
(asset, partition column, finished record id): the next duplicate of that partition."""


def finish_and_wake_plan(
    materializations: MaterializationQueries, finishes: Sequence[Finish], waiting: Sequence[Waiting]
) -> Plan[int]:
    """Finish records as `finish_plan` does and, in the same statement, wake the jobs
    waiting on them, whatever their run, found through their unfinished records of the
    `waiting` patterns: scheduled ones become available, executing ones are spared their
    next snooze. Returns the number of jobs woken or marked."""
    patterns = [{"asset": w[0], "partition": w[1], "after": w[2] if len(w) > 2 else None} for w in waiting]
    rows = yield materializations.finish_and_wake, {**_finish_params(finishes), "waiting": Jsonb(patterns)}
    return sum(row["count"] for row in rows)


def _finish_params(finishes: Sequence[Finish]) -> dict[str, Any]:
    """The statement's parameters; empty fields are left out of the document (NULL)."""
    records = [
        _present(
            id=f.record_id,
            status=f.status.value,
            metadata=f.metadata,
            upstream=list(f.upstream),
            code_version=f.code_version,
            data_version=f.data_version,
            stands_for=f.stands_for,
            logs=f.logs,
            **_error_params(f.error),
        )
        for f in finishes
    ]
    checks = [{**check, "id": f.record_id} for f in finishes for check in f.checks]
    return {"records": Jsonb(records), "ids": [f.record_id for f in finishes], "checks": Jsonb(checks)}


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value not in (None, [], {})}


def started_since_plan(materializations: MaterializationQueries, record_id: int) -> Plan[bool]:
    """Whether another run of the record's partition started since the record did."""
    rows = yield materializations.started_since, {"id": record_id}
    return bool(rows)


# -- read plans ------------------------------------------------------------------------


def latest_plan(
    materializations: MaterializationQueries, asset: str, partition: str | None
) -> Plan[Materialization | None]:
    """The latest record of an asset and partition."""
    rows = yield materializations.latest, {"asset": asset, "partition": column(partition)}
    return _one(rows)


def record_plan(materializations: MaterializationQueries, record_id: int) -> Plan[Materialization | None]:
    """One record by id."""
    rows = yield materializations.by_id, {"id": record_id}
    return _one(rows)


def dependencies_plan(
    materializations: MaterializationQueries, deps: Sequence[tuple[int, str, str | None]]
) -> Plan[list[Row]]:
    """Per (request, asset, partition), in order: latest record status, its job's state,
    latest success id and data version."""
    payload = [{"request": n, "asset": asset, "partition": column(p)} for n, asset, p in deps]
    rows = yield materializations.dependencies, {"deps": Jsonb(payload)}
    return rows


def unavailable_plan(
    materializations: MaterializationQueries, deps: Sequence[tuple[str, str | None]]
) -> Plan[list[tuple[str, str | None]]]:
    """The (asset, partition) pairs with no success and nothing queued or running."""
    payload = [{"asset": asset, "partition": column(p)} for asset, p in dict.fromkeys(deps)]
    rows = yield materializations.unavailable, {"deps": Jsonb(payload)}
    return [(row["asset"], row["partition"] or None) for row in rows]


def ready_candidates_plan(
    materializations: MaterializationQueries, needs: Sequence[Sequence[tuple[str, str | None]]]
) -> Plan[list[int]]:
    """The indexes of the candidates (each a list of upstream (asset, partition) pairs it
    reads) whose every upstream partition has a success."""
    payload = [
        {"n": n, "needs": [{"asset": a, "partition": column(p)} for a, p in pairs]}
        for n, pairs in enumerate(needs)
    ]
    rows = yield materializations.ready_candidates, {"candidates": Jsonb(payload)}
    return [row["n"] for row in rows]


@dataclass(frozen=True)
class PartitionState:
    """A partition's latest record (with its job's state) and its latest success."""

    partition: str | None
    latest: Materialization | None
    job_state: str | None
    success: LastSuccess | None


def partition_states_plan(
    materializations: MaterializationQueries, asset: str, partitions: Sequence[str | None]
) -> Plan[list[PartitionState]]:
    """The state of each partition of `asset`, in order."""
    rows = yield (
        materializations.partition_states,
        {"asset": asset, "partitions": [column(p) for p in partitions]},
    )
    states = []
    for partition, row in zip(partitions, rows, strict=True):
        success = None
        if row["success_id"] is not None:
            inputs = inputs_of(row["success_inputs"])
            success = LastSuccess(
                row["success_id"], row["success_code_version"], row["success_version"], inputs
            )
        states.append(PartitionState(partition, _record(row, _FIELDS), row["job_state"], success))
    return states


def recorded_partitions_plan(materializations: MaterializationQueries, asset: str) -> Plan[list[str | None]]:
    """The partitions of `asset` that have records."""
    rows = yield materializations.recorded_partitions, {"asset": asset}
    return [row["partition"] or None for row in rows]


def check_results_plan(
    materializations: MaterializationQueries, record_ids: Sequence[int]
) -> Plan[list[Row]]:
    """The check results recorded with these materializations, in order."""
    rows = yield materializations.check_results, {"ids": list(record_ids)}
    return rows


def add_partitions_plan(
    materializations: MaterializationQueries, definition: str, keys: Sequence[str]
) -> Plan[list[str]]:
    """Add keys to a dynamic partition set; the ones that were new."""
    rows = yield materializations.add_partitions, {"definition": definition, "keys": list(keys)}
    return [row["key"] for row in rows]


def delete_partitions_plan(
    materializations: MaterializationQueries, definition: str, keys: Sequence[str]
) -> Plan[list[str]]:
    """Remove keys from a dynamic partition set; the ones that were there."""
    rows = yield materializations.delete_partitions, {"definition": definition, "keys": list(keys)}
    return [row["key"] for row in rows]


def dynamic_keys_plan(
    materializations: MaterializationQueries, definitions: Sequence[str]
) -> Plan[dict[str, list[str]]]:
    """The keys of each dynamic partition set, in the order they were added."""
    rows = yield materializations.dynamic_keys, {"definitions": list(definitions)}
    found: dict[str, list[str]] = {name: [] for name in definitions}
    for row in rows:
        found[row["definition"]].append(row["key"])
    return found


def by_job_plan(
    materializations: MaterializationQueries, job_id: int
) -> Plan[tuple[Materialization | None, str | None]]:
    """The record of a job and the job's state (None when the job is gone)."""
    rows = yield materializations.by_job, {"job_id": job_id}
    states = yield materializations.job_state, {"job_id": job_id}
    return _one(rows), (states[0]["state"] if states else None)


def history_plan(
    materializations: MaterializationQueries,
    asset: str | None,
    partition: str | None,
    run_id: str | None,
    limit: int,
) -> Plan[list[Materialization]]:
    """Records matching every given filter, newest first."""
    rows = yield (
        materializations.history,
        {"asset": asset, "partition": partition, "run_id": run_id, "limit": limit},
    )
    return [Materialization.from_row(row) for row in rows]


def logs_plan(materializations: MaterializationQueries, record_ids: Sequence[int]) -> Plan[dict[int, str]]:
    """The compute logs of these records, by id (records without any are left out)."""
    rows = yield materializations.logs, {"ids": list(record_ids)}
    return {row["id"]: row["logs"] for row in rows}


def lineage_plan(
    materializations: MaterializationQueries, record_id: int, direction: str
) -> Plan[list[Materialization]]:
    """What record `record_id` read (`upstream`) or what read it (`downstream`)."""
    query = materializations.upstream if direction == "upstream" else materializations.downstream
    rows = yield query, {"id": record_id}
    return [Materialization.from_row(row) for row in rows]


RECHECK_SECONDS = 5.0
"""Longest wait on notifications alone for a record to finish: a job that ends without a
result has its record cancelled by the database, which notifies; a record left unfinished
otherwise (its job removed by hand, or ended before migration 0009) notifies nothing, so
waiters read again this often."""


def finish_notice_plan(key: str, value: Any, deadline: float | None, poll: float | None) -> Plan[bool]:
    """Wait for a finished record's notification whose `key` (job_id, run_id) is `value`,
    until `deadline` (of `time.monotonic`; None: none) and at most `RECHECK_SECONDS`, or
    `poll` (`Database.poll_notices`: where no notification can come), before reading again."""
    recheck = min(RECHECK_SECONDS, poll or RECHECK_SECONDS)
    wait = recheck if deadline is None else min(recheck, max(0.0, deadline - time.monotonic()))
    return (yield from notice_plan(lambda payload: bool(json.loads(payload).get(key) == value), wait))


def run_progress_plan(materializations: MaterializationQueries, run_id: str) -> Plan[dict[str, int]]:
    """How many records of run `run_id` are pending, running, success, skipped, failed or
    cancelled (an unfinished record whose job is gone counts as cancelled)."""
    rows = yield materializations.run_progress, {"run_id": run_id}
    return {row["outcome"]: row["count"] for row in rows}


class MaterializationRecords:
    """The latest materialization record of a partition (history, lineage and statuses:
    `flowstone.insights.Insights`).

    On `fs` (default: the default instance) with `fs`'s asset graph unless given one."""

    def __init__(self, fs: FlowStone | None = None, assets: AssetRegistry | None = None) -> None:
        self.fs = fs or get_default()
        self.assets = assets if assets is not None else registry_of(self.fs)
        self.materializations = self.fs.database.statements.of(MaterializationQueries)

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
        return self.fs.database.execute(
            latest_plan(self.materializations, *self._partition(asset, partition))
        )

    async def aget(self, asset: str | Asset, partition: Any = None) -> Materialization | None:
        """Async twin of `get`."""
        return await self.fs.database.aexecute(
            latest_plan(self.materializations, *self._partition(asset, partition))
        )
