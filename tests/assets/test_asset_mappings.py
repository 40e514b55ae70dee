"""Partition mappings (identity, roll-ups, windows, all / latest) and dynamic partitions:
what a partition reads, loads, waits for, is woken by, and goes stale with."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from flowstone import (
    AllPartitions,
    Context,
    DailyPartitions,
    Dep,
    DynamicPartitions,
    FlowStone,
    FlowStoneError,
    HourlyPartitions,
    LatestPartition,
    MaterializationRecords,
    MonthlyPartitions,
    RollUp,
    StaticPartitions,
    WeeklyPartitions,
    Window,
    add_partitions,
    asset,
    backfill,
    delete_partitions,
    list_partitions,
    materialize,
    materialize_all,
)
from flowstone.assets import FilesystemIOManager, default_assets, default_io_managers
from flowstone.insights import Insights
from flowstone.queue.instance import get_default
from flowstone.testing import drain_queue

DAYS = DailyPartitions("2025-01-06")  # a Monday
WEEKS = WeeklyPartitions("2025-01-06")
WEEK = "2025-01-13"
WEEK_DAYS = [f"2025-01-{d}" for d in range(13, 20)]


def stored(name: str, partition: str | None) -> Any:
    """The value stored for a partition, by the default IO manager (postgres)."""
    return default_io_managers.get("postgres").load(Context(name, partition_key=partition, fs=get_default()))


def define_sales_and_weekly() -> None:
    @asset(partitions=DAYS)
    def sales(ctx: Context, deps: dict[str, Any]) -> int:
        return int(ctx.partition.day)

    @asset(depends_on=[sales], partitions=WEEKS)
    def weekly(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
        return deps["sales"]


# -- partitions --------------------------------------------------------------------------------


def test_weekly_and_monthly_keys_name_their_first_day() -> None:
    assert WEEKS.range("2025-01-06", "2025-01-20") == [date(2025, 1, 6), date(2025, 1, 13), date(2025, 1, 20)]
    with pytest.raises(FlowStoneError, match="does not start a week"):
        WEEKS.serialize("2025-01-08")
    months = MonthlyPartitions("2024-11-01")
    assert [m.isoformat() for m in months.range("2024-11-01", "2025-02-01")] == [
        "2024-11-01",
        "2024-12-01",
        "2025-01-01",
        "2025-02-01",
    ]
    with pytest.raises(ValueError, match="first day of a month"):
        MonthlyPartitions("2025-01-15")


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(2025, 2, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)))
def test_the_last_closed_partition_is_the_one_before_now(now: datetime) -> None:
    for definition in (
        DAYS,
        WEEKS,
        MonthlyPartitions("2025-01-01"),
        HourlyPartitions("2025-01-06T00:00:00+00:00"),
    ):
        last = definition.last_closed(now)
        assert last is not None
        end = definition.window(last)[1]
        assert end <= now < definition.window(definition.shift(last, 1))[1]
        assert definition.all_keys(now)[-1] == last


# -- roll-ups ----------------------------------------------------------------------------------


def test_a_weekly_partition_rolls_up_its_7_daily_ones_with_lineage(flowstone: FlowStone) -> None:
    define_sales_and_weekly()
    run = materialize_all("weekly", WEEK)
    assert run.assets == ["sales", "weekly"] and len(run.job_ids) == 8
    assert drain_queue("assets").completed == 8
    assert stored("weekly", WEEK) == {day: int(day[-2:]) for day in WEEK_DAYS}
    record = MaterializationRecords().get("weekly", WEEK)
    assert record is not None and record.status == "success"
    lineage = Insights(flowstone).lineage("weekly", WEEK)
    assert lineage is not None and lineage.record.id == record.id
    assert sorted((m.asset, m.partition) for m in lineage.upstream) == [("sales", d) for d in WEEK_DAYS]


def test_the_last_day_of_a_week_wakes_the_week_waiting_on_it(flowstone: FlowStone) -> None:
    define_sales_and_weekly()
    days = backfill("sales", WEEK_DAYS)
    with flowstone.session() as conn:  # the last day is queued but not due yet
        conn.execute(
            "UPDATE flowstone.jobs SET state = 'scheduled', scheduled_at = now() + interval '1 hour'"
            " WHERE id = %s",
            (days.job_ids[-1],),
        )
    week = materialize("weekly", WEEK)
    assert drain_queue("assets").completed == 6
    assert flowstone.get_job(week.job_id).state == "scheduled"  # type: ignore[union-attr]
    assert MaterializationRecords().get("weekly", WEEK).error_message == "waiting for sales 2025-01-19"  # type: ignore[union-attr]
    with flowstone.session() as conn:
        conn.execute("UPDATE flowstone.jobs SET state = 'available' WHERE id = %s", (days.job_ids[-1],))
    assert drain_queue("assets").completed == 2, "the week was woken by its last day, not by a timer"


def test_one_changed_day_makes_its_week_stale(flowstone: FlowStone) -> None:
    define_sales_and_weekly()
    materialize_all("weekly", WEEK)
    drain_queue("assets")
    materialize("sales", "2025-01-15", force=True)
    drain_queue("assets")
    status = Insights(flowstone).partitions("weekly", [WEEK])[0]
    assert (status.status, status.reason) == ("stale", "upstream sales partition 2025-01-15 changed")
    assert Insights(flowstone).partitions("weekly", ["2025-01-06"])[0].status == "missing"


def test_hours_roll_up_into_a_day(flowstone: FlowStone) -> None:
    @asset(partitions=HourlyPartitions("2025-01-06T00:00:00+00:00"))
    def clicks(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    @asset(depends_on=[clicks], partitions=DAYS)
    def daily_clicks(ctx: Context, deps: dict[str, Any]) -> int:
        return sum(deps["clicks"].values())

    materialize_all("daily_clicks", "2025-01-07")
    assert drain_queue("assets").completed == 25
    assert stored("daily_clicks", "2025-01-07") == 24


# -- windows, all, latest ----------------------------------------------------------------------


def test_a_window_reads_the_last_n_partitions_clipped_at_the_start(flowstone: FlowStone) -> None:
    @asset(partitions=DAYS)
    def visits(ctx: Context, deps: dict[str, Any]) -> int:
        return int(ctx.partition.day)

    @asset(depends_on=[Dep("visits", mapping=Window(3))], partitions=DAYS)
    def rolling(ctx: Context, deps: dict[str, Any]) -> list[str]:
        return list(deps["visits"])

    materialize_all("rolling", "2025-01-10")
    materialize_all("rolling", "2025-01-06")
    drain_queue("assets")
    assert stored("rolling", "2025-01-10") == ["2025-01-08", "2025-01-09", "2025-01-10"]
    assert stored("rolling", "2025-01-06") == ["2025-01-06"]
    materialize("visits", "2025-01-09", force=True)
    drain_queue("assets")
    statuses = Insights(flowstone).partitions("rolling", start="2025-01-09", end="2025-01-11")
    assert [s.status for s in statuses] == ["missing", "stale", "missing"]


def test_an_unpartitioned_asset_reads_all_or_the_latest_partition(flowstone: FlowStone) -> None:
    regions = StaticPartitions(["eu", "us", "apac"])

    @asset(partitions=regions)
    def regional(ctx: Context, deps: dict[str, Any]) -> int:
        return len(ctx.partition)

    @asset(depends_on=[Dep(regional, mapping=AllPartitions())])
    def world(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
        return deps["regional"]

    @asset(depends_on=[Dep(regional, mapping=LatestPartition())])
    def newest(ctx: Context, deps: dict[str, Any]) -> int:
        return deps["regional"]

    materialize_all("world")
    materialize_all("newest")
    drain_queue("assets", with_scheduled=True)
    assert stored("world", None) == {"eu": 2, "us": 2, "apac": 4}
    assert stored("newest", None) == 4
    assert len(Insights(flowstone).lineage("world").upstream) == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (
            lambda: asset(name="weekly_static", depends_on=["days"], partitions=StaticPartitions(["x"])),
            "without a partition mapping",
        ),
        (
            lambda: asset(name="rolled", depends_on=[Dep("regions", mapping=RollUp())], partitions=DAYS),
            "RollUp relates time-based",
        ),
        (
            lambda: asset(name="windowed", depends_on=[Dep("regions", mapping=Window(2))], partitions=DAYS),
            "Window relates",
        ),
        (
            lambda: asset(name="latest", depends_on=[Dep("plain", mapping=LatestPartition())]),
            "needs a partitioned upstream",
        ),
        (
            lambda: asset(name="scheduled", partitions=StaticPartitions(["x"]), schedule="0 1 * * *"),
            "time-based partitions or none",
        ),
        (lambda: asset(name="bad_cron", schedule="every day"), "not a valid 5-field expression"),
        (
            lambda: asset(name="bad_zone", schedule="0 1 * * *", schedule_timezone="Mars/Base"),
            "not a known time zone",
        ),
        (lambda: asset(name="bad_auto", automation="lazy"), "automation must be 'eager'"),  # type: ignore[arg-type]
    ],
)
def test_mappings_and_policies_are_checked_when_defined_or_first_used(define: Any, message: str) -> None:
    default_assets.register_all(
        [
            asset(name="days", partitions=DAYS, registry=_scratch())(_noop),
            asset(name="regions", partitions=StaticPartitions(["eu"]), registry=_scratch())(_noop),
            asset(name="plain", registry=_scratch())(_noop),
        ]
    )
    with pytest.raises(FlowStoneError, match=message):
        define()(_noop)
        default_assets.topological_order()  # edges are checked when the graph is first used
    with pytest.raises(ValueError, match="positive"):
        Window(0)


def _noop(ctx: Context, deps: dict[str, Any]) -> None:
    return None


def _scratch() -> Any:
    from flowstone import AssetRegistry

    return AssetRegistry()


# -- dynamic partitions ------------------------------------------------------------------------


def test_dynamic_partitions_are_added_at_run_time_and_read_whole_downstream(flowstone: FlowStone) -> None:
    customers = DynamicPartitions("customers")

    @asset(partitions=customers)
    def invoices(ctx: Context, deps: dict[str, Any]) -> str:
        return f"invoices of {ctx.partition}"

    @asset(depends_on=[Dep(invoices, mapping=AllPartitions())])
    def ledger(ctx: Context, deps: dict[str, Any]) -> list[str]:
        return sorted(deps["invoices"])

    with pytest.raises(FlowStoneError, match=r"add it first with flowstone.add_partitions\('customers'"):
        materialize("invoices", "acme")
    assert add_partitions("customers", ["acme", "globex"]) == ["acme", "globex"]
    assert add_partitions(customers, ["globex", "initech"]) == ["initech"]
    assert list_partitions("customers") == ["acme", "globex", "initech"]
    assert backfill("invoices", start="acme", end="initech").total == 3
    materialize("ledger")
    drain_queue("assets", with_scheduled=True)
    assert stored("ledger", None) == ["acme", "globex", "initech"]
    assert Insights(flowstone).partitions("ledger")[0].status == "fresh"

    add_partitions("customers", ["umbrella"])
    status = Insights(flowstone).partitions("ledger")[0]
    assert (status.status, status.reason) == ("stale", "upstream invoices partition umbrella changed")
    assert [p.status for p in Insights(flowstone).partitions("invoices")] == ["fresh"] * 3 + ["missing"]
    assert delete_partitions("customers", ["umbrella", "nobody"]) == ["umbrella"]
    assert Insights(flowstone).partitions("ledger")[0].status == "fresh"
    with pytest.raises(FlowStoneError, match="list of strings"):
        add_partitions("customers", "acme")  # type: ignore[arg-type]


def test_dynamic_keys_too_long_for_a_file_name_materialize_on_the_filesystem(
    flowstone: FlowStone, files: FilesystemIOManager
) -> None:
    keys = ["x" * 255, "é" * 128]

    @asset(partitions=DynamicPartitions("long_keys"), io_manager="files")
    def per_key(ctx: Context, deps: dict[str, Any]) -> int:
        return len(ctx.partition)

    add_partitions("long_keys", keys)
    assert backfill("per_key", partitions=keys).total == 2
    assert drain_queue("assets", with_scheduled=True).completed == 2
    assert [p.status for p in Insights(flowstone).partitions("per_key")] == ["fresh", "fresh"]
    assert [files.load(Context("per_key", partition_key=key)) for key in keys] == [255, 128]


TIME_DEFINITIONS = [
    DailyPartitions("2025-01-01"),
    WeeklyPartitions("2025-01-06"),
    MonthlyPartitions("2025-01-01"),
    HourlyPartitions("2025-01-01T00:00:00+00:00"),
]


@settings(deadline=None, max_examples=60)
@given(
    st.sampled_from(TIME_DEFINITIONS),
    st.sampled_from(TIME_DEFINITIONS),
    st.sampled_from([RollUp(), Window(1), Window(3), Window(8)]),
    st.integers(min_value=0, max_value=40),
)
def test_wake_ups_follow_the_mapping_both_ways(down: Any, up: Any, mapping: Any, offset: int) -> None:
    """Every upstream partition a dependent partition reads wakes it when it succeeds
    (`downstream_keys` covers `upstream_keys`); a roll-up wakes nothing else."""
    key = down.shift(down.start, offset)
    everything = lambda definition: definition.all_keys(datetime(2026, 1, 1, tzinfo=UTC))  # noqa: E731
    for read in mapping.upstream_keys(down, key, up, everything):
        assert key in mapping.downstream_keys(up, read, down)
    near = up.within_bounds(
        up.shift(up.containing(down.window(key)[0]), -10), up.containing(down.window(key)[1])
    )
    for other in near:
        if key in mapping.downstream_keys(up, other, down) and isinstance(mapping, RollUp):
            assert other in mapping.upstream_keys(down, key, up, everything)
