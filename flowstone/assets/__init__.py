"""Assets on top of the queue (ADR-0006): definitions, partitions, IO managers, the
materializer, materialization records and lineage, the AssetWorker and the public API."""

from flowstone.assets.api import (
    BackfillResult,
    MaterializeAllResult,
    MaterializeResult,
    abackfill,
    amaterialize,
    amaterialize_all,
    backfill,
    materialize,
    materialize_all,
)
from flowstone.assets.definitions import Asset, AssetRegistry, asset, default_assets
from flowstone.assets.errors import FlowStoneError
from flowstone.assets.io_managers import (
    FilesystemIOManager,
    IOManager,
    IOManagerRegistry,
    MemoryIOManager,
    PostgresIOManager,
    default_io_managers,
    register_io_manager,
)
from flowstone.assets.materializer import Context, Materializer, Readiness
from flowstone.assets.partitions import (
    DailyPartitions,
    HourlyPartitions,
    PartitionsDefinition,
    StaticPartitions,
)
from flowstone.assets.store import Materialization, Status, Store
from flowstone.assets.worker import AssetWorker

__all__ = [
    "Asset",
    "AssetRegistry",
    "AssetWorker",
    "BackfillResult",
    "Context",
    "DailyPartitions",
    "FilesystemIOManager",
    "FlowStoneError",
    "HourlyPartitions",
    "IOManager",
    "IOManagerRegistry",
    "Materialization",
    "MaterializeAllResult",
    "MaterializeResult",
    "Materializer",
    "MemoryIOManager",
    "PartitionsDefinition",
    "PostgresIOManager",
    "Readiness",
    "StaticPartitions",
    "Status",
    "Store",
    "abackfill",
    "amaterialize",
    "amaterialize_all",
    "asset",
    "backfill",
    "default_assets",
    "default_io_managers",
    "materialize",
    "materialize_all",
    "register_io_manager",
]
