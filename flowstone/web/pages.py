"""The pages' data: one loader per page, served as HTML (`page`) and as JSON under
`/api/` (`api`). Every loader reads through `flowstone.insights` only."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request

from flowstone.assets.definitions import Asset
from flowstone.assets.partitions import (
    SEPARATOR,
    DailyPartitions,
    HourlyPartitions,
    MultiPartitions,
    PartitionsDefinition,
    StaticPartitions,
)
from flowstone.assets.records import Materialization
from flowstone.assets.worker import AssetWorker
from flowstone.errors import ValidationError
from flowstone.insights import (
    STATUSES,
    AssetOverview,
    ClusterOverview,
    CronStatus,
    Lineage,
    NodeInfo,
    PartitionGrid,
    PartitionStatus,
    QueueOverview,
    describe_partitions,
    partition_grid,
)
from flowstone.queue.dynamic_cron import listing
from flowstone.queue.job import Job
from flowstone.web import graph
from flowstone.web.base import compact, dashboard, preview, wants_json

THROUGHPUT_MINUTES = 15
STRIP = 60
"""Partitions a strip shows unless given a range: the latest ones."""
MAX_STRIP = 1000
"""Partitions one strip may show."""
PAGE_SIZE = 50
RUN_ROWS = 100
"""Records a run page lists (the newest); its counts cover them all."""


# -- queues ------------------------------------------------------------------------------


_ON_NODE = ("limit", "configured_limit", "running", "paused")


def _queue(queue: QueueOverview, overview: ClusterOverview) -> dict[str, Any]:
    on_nodes = [
        {"node": node.name, **{k: node.queues[queue.queue].get(k) for k in _ON_NODE}}
        for node in overview.alive
        if queue.queue in node.queues
    ]
    return {
        "queue": queue.queue,
        "counts": queue.counts,
        "nodes": queue.nodes,
        "paused_on": queue.paused_on,
        "limit": queue.limit,
        "configured_limit": queue.configured_limit,
        "running": queue.running,
        "on_nodes": on_nodes,
        "overrides": [dataclasses.asdict(control) for control in overview.overrides(queue.queue)],
    }


def _node(node: NodeInfo, now: datetime) -> dict[str, Any]:
    return {
        "name": node.name,
        "alive": node.alive,
        "leader": node.leader,
        "started_at": node.started_at,
        "heartbeat_at": node.heartbeat_at,
        "heartbeat_age": (now - node.heartbeat_at).total_seconds(),
        "queues": node.queues,
    }


async def load_queues(request: Request) -> dict[str, Any]:
    """Per queue: counts by state, executing/limit per node (and the configured limit, and
    the stored settings overriding it), paused; nodes; throughput."""
    insights = dashboard(request).insights
    overview = await insights.aoverview()
    minutes = await insights.athroughput(THROUGHPUT_MINUTES)
    now = datetime.now(UTC)
    return {
        "queues": [_queue(queue, overview) for queue in overview.queues],
        "nodes": [_node(node, now) for node in overview.nodes],
        "leader": overview.leader,
        "estimated": sorted(overview.estimated),
        "throughput": minutes,
    }


async def queues_drawing(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """The throughput chart of the queues page."""
    bars, peak = graph.bars(data["throughput"])
    return {"bars": bars, "peak": peak}


# -- jobs --------------------------------------------------------------------------------


def _text(params: QueryParams, name: str) -> str | None:
    value = params.get(name, "").strip()
    return value or None


def _integer(params: QueryParams, name: str) -> int | None:
    value = _text(params, name)
    if value is None:
        return None
    if not value.isdigit():
        raise ValidationError(f"{name} must be a whole number; got {value!r}")
    return int(value)


def parse_args(text: str | None) -> dict[str, Any] | None:
    """The args search: a JSON object (`{"to": "a@b.c"}`) or `key=value` pairs separated
    by commas (a value that reads as JSON is that value, `n=1` the number; else a string)."""
    if text is None:
        return None
    if text.startswith("{"):
        try:
            found = json.loads(text)
        except ValueError as error:
            raise ValidationError(f"args search is not valid JSON: {error}") from None
        if not isinstance(found, dict):
            raise ValidationError("args search must be a JSON object")
        return found
    pairs = [part.partition("=") for part in text.split(",") if part.strip()]
    if any(not sep or not key.strip() for key, sep, _ in pairs):
        raise ValidationError('args search must look like key=value,key=value or a JSON object {"key": ...}')
    return {key.strip(): _value(value.strip()) for key, _, value in pairs}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


JOB_FILTERS = ("queue", "state", "worker", "tag", "args")


def job_filters(params: QueryParams, strict: bool = False) -> dict[str, Any]:
    """The jobs page's filters from its query string, as the text the form shows. A blank
    field of the page's form (which sends every field) is no filter; where `strict` (the
    JSON API, whose callers name what they filter by) a blank value is refused."""
    blank = [name for name in JOB_FILTERS if name in params and not params[name].strip()]
    if strict and blank:
        raise ValidationError(f"the {blank[0]} filter is empty: give a value, or leave it out")
    return {name: _text(params, name) for name in JOB_FILTERS}


LISTED_ARGS = 4096
"""Characters of a job's args (as JSON) a list carries whole; beyond, only a preview and
the size (the job's own page and `/api/jobs/{id}` have them all)."""


def _listed_args(args: dict[str, Any]) -> dict[str, Any]:
    """A job's args as lists carry them: `args_preview` always, `args` when small."""
    text = compact(args)
    listed = {"args": args} if len(text) <= LISTED_ARGS else {"args_size": len(text)}
    return {**listed, "args_preview": preview(text)}


def _asset_of(job: Job) -> dict[str, Any] | None:
    """The materialization a job is, if it is one (a link to its partition)."""
    if job.worker != AssetWorker.name or not isinstance(job.args.get("asset_name"), str):
        return None
    return {"asset": job.args["asset_name"], "partition": job.args.get("partition")}


def _summary(job: Job) -> dict[str, Any]:
    finished = job.completed_at or job.discarded_at or job.cancelled_at
    return {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "worker": job.worker,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        **_listed_args(job.args),
        "tags": job.tags,
        "errors": len(job.errors),
        "inserted_at": job.inserted_at,
        "scheduled_at": job.scheduled_at,
        "attempted_at": job.attempted_at,
        "finished_at": finished,
        "materialization": _asset_of(job),
    }


async def load_jobs(request: Request) -> dict[str, Any]:
    """A page of jobs, newest first, by the query string's filters; `before` pages on."""
    filters = job_filters(request.query_params, strict=wants_json(request))
    limit = _integer(request.query_params, "limit") or PAGE_SIZE
    page = await dashboard(request).insights.ajobs(
        queue=filters["queue"],
        state=filters["state"],
        worker=filters["worker"],
        tag=filters["tag"],
        args=parse_args(filters["args"]),
        cursor=_integer(request.query_params, "before"),
        limit=min(limit, 500),
    )
    return {
        "jobs": [_summary(job) for job in page.jobs],
        "next_cursor": page.next_cursor,
        "searched": page.searched,
        "filters": filters,
        "before": _integer(request.query_params, "before"),
    }


async def load_job(request: Request) -> dict[str, Any]:
    """One job in full: args, meta, every error with its traceback."""
    job_id = int(request.path_params["job_id"])
    job = await dashboard(request).insights.ajob(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id}")
    details = {**job.to_dict(), "state": job.state.value}
    details.pop("conflict", None)
    return {"job": details, "materialization": _asset_of(job)}


# -- cron --------------------------------------------------------------------------------


def _cron(status: CronStatus) -> dict[str, Any]:
    entry = status.entry
    return {
        "worker": entry.worker.name,
        "queue": entry.worker.queue,
        "expression": entry.expression,
        "timezone": entry.timezone,
        "args": entry.args(status.next_at) if callable(entry.args) else dict(entry.args),
        "next_at": status.next_at,
        "last_at": status.last_at,
        "last_job": None if status.last_job is None else _summary(status.last_job),
    }


async def load_cron(request: Request) -> dict[str, Any]:
    """Every cron entry: next tick, last firing and the job it inserted; and the entries
    stored in the database (`fs.cron`), those an entry in code shadows marked."""
    board = dashboard(request)
    stored = listing(board.insights.cron_entries(), await board.fs.cron.alist())
    return {
        "entries": [_cron(status) for status in await board.insights.acron()],
        "stored": [row for row in stored if row["source"] == "database"],
    }


# -- assets ------------------------------------------------------------------------------


def _describe(asset: Asset, dependents: list[str]) -> dict[str, Any]:
    """An asset as defined: its edges, partitions, IO manager and description."""
    return {
        "name": asset.name,
        "depends_on": list(asset.depends_on),
        "dependents": dependents,
        "partitions": describe_partitions(asset.partitions),
        "partitioned": asset.partitions is not None,
        "io_manager": asset.io_manager,
        "description": asset.description,
    }


def _asset(overview: AssetOverview, dependents: list[str]) -> dict[str, Any]:
    counts = overview.counts
    last = None if overview.freshness is None else overview.freshness.last_success
    return {
        **_describe(overview.asset, dependents),
        "counts": counts,
        "health": graph.health(counts),
        "overdue": overview.overdue,
        "freshness": None if overview.asset.freshness is None else overview.asset.freshness.total_seconds(),
        "last_success": last,
    }


async def load_assets(request: Request) -> dict[str, Any]:
    """Every asset in dependency order with how many of its partitions are in each status
    (the read layer's vocabulary, zeros included)."""
    insights = dashboard(request).insights
    overviews = await insights.aassets()
    overdue_only = bool(request.query_params.get("overdue"))
    if overdue_only:
        overviews = [o for o in overviews if o.overdue]
    return {
        "assets": [_asset(o, insights.graph.dependents(o.asset.name)) for o in overviews],
        "overdue_only": overdue_only,
    }


async def assets_drawing(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """The asset graph of the assets page."""
    return {"drawing": graph.layout(data["assets"])}


def default_window(definition: PartitionsDefinition, now: datetime) -> tuple[str, str] | None:
    """The latest `STRIP` partitions up to now (all of a short static list); None when
    the definition has no notion of the latest."""
    if isinstance(definition, DailyPartitions):
        last = max(definition.start, min(now.date(), definition.end or now.date()))
        return max(definition.start, last - timedelta(days=STRIP - 1)).isoformat(), last.isoformat()
    if isinstance(definition, HourlyPartitions):
        hour = now.replace(minute=0, second=0, microsecond=0)
        last = max(definition.start, min(hour, definition.end or hour))
        return max(definition.start, last - timedelta(hours=STRIP - 1)).isoformat(), last.isoformat()
    if isinstance(definition, StaticPartitions):
        return definition.values[max(0, len(definition.values) - MAX_STRIP)], definition.values[-1]
    if isinstance(definition, MultiPartitions):  # the box of each dimension's window
        windows = [default_window(d, now) for _, d in definition.dimensions]
        found = [w for w in windows if w is not None]
        if len(found) < len(windows):
            return None
        return SEPARATOR.join(s for s, _ in found), SEPARATOR.join(e for _, e in found)
    return None


def strip_keys(asset: Asset, params: QueryParams) -> tuple[list[Any], tuple[str, str] | None]:
    """The partitions a strip shows (the query's `start`..`end`, or the default window)."""
    if asset.partitions is None:
        return [None], None
    start, end = _text(params, "start"), _text(params, "end")
    window = (start, end) if start and end else default_window(asset.partitions, datetime.now(UTC))
    if window is None:
        raise ValidationError(f"give start= and end= partitions to show {asset.name!r}")
    keys = asset.partitions.range(*window)
    if len(keys) > MAX_STRIP:
        raise ValidationError(f"{len(keys)} partitions asked for; show at most {MAX_STRIP} at once")
    return keys, window


def _record(record: Materialization) -> dict[str, Any]:
    return {
        "id": record.id,
        "asset": record.asset,
        "partition": record.partition,
        "run_id": record.run_id,
        "status": record.status.value,
        "attempt": record.attempt,
        "inserted_at": record.inserted_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration": record.duration,
        "error_type": record.error_type,
        "error_message": record.error_message,
        "metadata": record.metadata,
        "job_id": record.job_id,
    }


async def load_partitions(request: Request) -> dict[str, Any]:
    """One asset and the status of each partition in a range (a strip)."""
    insights = dashboard(request).insights
    asset = insights.graph.require(request.path_params["name"])
    keys, window = strip_keys(asset, request.query_params)
    statuses = await insights.apartitions(asset.name, keys)
    shown = Counter(status.status for status in statuses)
    grid = partition_grid(asset.partitions, statuses)
    return {
        "asset": _describe(asset, insights.graph.dependents(asset.name)),
        "window": window,
        "counts": {status: shown[status] for status in STATUSES},
        "partitions": [_partition(status) for status in statuses],
        "grid": None if grid is None else _grid(grid),
    }


def _partition(status: PartitionStatus) -> dict[str, Any]:
    record = None if status.record is None else _record(status.record)
    return {"partition": status.partition, "status": status.status, "record": record}


def _grid(grid: PartitionGrid) -> dict[str, Any]:
    """A two-dimensional asset's partitions as rows of cells (None where one is missing)."""
    return {
        "rows_dimension": grid.row_name,
        "columns_dimension": grid.column_name,
        "columns": grid.columns,
        "rows": [
            {"key": key, "cells": [None if c is None else _partition(c) for c in cells]}
            for key, cells in grid.rows
        ],
    }


def _lineage(lineage: Lineage | None) -> dict[str, Any] | None:
    if lineage is None:
        return None
    return {
        "record": _record(lineage.record),
        "upstream": [_record(r) for r in lineage.upstream],
        "downstream": [_record(r) for r in lineage.downstream],
    }


async def load_history(request: Request) -> dict[str, Any]:
    """A partition's materializations, newest first, and the lineage of one of them (the
    `record` asked for, else the latest)."""
    insights = dashboard(request).insights
    asset = insights.graph.require(request.path_params["name"])
    partition = _text(request.query_params, "partition") if asset.partitions is not None else None
    records = await insights.ahistory(asset.name, partition)
    chosen = _integer(request.query_params, "record") or (records[0].id if records else None)
    lineage = None if chosen is None else await insights.arecord(chosen)
    if lineage is not None and lineage.record.asset != asset.name:
        raise HTTPException(404, f"record {chosen} is not a materialization of {asset.name!r}")
    logs = await insights.alogs([r.id for r in records] + ([] if chosen is None else [chosen]))
    return {
        "asset": asset.name,
        "depends_on": list(asset.depends_on),
        "dependents": insights.graph.dependents(asset.name),
        "partitioned": asset.partitions is not None,
        "partition": asset.serialize_partition(partition),
        "records": [{**_record(r), "logs": logs.get(r.id)} for r in records],
        "lineage": _lineage(lineage),
        "logs": None if chosen is None else logs.get(chosen),
    }


async def load_run(request: Request) -> dict[str, Any]:
    """A run's progress and its records."""
    insights = dashboard(request).insights
    run_id = request.path_params["run_id"]
    progress = await insights.arun_progress(run_id)
    records = await insights.ahistory(run_id=run_id, limit=RUN_ROWS)
    percent = 100 if progress.total == 0 else progress.finished * 100 // progress.total
    return {
        "run_id": run_id,
        "counts": progress.counts,
        "total": progress.total,
        "finished": progress.finished,
        "failed": progress.failed,
        "cancelled": progress.cancelled,
        "done": progress.done,
        "percent": percent,
        "records": [_record(r) for r in records],
    }
