"""Asset schedules: `@asset(schedule="0 1 * * *", schedule_timezone="Europe/Paris")`.

Each scheduled asset becomes a cron entry of the queue's cron plugin (one insert per
tick cluster-wide: the tick's job is unique forever). The entry's args are computed from
the tick: a time-partitioned asset materializes the partition that just closed (a daily
asset ticking at 01:00 in its time zone materializes yesterday there), an unpartitioned
one materializes itself. The job is an ordinary `AssetWorker` job: an asset with
dependencies is recomputed only if stale or missing (fresh partitions are skipped); a
source asset (no dependencies) is recomputed on every tick, since only running it tells
whether the outside data changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from flowstone.assets.definitions import Asset, registry_of
from flowstone.assets.partitions import TimeWindowPartitions
from flowstone.assets.worker import AssetWorker
from flowstone.queue.instance import FlowStone
from flowstone.queue.plugins.cron import CronEntry, cron_sources


def tick_args(asset: Asset, tick: datetime) -> Mapping[str, Any] | None:
    """The args of `asset`'s job for the tick at `tick` (UTC): the partition that just
    closed in the schedule's time zone; None before the first partition closed."""
    partition = None
    if isinstance(asset.partitions, TimeWindowPartitions):
        key = asset.partitions.last_closed(tick.astimezone(ZoneInfo(asset.schedule_timezone)))
        if key is None:
            return None
        partition = asset.partitions.to_text(key)
    run_id = f"schedule/{asset.name}/{tick.isoformat()}"
    return {"asset_name": asset.name, "partition": partition, "run_id": run_id, "force": not asset.depends_on}


def schedule_entries(fs: FlowStone) -> list[CronEntry]:
    """A cron entry per scheduled asset of `fs`'s graph."""
    return [
        CronEntry(asset.schedule, AssetWorker, partial(tick_args, asset), asset.schedule_timezone)
        for asset in registry_of(fs).scheduled()
        if asset.schedule is not None
    ]


cron_sources.append(schedule_entries)
