"""A small orders pipeline: raw orders (CSV) → cleaned orders → daily revenue, by day.

Every asset is partitioned by day and stored by the `postgres` IO manager (a table per
asset in the `flowstone_assets` schema), so the results can be read with plain SQL.
`flowstone worker --app pipeline:app --queues assets=4` runs it.
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from flowstone import Context, DailyPartitions, FlowStone, asset

RAW = Path(__file__).with_name("raw_orders.csv")
DAYS = DailyPartitions(start="2025-01-13", end="2025-01-17")

app = FlowStone()  # FLOWSTONE_DATABASE_URL, or the embedded PostgreSQL


@asset(io_manager="postgres", partitions=DAYS)
def raw_orders(ctx: Context, deps: dict[str, Any]) -> list[dict[str, str]]:
    """The day's rows of the CSV export, as they are."""
    day: date = ctx.partition
    with RAW.open(newline="") as export:
        return [row for row in csv.DictReader(export) if row["ordered_at"].startswith(day.isoformat())]


@asset(depends_on=["raw_orders"], io_manager="postgres", partitions=DAYS)
def cleaned_orders(ctx: Context, deps: dict[str, Any]) -> list[dict[str, Any]]:
    """Normalized orders; rows without a customer or with a negative amount are dropped."""
    cleaned = []
    for row in deps["raw_orders"]:
        customer, amount = row["customer"].strip().lower(), float(row["amount"])
        if customer and amount >= 0:
            currency = row["currency"].upper()
            cleaned.append({**row, "customer": customer, "amount": amount, "currency": currency})
    ctx.metadata["dropped"] = len(deps["raw_orders"]) - len(cleaned)
    return cleaned


@asset(depends_on=["cleaned_orders"], io_manager="postgres", partitions=DAYS)
def daily_revenue(ctx: Context, deps: dict[str, Any]) -> dict[str, Any]:
    """Paid revenue of the day, with the best customer."""
    paid = [order for order in deps["cleaned_orders"] if order["status"] == "paid"]
    by_customer = Counter[str]()
    for order in paid:
        by_customer[order["customer"]] += order["amount"]
    top = by_customer.most_common(1)
    return {
        "day": ctx.partition_key,
        "orders": len(paid),
        "revenue_eur": round(sum(by_customer.values()), 2),
        "top_customer": top[0][0] if top else None,
    }
