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
            "Asset",
            "AssetRegistry",
            "AssetWorker",
            "Context",
            "DailyPartitions",
            "HourlyPartitions",
            "IOManager",
            "MaterializationRecords",
            "Materializer",
            "StaticPartitions",
            "Store",
            "abackfill",
            "amaterialize",
            "amaterialize_all",
            "asset",
            "backfill",
            "materialize",
            "materialize_all",
            "register_io_manager",
        ],
        "flowstone.assets",
    ),
    **dict.fromkeys(
        ["AwaitTimeoutError", "FlowStoneError", "JobFailedError", "ValidationError"], "flowstone.errors"
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
        Asset as Asset,
    )
    from flowstone.assets import (
        AssetRegistry as AssetRegistry,
    )
    from flowstone.assets import (
        AssetWorker as AssetWorker,
    )
    from flowstone.assets import (
        Context as Context,
    )
    from flowstone.assets import (
        DailyPartitions as DailyPartitions,
    )
    from flowstone.assets import (
        HourlyPartitions as HourlyPartitions,
    )
    from flowstone.assets import (
        IOManager as IOManager,
    )
    from flowstone.assets import (
        MaterializationRecords as MaterializationRecords,
    )
    from flowstone.assets import (
        Materializer as Materializer,
    )
    from flowstone.assets import (
        StaticPartitions as StaticPartitions,
    )
    from flowstone.assets import (
        Store as Store,
    )
    from flowstone.assets import (
        abackfill as abackfill,
    )
    from flowstone.assets import (
        amaterialize as amaterialize,
    )
    from flowstone.assets import (
        amaterialize_all as amaterialize_all,
    )
    from flowstone.assets import (
        asset as asset,
    )
    from flowstone.assets import (
        backfill as backfill,
    )
    from flowstone.assets import (
        materialize as materialize,
    )
    from flowstone.assets import (
        materialize_all as materialize_all,
    )
    from flowstone.assets import (
        register_io_manager as register_io_manager,
    )
    from flowstone.errors import AwaitTimeoutError as AwaitTimeoutError
    from flowstone.errors import FlowStoneError as FlowStoneError
    from flowstone.errors import JobFailedError as JobFailedError
    from flowstone.errors import ValidationError as ValidationError
    from flowstone.queue import Batch as Batch
    from flowstone.queue import (
        Cancel as Cancel,
    )
    from flowstone.queue import (
        Discard as Discard,
    )
    from flowstone.queue import (
        FlowStone as FlowStone,
    )
    from flowstone.queue import (
        Job as Job,
    )
    from flowstone.queue import (
        JobState as JobState,
    )
    from flowstone.queue import (
        NewJob as NewJob,
    )
    from flowstone.queue import (
        QueueConfig as QueueConfig,
    )
    from flowstone.queue import (
        Snooze as Snooze,
    )
    from flowstone.queue import (
        Unique as Unique,
    )
    from flowstone.queue import (
        Worker as Worker,
    )
    from flowstone.queue import (
        WorkerRegistry as WorkerRegistry,
    )
    from flowstone.queue import Workflow as Workflow
    from flowstone.queue import WorkflowState as WorkflowState
    from flowstone.queue import (
        configure as configure,
    )
    from flowstone.queue import (
        default_registry as default_registry,
    )
    from flowstone.queue import (
        get_default as get_default,
    )
    from flowstone.queue.telemetry import attach as attach
    from flowstone.queue.telemetry import detach as detach
