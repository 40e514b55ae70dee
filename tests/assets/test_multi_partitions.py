"""Multi-dimensional partitions (`date x region`): keys, their string form, ranges as boxes,
the default mapping along a shared dimension, and backfills by a range per dimension."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from flowstone import (
    Context,
    DailyPartitions,
    DynamicPartitions,
    FlowStone,
    FlowStoneError,
    MaterializationRecords,
    MultiPartitions,
    SharedDimension,
    StaticPartitions,
    ValidationError,
    asset,
    backfill,
    materialize_all,
)
from flowstone.assets import default_io_managers
from flowstone.assets.partitions import KeySpace, dynamic_names
from flowstone.queue.instance import get_default
from flowstone.testing import drain_queue

DAYS = DailyPartitions("2025-01-01")
REGIONS = StaticPartitions(["eu", "us", "apac"])
GRID = MultiPartitions({"date": DAYS, "region": REGIONS})


def stored(name: str, partition: str | None) -> Any:
    """The value stored for a partition, by the default IO manager (postgres)."""
    return default_io_managers.get("postgres").load(Context(name, partition_key=partition, fs=get_default()))


# -- keys ----------------------------------------------------------------------------------------


def test_a_key_round_trips_through_its_string_form() -> None:
    key = GRID.deserialize("2025-01-02|eu")
    assert key == (date(2025, 1, 2), "eu")
    assert GRID.serialize(key) == "2025-01-02|eu"
    assert GRID.serialize({"region": "us", "date": "2025-01-03"}) == "2025-01-03|us"
    assert GRID.named("2025-01-02|eu") == {"date": date(2025, 1, 2), "region": "eu"}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("2025-01-02|mars", r"dimension 'region': not one of \['eu', 'us', 'apac'\]"),
        ("2024-12-31|eu", "dimension 'date': before the first partition"),
        ("2025-01-02", "one part per dimension, 'date|region'"),
        ("2025-01-02|eu|x", "one part per dimension"),
        ({"date": "2025-01-02"}, r"exactly \['date', 'region'\]"),
    ],
)
def test_a_key_that_does_not_fit_names_the_dimension_or_the_form(key: Any, message: str) -> None:
    with pytest.raises(FlowStoneError, match=message):
        GRID.serialize(key)


def test_a_dimension_key_holding_the_separator_is_refused() -> None:
    with pytest.raises(ValidationError, match=re.escape("'a|b' containing '|'")):
        MultiPartitions({"date": DAYS, "kind": StaticPartitions(["a|b"])})
    shops = MultiPartitions({"date": DAYS, "shop": DynamicPartitions("shops")})
    with pytest.raises(FlowStoneError, match=re.escape("'a|b' containing '|'")):
        shops.serialize(("2025-01-02", "a|b"))


@pytest.mark.parametrize(
    "dimensions", [{"date": DAYS}, {"date": DAYS, "grid": GRID}, {"no|pipe": DAYS, "region": REGIONS}]
)
def test_a_definition_needs_two_single_named_dimensions(dimensions: Any) -> None:
    with pytest.raises(ValidationError):
        MultiPartitions(dimensions)


def test_a_range_is_the_product_of_each_dimensions_range_in_order() -> None:
    keys = [GRID.to_text(k) for k in GRID.range("2025-01-01|eu", "2025-01-02|us")]
    assert keys == ["2025-01-01|eu", "2025-01-01|us", "2025-01-02|eu", "2025-01-02|us"]
    with pytest.raises(FlowStoneError, match="is empty"):
        GRID.range("2025-01-02|eu", "2025-01-01|eu")


def test_dynamic_dimensions_are_read_like_dynamic_assets() -> None:
    shops = MultiPartitions({"date": DAYS, "shop": DynamicPartitions("shops")})
    assert dynamic_names([shops, DAYS]) == ["shops"]
    space = KeySpace(KeySpace.at_present().now, {"shops": ["a", "b"]})
    with pytest.raises(FlowStoneError, match="add it first"):
        space.resolve(shops).serialize("2025-01-01|c")
    assert space.resolve(shops).range("2025-01-01|a", "2025-01-01|b") == [
        (date(2025, 1, 1), "a"),
        (date(2025, 1, 1), "b"),
    ]


# -- mappings along a shared dimension -----------------------------------------------------------


def define_grid() -> None:
    """Daily `sales`, per-region `rates`, `sales x region` reading both, a copy of the
    grid and a daily total over the regions."""

    @asset(partitions=DAYS)
    def sales(ctx: Context, deps: dict[str, Any]) -> int:
        return int(ctx.partition.day)

    @asset(partitions=REGIONS)
    def rates(ctx: Context, deps: dict[str, Any]) -> str:
        return f"rate-{ctx.partition}"

    @asset(depends_on=[sales, rates], partitions=GRID)
    def regional(ctx: Context, deps: dict[str, Any]) -> str:
        day, region = ctx.partition
        return f"{deps['sales']}@{deps['rates']}:{day.day}/{region}"

    @asset(depends_on=[regional], partitions=GRID)
    def copied(ctx: Context, deps: dict[str, Any]) -> str:
        return str(deps["regional"])

    @asset(depends_on=[regional], partitions=DAYS)
    def total(ctx: Context, deps: dict[str, Any]) -> list[str]:
        return list(deps["regional"])


def test_a_grid_partition_reads_its_days_and_its_regions_upstream(flowstone: FlowStone) -> None:
    define_grid()
    run = materialize_all("copied", "2025-01-02|eu")
    assert run.assets == ["rates", "sales", "regional", "copied"]
    assert drain_queue("assets").completed == 4
    assert stored("sales", "2025-01-02") == 2 and stored("rates", "eu") == "rate-eu"
    assert stored("regional", "2025-01-02|eu") == "2@rate-eu:2/eu"
    assert stored("copied", "2025-01-02|eu") == "2@rate-eu:2/eu"
    record = MaterializationRecords().get("regional", "2025-01-02|eu")
    assert record is not None and record.status == "success"


def test_a_daily_dependent_reads_every_region_of_its_day(flowstone: FlowStone) -> None:
    define_grid()
    run = materialize_all("total", "2025-01-03")
    assert sorted(run.assets) == ["rates", "regional", "sales", "total"]
    assert drain_queue("assets").completed == 1 + 3 + 3 + 1  # a day, 3 rates, 3 cells, the total
    assert stored("total", "2025-01-03") == ["2025-01-03|eu", "2025-01-03|us", "2025-01-03|apac"]


def test_shared_dimension_maps_both_ways_and_checks_its_sides() -> None:
    mapping = SharedDimension("region")
    assert mapping.upstream_keys(GRID, (date(2025, 1, 2), "eu"), REGIONS, lambda d: []) == ["eu"]
    assert mapping.downstream_keys(REGIONS, "us", GRID) is None  # every day: days keep coming
    shops = MultiPartitions({"region": REGIONS, "kind": StaticPartitions(["a", "b"])})
    assert mapping.downstream_keys(REGIONS, "us", shops) == [("us", "a"), ("us", "b")]
    assert mapping.downstream_keys(shops, ("us", "b"), REGIONS) == ["us"]
    with pytest.raises(ValueError, match="partitioned like that dimension"):
        mapping.check(GRID, DAYS)


# -- backfills by a range per dimension ----------------------------------------------------------


def test_a_backfill_over_one_region_and_a_week_queues_7_jobs(flowstone: FlowStone) -> None:
    define_grid()
    materialize_all("regional", "2025-01-01|eu")
    backfill("sales", start="2025-01-01", end="2025-01-07")
    drain_queue("assets")
    run = backfill(
        "regional", start={"date": "2025-01-01", "region": "eu"}, end={"date": "2025-01-07", "region": "eu"}
    )
    assert run.total == 7
    assert run.partitions == [f"2025-01-0{d}|eu" for d in range(1, 8)]
    assert drain_queue("assets").completed == 7
    assert stored("regional", "2025-01-07|eu") == "7@rate-eu:7/eu"
