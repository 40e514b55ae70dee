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
    insights.nodes()                         # NodeInfo per node: queues, alive, leader
    insights.assets()                        # per asset: partitions fresh, stale, missing, …
    insights.partitions("daily", start=..., end=...)   # a partition status strip
    insights.history("daily", "2025-01-15")  # a partition's records, newest first
    insights.record(record_id).upstream      # what a record read (and .downstream)
    insights.logs([record.id])               # what they printed and logged, by id
    for progress in insights.watch_run(run_id, timeout=60): ...

`Insights` lives in `reader.py`, its plans in `queues.py` and `assets.py`; the queue's own
reads (job, workflow, batch, nodes, leader) come from `flowstone.queue.reads.QueueReads`,
which `FlowStone.get_job`/`workflow`/`nodes`/`leader` answer through too.

Reads stay cheap on tables of millions of rows: counts come from the partial indexes
(exact up to `SAMPLE_CAP`) or the planner's estimates, pages from keyset paging.
"""

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
    PartitionGrid,
    PartitionStatus,
    RunProgress,
    describe_partitions,
    partition_grid,
)
from flowstone.insights.queues import (
    SAMPLE_CAP,
    ClusterOverview,
    CronStatus,
    JobPage,
    QueueOverview,
    Throughput,
)
from flowstone.insights.reader import Insights
from flowstone.queue.control import NodeInfo
from flowstone.queue.manage import JobFilter
from flowstone.queue.workflow import BatchState, WorkflowJob, WorkflowState

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
    "PartitionGrid",
    "PartitionStatus",
    "QueueOverview",
    "RunProgress",
    "Throughput",
    "WorkflowJob",
    "WorkflowState",
    "describe_partitions",
    "partition_grid",
]
