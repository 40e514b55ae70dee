"""Asset definitions: the registry, the errors caught at definition time and at the graph's
first use (assets may be defined in any order), graph helpers."""

from __future__ import annotations

from typing import Any

import pytest

from flowstone import Asset, Context, DailyPartitions, Dep, FlowStoneError, StaticPartitions, asset
from flowstone.assets import default_assets


def noop(ctx: Context, deps: dict[str, Any]) -> None:
    return None


def define(name: str, *depends_on: str, **options: Any) -> Asset:
    return Asset(name=name, depends_on=depends_on, execute_fn=noop, **options)


def test_decorator_registers_with_defaults_and_docstring() -> None:
    @asset
    def raw(ctx: Context, deps: dict[str, Any]) -> list[int]:
        """Raw numbers."""
        return [1]

    @asset(depends_on=[raw], io_manager="memory", tags=["x"], max_attempts=5)
    def total(ctx: Context, deps: dict[str, Any]) -> int:
        return sum(deps["raw"])

    assert isinstance(raw, Asset) and default_assets.get("raw") is raw
    assert raw.description == "Raw numbers." and raw.max_attempts == 3 and raw.io_manager == "postgres"
    assert total.io_manager == "memory", "memory is an explicit choice"
    assert total.depends_on == ("raw",) and total.tags == ("x",) and total.max_attempts == 5


def test_an_asset_may_be_defined_before_the_assets_it_depends_on() -> None:
    @asset(depends_on=["b"])
    def a(ctx: Context, deps: dict[str, Any]) -> int:
        return int(deps["b"]) + 1

    @asset(depends_on=[Dep("c")])
    def b(ctx: Context, deps: dict[str, Any]) -> int:
        return int(deps["c"]) * 2

    @asset
    def c(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    assert default_assets.topological_order() == ["c", "b", "a"]
    assert default_assets.upstream("a") == {"b", "c"} and default_assets.dependents("c") == ["b"]


def test_unknown_dependency_is_named_with_a_suggestion_when_the_graph_is_first_used() -> None:
    default_assets.register(define("orders"))
    default_assets.register(define("revenue", "order"))  # "order" may yet be defined
    with pytest.raises(FlowStoneError, match=r"unknown asset 'order'.*did you mean 'orders'") as raised:
        default_assets.require("orders")
    assert raised.value.type == "validation_error"
    with pytest.raises(FlowStoneError, match="unknown asset 'order'"):  # every use, until it is fixed
        default_assets.topological_order()
    default_assets.register(define("order"))
    assert default_assets.upstream("revenue") == {"order"}


def test_a_cycle_is_named_when_the_graph_is_first_used() -> None:
    default_assets.register_all([define("a", "b"), define("b", "c"), define("c", "a")])
    with pytest.raises(FlowStoneError, match="cycle: a -> b -> c -> a") as raised:
        default_assets.names()
    assert raised.value.type == "validation_error"
    default_assets.clear()
    default_assets.register(define("selfish", "selfish"))
    with pytest.raises(FlowStoneError, match="cycle: selfish -> selfish"):
        default_assets.require("selfish")


def test_duplicate_name_is_rejected() -> None:
    default_assets.register(define("orders"))
    with pytest.raises(FlowStoneError, match="'orders' is already defined"):
        default_assets.register(define("orders"))


def test_unregistered_io_manager_is_rejected_at_definition() -> None:
    with pytest.raises(FlowStoneError, match="IO manager 's3', which is not registered"):

        @asset(io_manager="s3")
        def lake(ctx: Context, deps: dict[str, Any]) -> None:
            return None


def test_the_default_postgres_io_manager_needs_a_sql_identifier_name_and_says_the_fix() -> None:
    fix = 'rename it, or give it io_manager="filesystem" or "memory"'
    with pytest.raises(
        FlowStoneError, match=r"postgres IO manager \(the default\) cannot store asset 'Orders'"
    ) as e:
        default_assets.register(define("Orders"))
    assert fix in e.value.message
    default_assets.register(define("Orders", io_manager="filesystem"))


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a/b", "x" * 200])
def test_bad_asset_names_are_rejected(name: str) -> None:
    with pytest.raises(FlowStoneError, match="asset name"):
        define(name)


def test_partitions_of_a_dependency_must_map() -> None:
    default_assets.register(define("daily", partitions=DailyPartitions("2025-01-01")))
    default_assets.register(define("regional", "daily", partitions=StaticPartitions(["eu"])))
    with pytest.raises(FlowStoneError, match="without a partition mapping: name one"):
        default_assets.dependents("daily")
    default_assets.unregister("regional")
    default_assets.register(define("summary", "daily"))
    with pytest.raises(FlowStoneError, match="AllPartitions"):
        default_assets.mapping("summary", "daily")
    default_assets.unregister("summary")
    default_assets.register(define("same", "daily", partitions=DailyPartitions("2025-01-01")))
    assert default_assets.dependents("daily") == ["same"]


def test_graph_closures_and_topological_order() -> None:
    default_assets.register_all(
        [
            define("final", "left", "right"),
            define("left", "source"),
            define("right", "source"),
            define("source"),
        ]
    )
    default_assets.register(define("other"))
    assert default_assets.upstream("final") == {"left", "right", "source"}
    assert default_assets.downstream("source") == {"left", "right", "final"}
    assert default_assets.dependents("source") == ["left", "right"]
    assert default_assets.topological_order() == ["other", "source", "left", "right", "final"]
    assert default_assets.topological_order(["final", "source"]) == ["source", "final"]


def test_require_unknown_asset_suggests_a_name() -> None:
    default_assets.register(define("daily_revenue"))
    with pytest.raises(FlowStoneError, match="did you mean 'daily_revenue'") as raised:
        default_assets.require("daily_revenu")
    assert raised.value.type == "asset_not_found" and not raised.value.retryable


def test_unregister_refuses_while_dependents_exist() -> None:
    default_assets.register_all([define("a"), define("b", "a")])
    with pytest.raises(FlowStoneError, match="depend on it"):
        default_assets.unregister("a")
    default_assets.unregister("b")
    default_assets.unregister("a")
    assert len(default_assets) == 0


def test_partition_key_checks_fit() -> None:
    plain = define("plain")
    daily = define("daily", partitions=DailyPartitions("2025-01-01"))
    assert plain.serialize_partition(None) is None
    assert daily.serialize_partition("2025-01-15") == "2025-01-15"
    with pytest.raises(FlowStoneError, match="not partitioned"):
        plain.partition_key("2025-01-15")
    with pytest.raises(FlowStoneError, match="give a partition"):
        daily.partition_key(None)
