"""The app the asset CLI tests load with `--app cli_assets_app:app`, in-process and in
real `flowstone worker` processes: cli_orders → cli_revenue, daily, in Postgres, and
cli_flaky, which fails on odd days (once: max_attempts=1), and cli_retried, which fails
there too but is retried (3 attempts, 30 s of backoff first); cli_regional is the day's
orders per region (date x region).

`app` is a factory that registers the assets when they are missing, because the asset
tests clear the registry between tests while this module stays imported.
"""

import os
from typing import Any

from flowstone import Asset, Context, DailyPartitions, FlowStone, MultiPartitions, StaticPartitions
from flowstone.assets import default_assets

DAYS = DailyPartitions("2025-01-01")


def orders(ctx: Context, deps: dict[str, Any]) -> list[dict[str, int]]:
    """Two orders a day, worth the day of the month."""
    return [{"amount": ctx.partition.day}, {"amount": ctx.partition.day}]


def revenue(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """The day's total."""
    return {"total": sum(order["amount"] for order in deps["cli_orders"])}


def flaky(ctx: Context, deps: dict[str, Any]) -> int:
    """Fails on odd days."""
    if ctx.partition.day % 2:
        raise RuntimeError(f"odd day {ctx.partition_key}")
    return ctx.partition.day


ASSETS = [
    Asset(name="cli_orders", execute_fn=orders, io_manager="postgres", partitions=DAYS),
    Asset(
        name="cli_revenue",
        depends_on=("cli_orders",),
        execute_fn=revenue,
        io_manager="postgres",
        partitions=DAYS,
    ),
    Asset(name="cli_flaky", execute_fn=flaky, io_manager="postgres", partitions=DAYS, max_attempts=1),
    Asset(name="cli_retried", execute_fn=flaky, partitions=DAYS),
    Asset(
        name="cli_regional",
        depends_on=("cli_orders",),
        execute_fn=revenue,
        io_manager="postgres",
        partitions=MultiPartitions({"date": DAYS, "region": StaticPartitions(["eu", "us"])}),
    ),
]


def register() -> None:
    """Register the assets that are missing from the default registry."""
    missing = [a for a in ASSETS if a.name not in default_assets]
    if missing:
        default_assets.register_all(missing)


def app() -> FlowStone:
    """A FlowStone on FLOWSTONE_DATABASE_URL (or --database-url), with the assets registered."""
    register()
    return FlowStone(os.environ.get("FLOWSTONE_DATABASE_URL"))
