"""Asset checks, eager automation and asset schedules (in-process, drained)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from flowstone import (
    AssetWorker,
    CheckResult,
    Context,
    DailyPartitions,
    FlowStone,
    FlowStoneError,
    HourlyPartitions,
    MaterializationRecords,
    Output,
    WeeklyPartitions,
    asset,
    asset_check,
    backfill,
    materialize,
    materialize_all,
)
from flowstone.assets import default_assets
from flowstone.insights import Insights
from flowstone.queue.plugins import Cron
from flowstone.testing import all_enqueued, drain_queue

DAYS = DailyPartitions("2025-01-06")
DAY = "2025-01-15"


# -- checks ------------------------------------------------------------------------------------


def define_orders(blocking: bool, calls: Counter[str]) -> None:
    @asset(partitions=DAYS)
    def orders(ctx: Context, deps: dict[str, Any]) -> list[int]:
        calls["orders"] += 1
        return [5, -1, 3]

    @asset(depends_on=[orders], partitions=DAYS, automation="eager")
    def revenue(ctx: Context, deps: dict[str, Any]) -> int:
        calls["revenue"] += 1
        return sum(deps["orders"])

    @asset_check(asset="orders", blocking=blocking)
    def no_negative_amounts(ctx: Context, value: list[int]) -> CheckResult:
        negative = [n for n in value if n < 0]
        return CheckResult(not negative, f"{len(negative)} negative", {"negative": len(negative)})

    @asset_check(asset=orders)
    def three_rows(ctx: Context, value: list[int]) -> bool:
        return len(value) == 3


def test_a_failed_blocking_check_fails_the_materialization_and_stops_downstream(flowstone: FlowStone) -> None:
    calls: Counter[str] = Counter()
    define_orders(blocking=True, calls=calls)
    materialize_all("revenue", DAY)
    counts = drain_queue("assets", with_recursion=True)
    assert counts.discarded == 2 and calls == {"orders": 1}
    orders, revenue = (
        MaterializationRecords().get("orders", DAY),
        MaterializationRecords().get("revenue", DAY),
    )
    assert orders is not None and (orders.status, orders.error_type) == ("failed", "check_failed")
    assert orders.error_message == "blocking check failed: no_negative_amounts (1 negative)"
    assert revenue is not None and (revenue.status, revenue.error_type) == ("failed", "dependency_failed")
    assert all_enqueued(worker=AssetWorker) == [], "no eager materialization either"
    lineage = Insights(flowstone).lineage("orders", DAY)
    assert lineage is not None
    assert [(c.check_name, c.passed, c.blocking, c.metadata) for c in lineage.checks] == [
        ("no_negative_amounts", False, True, {"negative": 1}),
        ("three_rows", True, False, {}),
    ]


def test_a_failed_non_blocking_check_is_recorded_and_nothing_else(flowstone: FlowStone) -> None:
    calls: Counter[str] = Counter()
    define_orders(blocking=False, calls=calls)
    materialize("orders", DAY)
    drain_queue("assets", with_recursion=True)
    assert calls == {"orders": 1, "revenue": 1}, "the eager dependent ran"
    assert MaterializationRecords().get("orders", DAY).status == "success"  # type: ignore[union-attr]
    with flowstone.connection() as conn:
        rows = conn.execute(
            "SELECT check_name, passed, description FROM flowstone.asset_check_results ORDER BY id"
        ).fetchall()
    assert rows == [("no_negative_amounts", False, "1 negative"), ("three_rows", True, None)]


def test_a_check_that_raises_fails_saying_why_and_checks_are_named_once(flowstone: FlowStone) -> None:
    @asset
    def numbers(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    @asset_check(asset="numbers", blocking=True)
    def broken(ctx: Context, value: int) -> bool:
        raise KeyError("column")

    materialize("numbers")
    drain_queue("assets")
    record = MaterializationRecords().get("numbers")
    assert record is not None and record.error_message == "blocking check failed: broken (KeyError: 'column')"

    @asset_check(asset="numbers")
    def odd_metadata(ctx: Context, value: int) -> CheckResult:
        return CheckResult(True, metadata={"when": datetime(2025, 1, 1, tzinfo=UTC)})

    materialize("numbers", force=True)
    drain_queue("assets")
    lineage = Insights(flowstone).lineage("numbers")
    assert lineage is not None and lineage.checks[-1].check_name == "odd_metadata"
    assert not lineage.checks[-1].passed and "metadata" in (lineage.checks[-1].description or "")
    with pytest.raises(FlowStoneError, match="already has a check named 'broken'"):
        asset_check(asset="numbers", name="broken")(lambda ctx, value: True)
    with pytest.raises(FlowStoneError, match="no asset named 'numbrs'"):
        asset_check(asset="numbrs", name="anything")(lambda ctx, value: True)


# -- eager automation --------------------------------------------------------------------------


def define_eager_pair(calls: Counter[str], version: dict[str, str | None]) -> None:
    @asset(partitions=DAYS)
    def raw(ctx: Context, deps: dict[str, Any]) -> Any:
        calls["raw"] += 1
        return Output(calls["raw"], data_version=version["raw"])

    @asset(depends_on=[raw], partitions=DAYS, automation="eager")
    def cleaned(ctx: Context, deps: dict[str, Any]) -> int:
        calls["cleaned"] += 1
        return int(deps["raw"])

    @asset(depends_on=[raw], partitions=DAYS)
    def manual(ctx: Context, deps: dict[str, Any]) -> int:
        return 0


def test_an_upstream_success_queues_its_eager_dependents_in_the_same_transaction(
    flowstone: FlowStone,
) -> None:
    calls: Counter[str] = Counter()
    define_eager_pair(calls, {"raw": None})
    upstream = materialize("raw", DAY)
    drain_queue("assets")
    [queued] = all_enqueued(worker=AssetWorker)
    assert queued.args == {
        "asset_name": "cleaned",
        "partition": DAY,
        "run_id": f"automation/raw/{upstream.run_id}",
        "force": False,
    }
    with flowstone.connection() as conn:
        xids = conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM flowstone.materializations"
            " WHERE (asset = 'raw' AND status = 'success') OR asset = 'cleaned'"
        ).fetchone()
    assert xids == (1,), "the eager job's record was written with the upstream's finish"
    drain_queue("assets")
    assert calls == {"raw": 1, "cleaned": 1}
    assert Insights(flowstone).partitions("cleaned", [DAY])[0].status == "fresh"


def test_eager_fires_only_when_the_data_version_changed(flowstone: FlowStone) -> None:
    calls: Counter[str] = Counter()
    version: dict[str, str | None] = {"raw": "a"}
    define_eager_pair(calls, version)
    materialize("raw", DAY)
    drain_queue("assets", with_recursion=True)
    materialize("raw", DAY, force=True)  # recomputed, same data version
    drain_queue("assets", with_recursion=True)
    assert calls == {"raw": 2, "cleaned": 1}
    version["raw"] = "b"
    materialize("raw", DAY, force=True)
    drain_queue("assets", with_recursion=True)
    assert calls == {"raw": 3, "cleaned": 2}


def test_a_storm_of_upstream_updates_materializes_the_dependent_once(flowstone: FlowStone) -> None:
    calls: Counter[str] = Counter()
    define_eager_pair(calls, {"raw": None})
    for _ in range(50):
        materialize("raw", DAY, force=True)
    drain_queue("assets", with_recursion=True)
    assert calls == {"raw": 50, "cleaned": 1}
    from flowstone.assets import default_io_managers

    last = default_io_managers.get("postgres").load(Context("cleaned", partition_key=DAY, fs=flowstone))
    assert last == 50, "the last data"


def test_an_eager_roll_up_is_queued_once_all_its_days_are_there(flowstone: FlowStone) -> None:
    @asset(partitions=DAYS)
    def sales(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    @asset(depends_on=[sales], partitions=WeeklyPartitions("2025-01-06"), automation="eager")
    def weekly(ctx: Context, deps: dict[str, Any]) -> int:
        return sum(deps["sales"].values())

    backfill("sales", start="2025-01-13", end="2025-01-18")
    drain_queue("assets", with_recursion=True)
    assert MaterializationRecords().get("weekly", "2025-01-13") is None, "six days of seven: nothing queued"
    materialize("sales", "2025-01-19")
    drain_queue("assets", with_recursion=True)
    assert MaterializationRecords().get("weekly", "2025-01-13").status == "success"  # type: ignore[union-attr]


# -- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timezone", "tick", "partition"),
    [
        ("UTC", datetime(2025, 1, 16, 1, 0, tzinfo=UTC), "2025-01-15"),
        ("Europe/Paris", datetime(2025, 1, 16, 0, 30, tzinfo=UTC), "2025-01-15"),  # 01:30 in Paris
        ("America/Los_Angeles", datetime(2025, 1, 16, 1, 0, tzinfo=UTC), "2025-01-14"),  # 17:00 on the 15th
    ],
)
def test_a_daily_schedule_materializes_yesterday_in_its_time_zone(
    timezone: str, tick: datetime, partition: str
) -> None:
    daily = asset(name="daily", partitions=DAYS, schedule="0 1 * * *", schedule_timezone=timezone)(_value)
    assert daily.tick_args(tick) == {
        "asset_name": "daily",
        "partition": partition,
        "run_id": f"schedule/daily/{tick.isoformat()}",
        "force": True,  # a source asset fetches again on each tick
    }
    derived = asset(name="derived", depends_on=[daily], partitions=DAYS, schedule="0 2 * * *")(_value)
    assert derived.tick_args(tick)["force"] is False  # type: ignore[index]  # recomputed when stale


def test_an_hourly_schedule_takes_the_hour_that_closed_and_nothing_before_the_first() -> None:
    hourly = asset(
        name="hourly", partitions=HourlyPartitions("2025-01-06T00:00:00+00:00"), schedule="5 * * * *"
    )(_value)
    args = hourly.tick_args(datetime(2025, 1, 16, 14, 5, tzinfo=UTC))
    assert args is not None and args["partition"] == "2025-01-16T13:00:00+00:00"
    assert hourly.tick_args(datetime(2025, 1, 6, 0, 5, tzinfo=UTC)) is None
    whole = asset(name="whole", schedule="0 * * * *")(_value)
    assert whole.tick_args(datetime(2025, 1, 16, 14, 0, tzinfo=UTC))["partition"] is None  # type: ignore[index]


@pytest.mark.anyio
async def test_a_scheduled_tick_is_inserted_once_by_two_leaders_and_materializes(
    flowstone: FlowStone,
) -> None:
    asset(name="daily", partitions=DAYS, schedule="0 1 * * *", schedule_timezone="Europe/Paris")(_value)
    asset(name="plain")(_value)
    entries = default_assets.cron_entries(flowstone.registry)
    assert [e.expression for e in entries] == ["0 1 * * *"]
    cron = [e.expression for e in flowstone.all_cron_entries()]
    assert cron == ["0 1 * * *"], "the node's cron gets it (the default graph is the extension)"
    node = flowstone.node({})
    tick = datetime(2025, 1, 16, 0, 0, 20, tzinfo=UTC)  # 01:00 in Paris
    for leader in (Cron(entries), Cron(entries)):
        await leader.insert_due(node, tick)
    [job] = await flowstone.alist_jobs(worker=AssetWorker.name)
    assert job.args["partition"] == "2025-01-15" and job.meta["cron_tick"] == "2025-01-16T00:00:00+00:00"
    from flowstone.testing import adrain_queue

    assert (await adrain_queue("assets")).completed == 1
    record = await MaterializationRecords().aget("daily", "2025-01-15")
    assert record is not None and record.status == "success" and record.run_id.startswith("schedule/daily/")


def _value(ctx: Context, deps: dict[str, Any]) -> str:
    return ctx.partition_key or "whole"
