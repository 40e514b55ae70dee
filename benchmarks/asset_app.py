"""The asset benchmarks' app: no-op assets on the memory IO manager, run by one worker.

A 3-asset chain (`bf_a → bf_b → bf_c`) partitioned by day for the backfill workload, and
a 10-asset linear chain (`chain_0 → … → chain_9`) for the chain-latency workload.
"""

from __future__ import annotations

import os
from typing import Any

from flowstone import Asset, Context, DailyPartitions, FlowStone, asset

DAYS = DailyPartitions(start="2000-01-01")
CHAIN_LENGTH = 10

app = FlowStone(os.environ.get("FLOWSTONE_DATABASE_URL"))


def noop(ctx: Context, deps: dict[str, Any]) -> int:
    """A no-op asset: returns a small value for its dependents to load."""
    return len(deps)


def _define(name: str, depends_on: list[str], partitions: DailyPartitions | None) -> Asset:
    return asset(name=name, depends_on=depends_on, io_manager="memory", partitions=partitions)(noop)


BACKFILL = [_define("bf_a", [], DAYS), _define("bf_b", ["bf_a"], DAYS), _define("bf_c", ["bf_b"], DAYS)]
CHAIN = [_define(f"chain_{i}", [f"chain_{i - 1}"] if i else [], None) for i in range(CHAIN_LENGTH)]
