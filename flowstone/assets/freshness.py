"""Freshness policies: `@asset(freshness=timedelta(hours=26))`.

An asset with a policy is **overdue** when its latest success (a skip counts: it
confirmed that the data is current) finished longer ago than the policy allows. Never
materialized is not overdue: that is its own status, missing. The read layer reports the
flag (`AssetOverview.overdue`) to the CLI, the dashboard, `/api/assets` and the metrics
(`flowstone_asset_overdue`). On the leader node, the `FreshnessSentry` plugin looks as
often as the tightest policy needs (at most every 30 s) and sends the telemetry event
`asset.overdue` once per transition, cluster-wide: the overdue assets are kept in the
`overdue_assets` table, so a new leader does not announce them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flowstone.assets.queries import MaterializationQueries
from flowstone.queue import telemetry
from flowstone.queue.plan import Plan
from flowstone.queue.plugins.base import Plugin, PluginRuntime

if TYPE_CHECKING:
    from flowstone.assets.definitions import Asset

OVERDUE_EVENT = "asset.overdue"
"""The telemetry event sent when an asset becomes overdue (measurements: age and
freshness in seconds; metadata: asset, last_success)."""

MAX_INTERVAL = 30.0
"""The longest time between two looks of the sentry."""


@dataclass(frozen=True)
class Freshness:
    """An asset's freshness policy, when its latest success finished (None: never) and
    the database's time of the reading."""

    asset: str
    policy: timedelta
    last_success: datetime | None
    now: datetime

    @property
    def age(self) -> timedelta | None:
        """How long ago its latest success finished (None: never)."""
        return None if self.last_success is None else self.now - self.last_success

    @property
    def overdue(self) -> bool:
        """Whether its latest success is older than the policy allows."""
        return self.age is not None and self.age > self.policy


def freshness_plan(q: MaterializationQueries, assets: Sequence[Asset]) -> Plan[dict[str, Freshness]]:
    """The freshness of each asset with a policy, by name (one statement; none without one)."""
    policies = {asset.name: asset.freshness for asset in assets if asset.freshness is not None}
    if not policies:
        return {}
    rows = yield q.last_successes, {"assets": list(policies)}
    return {
        row["asset"]: Freshness(row["asset"], policies[row["asset"]], row["last_success"], row["now"])
        for row in rows
    }


def mark_overdue_plan(q: MaterializationQueries, overdue: Sequence[str]) -> Plan[list[str]]:
    """Record which assets are overdue now; those that were not before."""
    rows = yield q.mark_overdue, {"overdue": list(overdue)}
    return [row["asset"] for row in rows]


class FreshnessSentry:
    """A leader plugin announcing each asset that becomes overdue (`asset.overdue`)."""

    name = "freshness"
    leader_only = True

    def __init__(self, assets: Sequence[Asset]) -> None:
        self.assets = list(assets)
        tightest = min(asset.freshness.total_seconds() for asset in assets if asset.freshness is not None)
        self._interval = min(MAX_INTERVAL, max(0.2, tightest / 4))

    @property
    def interval(self) -> float:
        """A quarter of the tightest policy, from 0.2 to `MAX_INTERVAL` seconds."""
        return self._interval

    async def tick(self, runtime: PluginRuntime) -> None:
        queries = MaterializationQueries.for_schema(runtime.settings.schema_name)
        found = await runtime.execute(freshness_plan(queries, self.assets))
        overdue = {name: seen for name, seen in found.items() if seen.overdue}
        for name in await runtime.execute(mark_overdue_plan(queries, list(overdue))):
            seen = overdue[name]
            assert seen.age is not None
            measurements = {"age": seen.age.total_seconds(), "freshness": seen.policy.total_seconds()}
            telemetry.emit(OVERDUE_EVENT, measurements, {"asset": name, "last_success": seen.last_success})


def freshness_plugins(assets: Iterable[Asset]) -> list[Plugin]:
    """The sentry of the assets with a freshness policy (none without any)."""
    policed = [asset for asset in assets if asset.freshness is not None]
    return [FreshnessSentry(policed)] if policed else []
