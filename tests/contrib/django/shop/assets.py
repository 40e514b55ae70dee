"""The shop's assets, found by `flowstone.contrib.django` when Django starts."""

from typing import Any

from flowstone import Context, asset
from shop.graph import SHOP_ASSETS


@asset(registry=SHOP_ASSETS, io_manager="postgres")
def shop_order_count(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """How many orders the shop has."""
    from shop.models import Order

    return {"orders": Order.objects.count()}
