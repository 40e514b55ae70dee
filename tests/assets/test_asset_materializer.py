"""The Materializer's steps: context, dependency checks, loading, executing, storing."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from flowstone import Context, DailyPartitions, FlowStone, FlowStoneError, Materializer, asset
from flowstone.assets import MemoryIOManager, default_io_managers

DAYS = DailyPartitions("2025-01-01")


@pytest.fixture
def materializer(flowstone: FlowStone) -> Materializer:
    return Materializer(flowstone)


def test_build_context_validates_and_serializes_the_partition(materializer: Materializer) -> None:
    @asset(partitions=DAYS)
    def daily(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    ctx = materializer.build_context(daily, "2025-01-15", "run-1", attempt=2, job_id=7)
    assert (ctx.asset, ctx.partition, ctx.partition_key) == ("daily", date(2025, 1, 15), "2025-01-15")
    assert (ctx.run_id, ctx.attempt, ctx.job_id, ctx.fs) == ("run-1", 2, 7, materializer.fs)
    assert materializer.build_context(daily, date(2025, 1, 15)).run_id  # a fresh run id
    with pytest.raises(FlowStoneError) as raised:
        materializer.build_context(daily, "2024-06-01")
    assert raised.value.type == "validation_error" and "2024-06-01" in raised.value.message


def test_execute_calls_the_function_with_context_and_deps(materializer: Materializer) -> None:
    seen: list[tuple[Context, dict[str, Any]]] = []

    @asset
    def doubled(ctx: Context, deps: dict[str, Any]) -> list[int]:
        seen.append((ctx, deps))
        return [2 * n for n in deps["numbers"]]

    ctx = materializer.build_context(doubled, run_id="r")
    assert materializer.call_asset(doubled, ctx, {"numbers": [1, 2]}) == [2, 4]
    assert seen == [(ctx, {"numbers": [1, 2]})]


def test_execute_turns_an_exception_into_execution_error(materializer: Materializer) -> None:
    @asset
    def broken(ctx: Context, deps: dict[str, Any]) -> None:
        raise KeyError("amount")

    with pytest.raises(FlowStoneError) as raised:
        materializer.call_asset(broken, materializer.build_context(broken), {})
    error = raised.value
    assert error.type == "execution_error" and error.retryable
    assert error.message == "KeyError: 'amount'"
    assert error.context["asset"] == "broken" and isinstance(error.__cause__, KeyError)


def test_load_dependencies_reads_upstream_data_of_the_same_partition(materializer: Materializer) -> None:
    @asset(partitions=DAYS)
    def orders(ctx: Context, deps: dict[str, Any]) -> list[int]:
        return []

    @asset
    def rates(ctx: Context, deps: dict[str, Any]) -> dict[str, float]:
        return {}

    @asset(depends_on=[orders, rates], partitions=DAYS)
    def revenue(ctx: Context, deps: dict[str, Any]) -> float:
        return 0.0

    stored = materializer.io_manager(orders)  # the default: postgres
    ctx = materializer.build_context(revenue, "2025-01-15")
    stored.store(ctx.for_upstream(orders), [10, 20])
    stored.store(ctx.for_upstream(rates), {"eur": 1.1})
    assert materializer.load_dependencies(revenue, ctx) == {"orders": [10, 20], "rates": {"eur": 1.1}}
    other_day = materializer.build_context(revenue, "2025-01-16")
    with pytest.raises(FlowStoneError) as raised:
        materializer.load_dependencies(revenue, other_day)
    assert raised.value.type == "dependency_failed"
    assert "'orders' has no data for partition '2025-01-16'" in raised.value.message


def test_check_dependencies_ready_counts_external_data_and_waits_for_the_rest(
    materializer: Materializer,
) -> None:
    @asset
    def source(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    @asset
    def other(ctx: Context, deps: dict[str, Any]) -> int:
        return 2

    @asset(depends_on=[source, other])
    def target(ctx: Context, deps: dict[str, Any]) -> int:
        return 3

    ctx = materializer.build_context(target)
    assert materializer.check_dependencies_ready(target, ctx).waiting == ("source", "other")
    materializer.io_manager(source).store(ctx.for_upstream(source), 1)
    readiness = materializer.check_dependencies_ready(target, ctx)
    assert readiness.waiting == ("other",) and not readiness.ready


def test_store_result_returns_metadata_and_the_value_loads_back(materializer: Materializer) -> None:
    @asset
    def totals(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
        return {}

    ctx = materializer.build_context(totals)
    ctx.metadata["rows"] = 3
    assert materializer.store_result(totals, ctx, {"n": 3}) == {"rows": 3, "table": "flowstone_assets.totals"}
    assert materializer.io_manager(totals).load(ctx) == {"n": 3}


def test_a_user_io_manager_failure_becomes_a_retryable_io_error(materializer: Materializer) -> None:
    class Broken(MemoryIOManager):
        def store(self, ctx: Context, value: Any) -> None:
            raise OSError("bucket unreachable")

    default_io_managers.register("broken", Broken())

    @asset(io_manager="broken")
    def lost(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    with pytest.raises(FlowStoneError) as raised:
        materializer.store_result(lost, materializer.build_context(lost), 1)
    assert raised.value.type == "io_error" and raised.value.retryable
    assert "OSError: bucket unreachable" in raised.value.message
