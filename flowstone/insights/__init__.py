"""The read layer: what front ends (the CLI, the dashboard, metrics) show, read through
one API instead of SQL of their own. Sync and async twins, as everywhere in FlowStone.

    insights = Insights(fs)
    insights.overview()                      # queues, states and nodes, the leader
    insights.throughput(minutes=15)          # jobs finished per minute
    insights.cron()                          # cron entries: next tick, last firing
    insights.jobs(state="discarded")         # a page, newest first; .next_cursor pages on
    insights.job(42).progress_report         # a job in full: errors, recorded result, progress
    insights.workflow(workflow_id)           # a workflow's jobs, dependencies, states
    insights.batch(batch_id)                 # a batch's counts per state and its callback
    insights.assets()                        # per asset: partitions fresh, stale, missing, …
    insights.partitions("daily", start=..., end=...)   # a partition status strip
    insights.history("daily", "2025-01-15")  # a partition's records, newest first
    insights.logs([record.id])               # what they printed and logged, by id
    for progress in insights.watch_run(run_id, timeout=60): ...

Reads stay cheap on tables of millions of rows: counts come from the partial indexes
(exact up to `SAMPLE_CAP`) or the planner's estimates, pages from keyset paging.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol

import psycopg

from flowstone.assets.definitions import AssetHost, AssetRegistry, registry_of
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import Materialization, history_plan, logs_plan
from flowstone.errors import ValidationError
from flowstone.insights.assets import (
    CANCELLED,
    FAILED,
    FRESH,
    MISSING,
    OVERDUE,
    QUEUED,
    RUNNING,
    STALE,
    STATUSES,
    AssetOverview,
    CheckRecord,
    Lineage,
    PartitionStatus,
    RunProgress,
    assets_plan,
    describe_partitions,
    lineage_of_plan,
    partitions_plan,
    progress_plan,
    record_lineage_plan,
)
from flowstone.insights.queues import (
    SAMPLE_CAP,
    ClusterOverview,
    CronStatus,
    JobPage,
    NodeInfo,
    QueueOverview,
    Throughput,
    cron_plan,
    jobs_plan,
    overview_plan,
    throughput_plan,
)
from flowstone.queue.job import Job, JobState
from flowstone.queue.manage import JobFilter, get_plan
from flowstone.queue.plan import Plan
from flowstone.queue.plugins.cron import CronEntry
from flowstone.queue.workflow import BatchState, WorkflowJob, WorkflowState, workflow_plan

RECHECK_SECONDS = 5.0
"""Longest wait on notifications alone while watching a run: a record its job left
unfinished without the database settling it (a job removed by hand) notifies nothing, so
the run is re-counted this often."""

__all__ = [
    "CANCELLED",
    "FAILED",
    "FRESH",
    "MISSING",
    "OVERDUE",
    "QUEUED",
    "RUNNING",
    "SAMPLE_CAP",
    "STALE",
    "STATUSES",
    "AssetOverview",
    "BatchState",
    "CheckRecord",
    "ClusterOverview",
    "CronStatus",
    "Insights",
    "JobFilter",
    "JobPage",
    "Lineage",
    "NodeInfo",
    "PartitionStatus",
    "QueueOverview",
    "RunProgress",
    "Throughput",
    "WorkflowJob",
    "WorkflowState",
    "describe_partitions",
]


class Source(AssetHost, Protocol):
    """What `Insights` reads: an instance (a `FlowStone`) — its database, its asset graph
    and the cron entries its nodes run."""

    def all_cron_entries(self) -> list[CronEntry]:
        """The cron entries a node of the instance runs."""
        ...


class Insights:
    """Reads of one FlowStone instance (and its asset graph: `assets`, else the
    instance's) for front ends."""

    def __init__(self, fs: Source, assets: AssetRegistry | None = None) -> None:
        self.source = fs
        self.database = fs.database
        self.graph = assets if assets is not None else registry_of(fs)
        self.materializations = self.database.statements.of(MaterializationQueries)

    @property
    def _recheck(self) -> float:
        """Longest wait on notifications while watching a run (the poll interval where
        none can come: `Database.poll_notices`)."""
        return min(RECHECK_SECONDS, self.database.poll_notices or RECHECK_SECONDS)

    # -- queues and jobs -------------------------------------------------------------------

    def overview(self) -> ClusterOverview:
        """Every queue's counts per state and how alive nodes run it; nodes; the leader.
        Counts above `SAMPLE_CAP` are the planner's estimates (`estimated` names those states)."""
        return self.database.execute(self._overview_plan(), atomic=False)

    async def aoverview(self) -> ClusterOverview:
        """Async twin of `overview`."""
        return await self.database.aexecute(self._overview_plan(), atomic=False)

    def _overview_plan(self) -> Plan[ClusterOverview]:
        statements, settings = self.database.statements, self.database.settings
        return overview_plan(statements.jobs, statements.nodes, settings.node_expiry, settings.queues)

    def throughput(self, minutes: int = 15) -> list[Throughput]:
        """Jobs completed and discarded per minute over the last `minutes` (oldest first)."""
        return self.database.execute(throughput_plan(self.database.statements.jobs, minutes), atomic=False)

    async def athroughput(self, minutes: int = 15) -> list[Throughput]:
        """Async twin of `throughput`."""
        return await self.database.aexecute(
            throughput_plan(self.database.statements.jobs, minutes), atomic=False
        )

    def cron_entries(self) -> list[CronEntry]:
        """The cron entries a node of this instance runs: workers' `cron`, `fs.schedule` and
        the entries of higher layers (asset schedules)."""
        return self.source.all_cron_entries()

    def cron(self) -> list[CronStatus]:
        """Every cron entry with its next tick and its last firing (the job it inserted)."""
        return self.database.execute(
            cron_plan(self.database.statements.jobs, self.database.statements.nodes, self.cron_entries())
        )

    async def acron(self) -> list[CronStatus]:
        """Async twin of `cron`."""
        return await self.database.aexecute(
            cron_plan(self.database.statements.jobs, self.database.statements.nodes, self.cron_entries())
        )

    def jobs(
        self,
        *,
        queue: str | None = None,
        state: str | JobState | None = None,
        worker: str | None = None,
        tag: str | None = None,
        args: dict[str, Any] | None = None,
        cursor: int | None = None,
        limit: int = 50,
    ) -> JobPage:
        """A page of jobs, newest first; pass the page's `next_cursor` for the next one."""
        where = JobFilter(queue, state, worker, tag, args, cursor=cursor, limit=limit)
        return self.database.execute(jobs_plan(self.database.statements.jobs, where))

    async def ajobs(
        self,
        *,
        queue: str | None = None,
        state: str | JobState | None = None,
        worker: str | None = None,
        tag: str | None = None,
        args: dict[str, Any] | None = None,
        cursor: int | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Async twin of `jobs`."""
        where = JobFilter(queue, state, worker, tag, args, cursor=cursor, limit=limit)
        return await self.database.aexecute(jobs_plan(self.database.statements.jobs, where))

    def job(self, job_id: int) -> Job | None:
        """One job in full (args, meta, every error with its traceback)."""
        return self.database.execute(get_plan(self.database.statements.jobs, job_id))

    async def ajob(self, job_id: int) -> Job | None:
        """Async twin of `job`."""
        return await self.database.aexecute(get_plan(self.database.statements.jobs, job_id))

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        """A workflow's jobs (name, dependencies, how many it still waits on, the job with
        its progress and result) and their counts per state; None when it has no jobs."""
        return self.database.execute(workflow_plan(self.database.statements.jobs, workflow_id))

    async def aworkflow(self, workflow_id: str) -> WorkflowState | None:
        """Async twin of `workflow`."""
        return await self.database.aexecute(workflow_plan(self.database.statements.jobs, workflow_id))

    def batch(self, batch_id: str) -> BatchState | None:
        """A batch's counts per state (its callback aside) and its callback job."""
        state = self.workflow(batch_id)
        return None if state is None else state.batch

    async def abatch(self, batch_id: str) -> BatchState | None:
        """Async twin of `batch`."""
        state = await self.aworkflow(batch_id)
        return None if state is None else state.batch

    # -- assets ------------------------------------------------------------------------------

    def assets(self) -> list[AssetOverview]:
        """Every asset in dependency order with how many of its existing partitions are in
        each status of `STATUSES` (fresh, stale, missing, queued, running, failed,
        cancelled): a read of every recorded partition."""
        return self.database.execute(assets_plan(self.materializations, self.graph))

    async def aassets(self) -> list[AssetOverview]:
        """Async twin of `assets`."""
        return await self.database.aexecute(assets_plan(self.materializations, self.graph))

    def partitions(
        self, asset: str, partitions: Sequence[Any] | None = None, *, start: Any = None, end: Any = None
    ) -> list[PartitionStatus]:
        """The status of each partition (given, start..end, or every one that exists), one
        of `STATUSES`, with the reason."""
        target = self.graph.require(asset)
        return self.database.execute(
            partitions_plan(self.materializations, self.graph, target, partitions, start, end)
        )

    async def apartitions(
        self, asset: str, partitions: Sequence[Any] | None = None, *, start: Any = None, end: Any = None
    ) -> list[PartitionStatus]:
        """Async twin of `partitions`."""
        target = self.graph.require(asset)
        return await self.database.aexecute(
            partitions_plan(self.materializations, self.graph, target, partitions, start, end)
        )

    def lineage(self, asset: str, partition: Any = None) -> Lineage | None:
        """The latest record of a partition, what it read and what read it (for a skip:
        those of the success it stands for), and its checks' results."""
        target = self.graph.require(asset)
        return self.database.execute(
            lineage_of_plan(self.materializations, target.name, target.serialize_partition(partition))
        )

    async def alineage(self, asset: str, partition: Any = None) -> Lineage | None:
        """Async twin of `lineage`."""
        target = self.graph.require(asset)
        plan = lineage_of_plan(self.materializations, target.name, target.serialize_partition(partition))
        return await self.database.aexecute(plan)

    def history(
        self, asset: str | None = None, partition: Any = None, *, run_id: str | None = None, limit: int = 50
    ) -> list[Materialization]:
        """Records newest first: of a partition (every record of an unpartitioned asset),
        of a run, or both."""
        return self.database.execute(self._history_plan(asset, partition, run_id, limit))

    async def ahistory(
        self, asset: str | None = None, partition: Any = None, *, run_id: str | None = None, limit: int = 50
    ) -> list[Materialization]:
        """Async twin of `history`."""
        return await self.database.aexecute(self._history_plan(asset, partition, run_id, limit))

    def _history_plan(
        self, asset: str | None, partition: Any, run_id: str | None, limit: int
    ) -> Plan[list[Materialization]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValidationError(f"limit must be an integer from 1 to 1000; got {limit!r}")
        if asset is None and run_id is None:
            raise ValidationError("history needs an asset or a run_id")
        target = None if asset is None else self.graph.require(asset)
        key = None if target is None else target.serialize_partition(partition)
        return history_plan(
            self.materializations, None if target is None else target.name, key, run_id, limit
        )

    def logs(self, record_ids: Sequence[int]) -> dict[int, str]:
        """The compute logs of these records by id (what each printed and logged; records
        without any are left out)."""
        return self.database.execute(logs_plan(self.materializations, record_ids))

    async def alogs(self, record_ids: Sequence[int]) -> dict[int, str]:
        """Async twin of `logs`."""
        return await self.database.aexecute(logs_plan(self.materializations, record_ids))

    def record(self, record_id: int) -> Lineage | None:
        """One record with what it read and what read it (None when there is none)."""
        return self.database.execute(record_lineage_plan(self.materializations, record_id))

    async def arecord(self, record_id: int) -> Lineage | None:
        """Async twin of `record`."""
        return await self.database.aexecute(record_lineage_plan(self.materializations, record_id))

    def run_progress(self, run_id: str) -> RunProgress:
        """How many of a run's materializations are pending, running, finished (and how:
        success, skipped, failed, cancelled)."""
        return self.database.execute(progress_plan(self.materializations, run_id))

    async def arun_progress(self, run_id: str) -> RunProgress:
        """Async twin of `run_progress`."""
        return await self.database.aexecute(progress_plan(self.materializations, run_id))

    def watch_run(self, run_id: str, timeout: float) -> Iterator[RunProgress]:
        """The run's progress now and after each of its records finishes, until it is done
        or `timeout` seconds passed (woken by notifications, not polling)."""
        deadline = time.monotonic() + timeout
        with self.database.connect(direct=True, autocommit=True) as conn:
            if self.database.sessions:
                conn.execute(self.materializations.listen)
            while True:
                progress = self.database.execute(progress_plan(self.materializations, run_id), conn)
                yield progress
                remaining = deadline - time.monotonic()
                if progress.done or remaining <= 0:
                    return
                _next_notice(conn, run_id, min(remaining, self._recheck))

    async def awatch_run(self, run_id: str, timeout: float) -> AsyncIterator[RunProgress]:
        """Async twin of `watch_run`."""
        deadline = time.monotonic() + timeout
        async with await self.database.aconnect(direct=True, autocommit=True) as conn:
            if self.database.sessions:
                await conn.execute(self.materializations.listen)
            while True:
                progress = await self.database.aexecute(progress_plan(self.materializations, run_id), conn)
                yield progress
                remaining = deadline - time.monotonic()
                if progress.done or remaining <= 0:
                    return
                await _anext_notice(conn, run_id, min(remaining, self._recheck))


def _about(payload: str, run_id: str) -> bool:
    return bool(json.loads(payload).get("run_id") == run_id)


def _next_notice(conn: psycopg.Connection[Any], run_id: str, timeout: float) -> None:
    """Return when a record of `run_id` finished (or `timeout` passed), consuming the
    notifications already queued so that one re-count covers them all."""
    for notify in conn.notifies(timeout=timeout):
        if _about(notify.payload, run_id):
            break
    for _ in conn.notifies(timeout=0):
        pass


async def _anext_notice(conn: psycopg.AsyncConnection[Any], run_id: str, timeout: float) -> None:
    """Async twin of `_next_notice`."""
    async for notify in conn.notifies(timeout=timeout):
        if _about(notify.payload, run_id):
            break
    async for _ in conn.notifies(timeout=0):
        pass
