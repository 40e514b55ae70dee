"""FlowStone: a Postgres-native job queue that mirrors Oban, with asset materialization on top.

The names below are imported on first use, not with the package: `import flowstone` (and
the pytest plugin that pytest loads in every project FlowStone is installed into) stays
cheap, and starts no server, writes no file and leaves no thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        [
            "AllPartitions",
            "Asset",
            "AssetRegistry",
            "AssetWorker",
            "CheckResult",
            "Context",
            "DailyPartitions",
            "Dep",
            "DynamicPartitions",
            "HourlyPartitions",
            "IOManager",
            "Identity",
            "LatestPartition",
            "MaterializationRecords",
            "Materializer",
            "MonthlyPartitions",
            "Output",
            "RollUp",
            "StaticPartitions",
            "WeeklyPartitions",
            "Window",
            "aadd_partitions",
            "abackfill",
            "add_partitions",
            "adelete_partitions",
            "alist_partitions",
            "amaterialize",
            "amaterialize_all",
            "asset",
            "asset_check",
            "backfill",
            "delete_partitions",
            "list_partitions",
            "materialize",
            "materialize_all",
            "register_io_manager",
        ],
        "flowstone.assets",
    ),
    **dict.fromkeys(
        [
            "AwaitTimeoutError",
            "FlowStoneError",
            "JobFailedError",
            "ValidationError",
        ],
        "flowstone.errors",
    ),
    **dict.fromkeys(
        [
            "Batch",
            "Cancel",
            "Discard",
            "FlowStone",
            "Job",
            "JobState",
            "NewJob",
            "QueueConfig",
            "Snooze",
            "Unique",
            "Worker",
            "WorkerRegistry",
            "Workflow",
            "WorkflowState",
            "configure",
            "default_registry",
            "get_default",
        ],
        "flowstone.queue",
    ),
    **dict.fromkeys(["attach", "detach"], "flowstone.queue.telemetry"),
}

__all__ = sorted([*_EXPORTS, "__version__"])


__getattr__, __dir__ = lazy_exports(
    __name__, globals(), {name: (module, name) for name, module in _EXPORTS.items()}
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
        Output as Output,
        RollUp as RollUp,
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
