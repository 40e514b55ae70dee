"""FlowStone: a Postgres-native job queue that mirrors Oban, with asset materialization on top."""

from flowstone.queue import (
    Cancel,
    Discard,
    FlowStone,
    Job,
    JobState,
    NewJob,
    Snooze,
    Unique,
    Worker,
    WorkerRegistry,
    configure,
    default_registry,
    get_default,
)

__version__ = "0.1.0"

__all__ = [
    "Cancel",
    "Discard",
    "FlowStone",
    "Job",
    "JobState",
    "NewJob",
    "Snooze",
    "Unique",
    "Worker",
    "WorkerRegistry",
    "__version__",
    "configure",
    "default_registry",
    "get_default",
]
