"""The IO manager interface: where an asset's data lives (load / store / exists / delete).

A store either writes the whole value or raises `FlowStoneError(type="io_error")` having
written nothing. A new kind of storage (S3, Parquet, …) is a subclass in a module of its
own beside `memory`, `filesystem` and `postgres`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowstone.errors import FlowStoneError
from flowstone.queue.validation import check_json

if TYPE_CHECKING:
    from flowstone.assets.context import Context


def io_error(ctx: Context, message: str, *, retryable: bool = True) -> FlowStoneError:
    """An io_error locating the asset and partition."""
    return FlowStoneError(
        "io_error",
        f"asset {ctx.asset!r} partition {ctx.partition_key!r}: {message}",
        retryable=retryable,
        context={"asset": ctx.asset, "partition": ctx.partition_key},
    )


def to_json(ctx: Context, value: Any) -> str:
    """`value` as JSON text, or a non-retryable io_error saying why it cannot be stored and
    what to do instead."""
    try:
        check_json(value, "value")
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise io_error(
            ctx,
            f"value cannot be stored as JSON ({error}): return JSON data (dicts, lists, strings, numbers, "
            'booleans, None), or give the asset io_manager="memory" (this process only) or a '
            'pickling "filesystem" manager (register_io_manager(name, FilesystemIOManager(format="pickle")))',
            retryable=False,
        ) from error


class IOManager(ABC):
    """Stores and loads one value per asset and partition (`ctx.asset`, `ctx.partition_key`)."""

    @abstractmethod
    def load(self, ctx: Context) -> Any:
        """The stored value; io_error when there is none."""

    @abstractmethod
    def store(self, ctx: Context, value: Any) -> Mapping[str, Any] | None:
        """Store `value` entirely or not at all; may return metadata for the record."""

    @abstractmethod
    def exists(self, ctx: Context) -> bool:
        """Whether a value is stored."""

    @abstractmethod
    def delete(self, ctx: Context) -> None:
        """Remove the stored value, if any."""

    def load_many(self, contexts: Sequence[Context], as_type: type | None = None) -> Any:
        """What a dependent reading several partitions (a roll-up, a window) gets: here a
        dict of each partition's value by its key, in order; a manager of tables may give
        them concatenated (`parquet`). `as_type`: the type the dependent asked for
        (`Dep(..., as_type=)`; each context carries it too), for when there is none."""
        return {ctx.partition_key: self.load(ctx) for ctx in contexts}

    def check_asset(self, name: str) -> None:  # noqa: B027 - optional hook, accepts by default
        """Reject, when an asset is defined, a name this manager cannot store under."""

    def not_found(self, ctx: Context) -> str:
        """What to say when a value the records say was stored (an upstream's success) is
        not there."""
        return f"upstream {ctx.asset!r} has no data for partition {ctx.partition_key!r}"

    def check_as_type(self, as_type: type) -> None:
        """Reject, when a dependent is defined, a type it asks to load this manager's
        values as (`Dep(..., as_type=)`) that the manager cannot give (ValueError)."""
        raise ValueError(f"the {type(self).__name__} loads values as stored, not as {as_type.__name__}")
