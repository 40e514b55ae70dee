"""Observed source assets: data FlowStone does not produce (a table another system loads,
a file that lands daily), declared by how to tell that it changed.

    def orders(ctx: Context) -> str:
        return str(row_count("orders"))   # the version: changes when the data does

    source_asset(observe=orders, schedule="*/5 * * * *")   # the asset `orders`

`observe(ctx)` returns the data version now (a row count, a max timestamp, a file
hash). Each observation is an ordinary materialization of the asset on its schedule
(or when materialized by hand; never skipped as fresh): its record carries the observed version and stores
`{"data_version": version}` as its value. So the existing machinery does the rest:
dependents whose last success read another version are stale, and eager dependents are
queued — once — when an observation brings a new version; an unchanged one queues
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowstone.assets.context import Context
from flowstone.assets.definitions import Asset, AssetRegistry, default_assets
from flowstone.assets.partitions import PartitionsDefinition
from flowstone.assets.versions import Output
from flowstone.errors import FlowStoneError

Observe = Callable[[Context], Any]

DEFAULT_OBSERVE_SCHEDULE = "* * * * *"
"""How often a source is observed unless told: every minute."""


def source_asset(
    *,
    observe: Observe,
    name: str | None = None,
    schedule: str | None = DEFAULT_OBSERVE_SCHEDULE,
    schedule_timezone: str = "UTC",
    partitions: PartitionsDefinition | None = None,
    io_manager: str = "postgres",
    description: str | None = None,
    registry: AssetRegistry | None = None,
) -> Asset:
    """Define and register an observed source asset named `name` (default: `observe`'s
    name), observed on `schedule` (None: only when materialized)."""
    if not callable(observe):
        raise FlowStoneError(
            "validation_error", f"source_asset: observe must be a function of ctx; got {observe!r}"
        )

    def observation(ctx: Context, deps: dict[str, Any]) -> Output:
        version = observe(ctx)
        if version is None or version == "":
            raise FlowStoneError(
                "execution_error",
                f"observing source {ctx.asset!r} gave no data version: return a row count, a "
                f"timestamp or a hash",
                retryable=False,
            )
        return Output({"data_version": str(version)}, data_version=str(version))

    defined = Asset(
        name=name or str(getattr(observe, "__name__", "")),
        execute_fn=observation,
        io_manager=io_manager,
        partitions=partitions,
        description=description if description is not None else observe.__doc__,
        schedule=schedule,
        schedule_timezone=schedule_timezone,
        observed=True,
    )
    return (registry if registry is not None else default_assets).register(defined)
