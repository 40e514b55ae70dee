"""Freshness policies: validated at definition; the sentry announces an asset becoming
overdue once per transition (again only after it was fresh in between)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from flowstone import AssetWorker, Context, FlowStone, FlowStoneError, asset
from flowstone.assets import default_assets
from flowstone.assets.freshness import OVERDUE_EVENT, FreshnessSentry, freshness_plugins
from flowstone.queue import telemetry
from flowstone.queue.plugins.base import InstanceRuntime
from flowstone.testing import aperform_job


class _Runtime(InstanceRuntime):
    def __init__(self, fs: FlowStone) -> None:
        self.fs = fs


def _age_by_an_hour(fs: FlowStone) -> None:
    """Move every record an hour and a second into the past."""
    with fs.connection() as conn:
        conn.execute(
            "UPDATE flowstone.materializations SET inserted_at = inserted_at - interval '3601 s',"
            " started_at = started_at - interval '3601 s', finished_at = finished_at - interval '3601 s'"
        )


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1), 3600])
def test_freshness_must_be_a_positive_timedelta(bad: Any) -> None:
    with pytest.raises(FlowStoneError, match="freshness must be a positive timedelta"):

        @asset(freshness=bad)
        def stale(ctx: Context, deps: dict[str, Any]) -> int:
            return 1


@pytest.mark.anyio
async def test_the_sentry_announces_each_transition_once(flowstone: FlowStone) -> None:
    @asset(freshness=timedelta(hours=1))
    def hourly(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    events: list[Mapping[str, Any]] = []
    detach = telemetry.attach(OVERDUE_EVENT, lambda event, m, meta: events.append(meta))
    (sentry,) = freshness_plugins(flowstone)
    assert isinstance(sentry, FreshnessSentry) and sentry.interval == 30.0
    assert freshness_plugins(FlowStone(flowstone.database_url, assets=type(default_assets)())) == []
    runtime = _Runtime(flowstone)
    try:
        assert await aperform_job(AssetWorker, {"asset_name": "hourly", "run_id": "one"}) is None
        await sentry.tick(runtime)
        assert events == [], "fresh"
        _age_by_an_hour(flowstone)
        await sentry.tick(runtime)
        await sentry.tick(runtime)
        assert [e["asset"] for e in events] == ["hourly"], "announced once, not at every look"
        assert await aperform_job(AssetWorker, {"asset_name": "hourly", "run_id": "two"}) is None
        await sentry.tick(runtime)  # fresh again: forgotten
        _age_by_an_hour(flowstone)
        await sentry.tick(runtime)
        assert [e["asset"] for e in events] == ["hourly", "hourly"], "overdue again: announced again"
    finally:
        detach()
