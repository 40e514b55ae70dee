"""IO managers by name: assets name theirs, and the name is checked when they are defined."""

from __future__ import annotations

from flowstone.assets.io.base import IOManager
from flowstone.errors import ValidationTypeError


class IOManagerRegistry:
    """IO managers by name; assets name theirs and the name is checked at definition."""

    def __init__(self) -> None:
        self._managers: dict[str, IOManager] = {}

    def register(self, name: str, manager: IOManager) -> IOManager:
        """Add (or replace) the manager called `name`."""
        if not isinstance(manager, IOManager):
            raise ValidationTypeError(f"an IO manager must subclass IOManager; got {type(manager).__name__}")
        self._managers[name] = manager
        return manager

    def get(self, name: str) -> IOManager:
        """The manager called `name` (KeyError naming the registered ones otherwise)."""
        try:
            return self._managers[name]
        except KeyError:
            raise KeyError(f"IO manager {name!r} is not registered ({', '.join(self.names())})") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._managers)

    def __contains__(self, name: object) -> bool:
        return name in self._managers


def builtin_io_managers() -> IOManagerRegistry:
    """A registry holding the built-in managers: `memory`, `filesystem` and `parquet` (under
    FLOWSTONE_ASSETS_DIR or ./flowstone_assets, read when they first store) and `postgres`."""
    from flowstone.assets.io.filesystem import FilesystemIOManager
    from flowstone.assets.io.memory import MemoryIOManager
    from flowstone.assets.io.parquet import ParquetIOManager
    from flowstone.assets.io.postgres import PostgresIOManager

    registry = IOManagerRegistry()
    registry.register("memory", MemoryIOManager())
    registry.register("filesystem", FilesystemIOManager())
    registry.register("postgres", PostgresIOManager())
    registry.register("parquet", ParquetIOManager())
    return registry
