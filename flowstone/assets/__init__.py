"""Assets on top of the queue: definitions, partitions, IO managers, the materializer,
materialization records and lineage, the AssetWorker and the public API."""

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
from flowstone.assets.context import Context
from flowstone.assets.definitions import Asset, AssetRegistry, asset, default_assets, registry_of
from flowstone.assets.io import (
    FilesystemIOManager,
    IOManager,
    IOManagerRegistry,
    MemoryIOManager,
    PostgresIOManager,
    default_io_managers,
    register_io_manager,
)
from flowstone.assets.materializer import Materializer, Readiness
from flowstone.assets.partitions import (
    DailyPartitions,
    HourlyPartitions,
    PartitionsDefinition,
    StaticPartitions,
)
from flowstone.assets.records import Materialization, MaterializationRecords, Status, Store
from flowstone.assets.worker import AssetWorker

__all__ = [
    "Asset",
    "AssetRegistry",
    "AssetWorker",
    "BackfillResult",
    "Context",
    "DailyPartitions",
    "FilesystemIOManager",
    "HourlyPartitions",
    "IOManager",
    "IOManagerRegistry",
    "Materialization",
    "MaterializationRecords",
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
    "registry_of",
]
