"""IO managers: the interface (`base`), one module per kind of storage, and the registry.

Built in: `postgres` (the default: a table per asset, keyed by partition, JSON values, in
the FlowStone database, so every worker process reads them), `filesystem` (a directory
per asset, a file per partition; JSON unless pickle is asked for), `memory` (this
process only; for tests and one-process scripts) and `parquet` (pandas and polars
DataFrames, pyarrow Tables; a directory or an fsspec URL). Add your own with
`register_io_manager`.
"""

from flowstone.assets.io.base import IOManager, io_error, to_json
from flowstone.assets.io.filesystem import FilesystemIOManager
from flowstone.assets.io.memory import MemoryIOManager
from flowstone.assets.io.parquet import ParquetIOManager
from flowstone.assets.io.postgres import PostgresIOManager
from flowstone.assets.io.registry import IOManagerRegistry, builtin_io_managers

default_io_managers = builtin_io_managers()
"""The managers assets find by name unless their registry was given others."""


def register_io_manager(name: str, manager: IOManager) -> IOManager:
    """Make `manager` available to assets as `io_manager=name`."""
    return default_io_managers.register(name, manager)


__all__ = [
    "FilesystemIOManager",
    "IOManager",
    "IOManagerRegistry",
    "MemoryIOManager",
    "ParquetIOManager",
    "PostgresIOManager",
    "builtin_io_managers",
    "default_io_managers",
    "io_error",
    "register_io_manager",
    "to_json",
]
