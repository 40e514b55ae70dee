"""`Extension`: how a higher layer plugs into the queue without the queue importing it —
the asset layer's `AssetRegistry` is one (its schedules are cron entries).

An instance's extension is the one given (`FlowStone(assets=...)`), else the default one a
higher layer named with `use_default` (the asset layer: the graph `@asset` fills)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from flowstone.queue.plugins.base import Plugin
from flowstone.queue.plugins.cron import CronEntry
from flowstone.queue.worker import WorkerRegistry


@runtime_checkable
class Extension(Protocol):
    """What an extension adds to every node of an instance: cron entries and plugins."""

    def cron_entries(self, workers: WorkerRegistry) -> Sequence[CronEntry]:
        """Entries a node's cron plugin inserts (read when a node is built), for jobs of
        `workers` (the instance's)."""
        ...

    def plugins(self) -> Sequence[Plugin]:
        """Plugins a node runs besides the built-in ones."""
        ...


_default: list[Extension] = []


def use_default(extension: Extension) -> None:
    """Make `extension` the one of instances given none (called by the layer defining it)."""
    _default[:] = [extension]


def extension_of(given: Extension | None) -> Extension | None:
    """`given`, else the default extension (None when no layer named one)."""
    if given is not None:
        return given
    return _default[0] if _default else None
