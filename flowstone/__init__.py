"""FlowStone: a Postgres-native job queue that mirrors Oban, with asset materialization on top.

The names of `__all__` are imported on first use, not with the package: `import flowstone`
(and the pytest plugin that pytest loads in every project FlowStone is installed into) stays
cheap, and starts no server, writes no file and leaves no thread. `__all__` is the one list
of them (flowstone/_lazy.py); the imports under TYPE_CHECKING show type checkers the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone._lazy import lazy_exports

__version__ = "0.1.0"
"""FlowStone's version (what `flowstone --version` prints)."""

__all__ = [
    "AllPartitions",
    "Asset",
    "AssetRegistry",
    "AssetWorker",
    "AwaitTimeoutError",
    "Batch",
    "Cancel",
    "CheckResult",
    "Context",
    "DailyPartitions",
    "Dep",
    "Discard",
    "DynamicPartitions",
    "FlowStone",
    "FlowStoneError",
    "HourlyPartitions",
    "IOManager",
    "Identity",
    "Job",
    "JobFailedError",
    "JobState",
    "LatestPartition",
    "MaterializationRecords",
    "Materializer",
    "MonthlyPartitions",
    "MultiPartitions",
    "NewJob",
    "Output",
    "QueueConfig",
    "RollUp",
    "SharedDimension",
    "Snooze",
    "StaticPartitions",
    "Unique",
    "ValidationError",
    "WeeklyPartitions",
    "Window",
    "Worker",
    "WorkerRegistry",
    "Workflow",
    "WorkflowState",
    "__version__",
    "aadd_partitions",
    "abackfill",
    "add_partitions",
    "adelete_partitions",
    "alist_partitions",
    "amaterialize",
    "amaterialize_all",
    "asset",
    "asset_check",
    "attach",
    "backfill",
    "configure",
    "default_registry",
    "delete_partitions",
    "detach",
    "get_default",
    "list_partitions",
    "materialize",
    "materialize_all",
    "register_io_manager",
    "source_asset",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    __all__,
    homes=["flowstone.errors", "flowstone.queue", "flowstone.queue.telemetry", "flowstone.assets"],
)

if TYPE_CHECKING:
    from flowstone.assets import (
        AllPartitions as AllPartitions,
        Asset as Asset,
        AssetRegistry as AssetRegistry,
        AssetWorker as AssetWorker,
        CheckResult as CheckResult,
        Context as Context,
        DailyPartitions as DailyPartitions,
        Dep as Dep,
        DynamicPartitions as DynamicPartitions,
        HourlyPartitions as HourlyPartitions,
        Identity as Identity,
        IOManager as IOManager,
        LatestPartition as LatestPartition,
        MaterializationRecords as MaterializationRecords,
        Materializer as Materializer,
        MonthlyPartitions as MonthlyPartitions,
        MultiPartitions as MultiPartitions,
        Output as Output,
        RollUp as RollUp,
        SharedDimension as SharedDimension,
        StaticPartitions as StaticPartitions,
        WeeklyPartitions as WeeklyPartitions,
        Window as Window,
        aadd_partitions as aadd_partitions,
        abackfill as abackfill,
        add_partitions as add_partitions,
        adelete_partitions as adelete_partitions,
        alist_partitions as alist_partitions,
        amaterialize as amaterialize,
        amaterialize_all as amaterialize_all,
        asset as asset,
        asset_check as asset_check,
        backfill as backfill,
        delete_partitions as delete_partitions,
        list_partitions as list_partitions,
        materialize as materialize,
        materialize_all as materialize_all,
        register_io_manager as register_io_manager,
        source_asset as source_asset,
    )
    from flowstone.errors import (
        AwaitTimeoutError as AwaitTimeoutError,
        FlowStoneError as FlowStoneError,
        JobFailedError as JobFailedError,
        ValidationError as ValidationError,
    )
    from flowstone.queue import (
        Batch as Batch,
        Cancel as Cancel,
        Discard as Discard,
        FlowStone as FlowStone,
        Job as Job,
        JobState as JobState,
        NewJob as NewJob,
        QueueConfig as QueueConfig,
        Snooze as Snooze,
        Unique as Unique,
        Worker as Worker,
        WorkerRegistry as WorkerRegistry,
        Workflow as Workflow,
        WorkflowState as WorkflowState,
        configure as configure,
        default_registry as default_registry,
        get_default as get_default,
    )
    from flowstone.queue.telemetry import (
        attach as attach,
        detach as detach,
    )
