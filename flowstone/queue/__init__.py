"""The job queue: an Oban mirror on one Postgres table (never imports flowstone.assets)."""

from flowstone.queue.config import LimitPartition, QueueConfig, RateLimit
from flowstone.queue.database import Database
from flowstone.queue.instance import FlowStone, configure, get_default, set_default
from flowstone.queue.job import Job, JobState
from flowstone.queue.results import Cancel, Discard, Snooze
from flowstone.queue.unique import Unique
from flowstone.queue.worker import NewJob, Worker, WorkerRegistry, default_registry
from flowstone.queue.workflow import Batch, BatchState, Workflow, WorkflowJob, WorkflowState

__all__ = [
    "Batch",
    "BatchState",
    "Cancel",
    "Database",
    "Discard",
    "FlowStone",
    "Job",
    "JobState",
    "LimitPartition",
    "NewJob",
    "QueueConfig",
    "RateLimit",
    "Snooze",
    "Unique",
    "Worker",
    "WorkerRegistry",
    "Workflow",
    "WorkflowJob",
    "WorkflowState",
    "configure",
    "default_registry",
    "get_default",
    "set_default",
]
