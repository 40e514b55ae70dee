"""Assets on top of the queue: definitions, partitions and partition mappings, IO
managers, the materializer, materialization records and lineage, data versions and
staleness, checks, schedules and eager automation, the AssetWorker and the public API."""

from flowstone.assets.api import (
    BackfillResult,
    MaterializeAllResult,
    MaterializeResult,
    aadd_partitions,
    abackfill,
    add_partitions,
    adelete_partitions,
    alist_partitions,
    amaterialize,
    amaterialize_all,
    backfill,
    delete_partitions,
    list_partitions,
    materialize,
    materialize_all,
)
from flowstone.assets.checks import AssetCheck, CheckResult, asset_check
from flowstone.assets.context import Context
from flowstone.assets.definitions import Asset, AssetRegistry, asset, default_assets, registry_of
from flowstone.assets.io import (
    FilesystemIOManager,
    IOManager,
    IOManagerRegistry,
    MemoryIOManager,
    ParquetIOManager,
    PostgresIOManager,
    default_io_managers,
    register_io_manager,
)
from flowstone.assets.mappings import (
    AllPartitions,
    Dep,
    Identity,
    LatestPartition,
    PartitionMapping,
    RollUp,
    Window,
)
from flowstone.assets.materializer import Materializer, Readiness
from flowstone.assets.observed import source_asset
from flowstone.assets.partitions import (
    DailyPartitions,
    DynamicPartitions,
    HourlyPartitions,
    MonthlyPartitions,
    PartitionsDefinition,
    StaticPartitions,
    TimeWindowPartitions,
    WeeklyPartitions,
)
from flowstone.assets.records import Materialization, MaterializationRecords, Status
from flowstone.assets.versions import Output
from flowstone.assets.worker import AssetWorker

__all__ = [
    "AllPartitions",
    "Asset",
    "AssetCheck",
    "AssetRegistry",
    "AssetWorker",
    "BackfillResult",
    "CheckResult",
    "Context",
    "DailyPartitions",
    "Dep",
    "DynamicPartitions",
    "FilesystemIOManager",
    "HourlyPartitions",
    "IOManager",
    "IOManagerRegistry",
    "Identity",
    "LatestPartition",
    "Materialization",
    "MaterializationRecords",
    "MaterializeAllResult",
    "MaterializeResult",
    "Materializer",
    "MemoryIOManager",
    "MonthlyPartitions",
    "Output",
    "ParquetIOManager",
    "PartitionMapping",
    "PartitionsDefinition",
    "PostgresIOManager",
    "Readiness",
    "RollUp",
    "StaticPartitions",
    "Status",
    "TimeWindowPartitions",
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
    "default_assets",
    "default_io_managers",
    "delete_partitions",
    "list_partitions",
    "materialize",
    "materialize_all",
    "register_io_manager",
    "registry_of",
    "source_asset",
]
