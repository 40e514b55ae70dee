"""The `memory` IO manager: values in a dict of this process (tests, one-process scripts).

Only the process that computed a value holds it: a worker process reading an upstream
computed by another (or before a restart) finds nothing, and says so with the fix."""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

from flowstone.assets.io.base import IOManager, io_error

if TYPE_CHECKING:
    from flowstone.assets.context import Context


class MemoryIOManager(IOManager):
    """Values in a dict of this process (copied in and out, so callers cannot alias them)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def load(self, ctx: Context) -> Any:
        with self._lock:
            if (ctx.asset, ctx.partition_key) not in self._values:
                raise io_error(ctx, "nothing stored in memory", retryable=False)
            return copy.deepcopy(self._values[ctx.asset, ctx.partition_key])

    def store(self, ctx: Context, value: Any) -> None:
        try:
            stored = copy.deepcopy(value)
        except Exception as error:
            raise io_error(ctx, f"value cannot be copied: {error}", retryable=False) from error
        with self._lock:
            self._values[ctx.asset, ctx.partition_key] = stored

    def exists(self, ctx: Context) -> bool:
        with self._lock:
            return (ctx.asset, ctx.partition_key) in self._values

    def delete(self, ctx: Context) -> None:
        with self._lock:
            self._values.pop((ctx.asset, ctx.partition_key), None)

    def not_found(self, ctx: Context) -> str:
        return (
            f"upstream {ctx.asset!r} (partition {ctx.partition_key!r}) is stored by the memory IO manager, "
            "which keeps a value only in the process that computed it, and this process does not hold "
            f'it: give {ctx.asset!r} io_manager="postgres" (the default) or "filesystem" so that every '
            "worker process reads it"
        )

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()
