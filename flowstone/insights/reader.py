"""`Insights`: the read layer's one API, what the CLI, the dashboard and the metrics show
(see the package's docstring). Sync and async twins, as everywhere in FlowStone; the
queue's own reads (a job, a workflow, the nodes) come from `QueueReads`, which the
`FlowStone` facade answers through too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol

from flowstone.assets.definitions import AssetHost, AssetRegistry, registry_of
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import Materialization, finish_notice_plan, history_plan, logs_plan
from flowstone.errors import ValidationError
from flowstone.insights.assets import (
    AssetOverview,
    Lineage,
    PartitionStatus,
    RunProgress,
    assets_plan,
    lineage_of_plan,
    partitions_plan,
    progress_plan,
    record_lineage_plan,
)
from flowstone.insights.queues import (
    ClusterOverview,
    CronStatus,
    JobPage,
    Throughput,
    cron_plan,
    jobs_plan,
    overview_plan,
    throughput_plan,
)
from flowstone.queue.job import JobState
from flowstone.queue.manage import JobFilter
from flowstone.queue.plan import Plan, Report, astream, stream
from flowstone.queue.plugins.cron import CronEntry
from flowstone.queue.reads import QueueReads


class Source(AssetHost, Protocol):
    """What `Insights` reads: an instance (a `FlowStone`) — its database, its asset graph
    and the cron entries its nodes run."""

    def all_cron_entries(self) -> list[CronEntry]:
        """The cron entries a node of the instance runs."""
        ...


class Insights(QueueReads):
    """Reads of one FlowStone instance (and its asset graph: `assets`, else the
    instance's) for front ends: the queue's (`job`, `workflow`, `batch`, `nodes`,
    `leader` from `QueueReads`) and the assets'."""

    def __init__(self, fs: Source, assets: AssetRegistry | None = None) -> None:
        super().__init__(fs.database)
        self.source = fs
        self.graph = assets if assets is not None else registry_of(fs)
        self.materializations = self.database.statements.of(MaterializationQueries)

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
        with self.database.connect(direct=True, autocommit=True) as conn:
            yield from stream(conn, self._watch_plan(run_id, timeout))

    async def awatch_run(self, run_id: str, timeout: float) -> AsyncIterator[RunProgress]:
        """Async twin of `watch_run`."""
        async with await self.database.aconnect(direct=True, autocommit=True) as conn:
            async for progress in astream(conn, self._watch_plan(run_id, timeout)):
                yield progress

    def _watch_plan(self, run_id: str, timeout: float) -> Plan[None]:
        """Report the run's progress, then again whenever one of its records finished (a
        notification about it, or at the latest after `RECHECK_SECONDS`)."""
        deadline = time.monotonic() + timeout
        if self.database.sessions:
            yield self.materializations.listen, {}
        while True:
            progress = yield from progress_plan(self.materializations, run_id)
            yield Report(progress)
            if progress.done or time.monotonic() >= deadline:
                return
            yield from finish_notice_plan("run_id", run_id, deadline, self.database.poll_notices)
