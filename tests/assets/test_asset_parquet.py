"""The `parquet` IO manager: pandas and polars DataFrames and pyarrow Tables as one Parquet
file per (asset, partition), read back as stored or as asked (`Dep(as_type=)`), partitions
read together as one frame, rows and schema in the record; on a local disk and on an S3
server (moto's, on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer

from flowstone import (
    Context,
    DailyPartitions,
    Dep,
    FlowStone,
    FlowStoneError,
    WeeklyPartitions,
    Window,
    asset,
    materialize,
    register_io_manager,
)
from flowstone.assets import ParquetIOManager, default_assets
from flowstone.testing import drain_queue

DAYS = DailyPartitions("2025-01-01")
WEEKS = WeeklyPartitions("2025-01-06")
METADATA = "SELECT metadata FROM flowstone.materializations WHERE asset = %s AND partition = %s"


@pytest.fixture
def assets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FLOWSTONE_ASSETS_DIR: where the built-in `parquet` manager stores."""
    monkeypatch.setenv("FLOWSTONE_ASSETS_DIR", str(tmp_path / "assets"))
    return tmp_path / "assets"


def ctx_for(name: str, partition: str | None = "2025-01-15", as_type: type | None = None) -> Context:
    return Context(asset=name, partition=partition, partition_key=partition, as_type=as_type)


def day_frame(day: date) -> pl.DataFrame:
    """A polars frame of one day's orders (as many as the day of the month)."""
    return pl.DataFrame({"day": [day] * day.day, "amount": [float(n) for n in range(day.day)]})


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def metadata(fs: FlowStone, name: str, partition: str) -> dict[str, Any]:
    with fs.connection() as conn:
        row = conn.execute(METADATA, (name, partition)).fetchone()
    assert row is not None, f"no record of {name} {partition}"
    return dict(row[0])


def test_a_polars_asset_feeds_a_polars_dependent(flowstone: FlowStone, assets_dir: Path) -> None:
    seen: list[type] = []

    @asset(partitions=DAYS, io_manager="parquet")
    def orders(ctx: Context, deps: dict[str, Any]) -> pl.DataFrame:
        return day_frame(ctx.partition)

    @asset(depends_on=["orders"], partitions=DAYS, io_manager="parquet")
    def revenue(ctx: Context, deps: dict[str, Any]) -> pl.DataFrame:
        seen.append(type(deps["orders"]))
        return deps["orders"].group_by("day").agg(pl.col("amount").sum().alias("total"))

    materialize("orders", "2025-01-03")
    materialize("revenue", "2025-01-03")
    assert drain_queue("assets", with_scheduled=True).completed == 2

    assert seen == [pl.DataFrame], "the dependent got the type the upstream returned"
    assert files(assets_dir) == ["orders/2025-01-03.parquet", "revenue/2025-01-03.parquet"]
    stored = ParquetIOManager().load(ctx_for("revenue", "2025-01-03"))
    assert isinstance(stored, pl.DataFrame) and stored["total"].to_list() == [3.0]
    recorded = metadata(flowstone, "orders", "2025-01-03")
    assert recorded["rows"] == 3 and recorded["type"] == "polars.DataFrame"
    assert recorded["schema"] == {"day": "date32[day]", "amount": "double"}
    assert recorded["path"] == str(assets_dir / "orders" / "2025-01-03.parquet")


def test_pandas_round_trips_with_its_index_and_types(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2025-01-01T10:00Z", "2025-01-02T11:30Z"]),
            "kind": pd.Categorical(["a", "b"]),
            "n": pd.array([1, None], dtype="Int64"),
        },
        index=pd.Index(["x", "y"], name="key"),
    )
    written = manager.store(ctx_for("frames"), frame)
    loaded = manager.load(ctx_for("frames"))
    pd.testing.assert_frame_equal(loaded, frame)
    assert written["rows"] == 2 and written["type"] == "pandas.DataFrame" and written["bytes"] > 0
    assert set(written["schema"]) == {"when", "kind", "n", "key"}


def test_a_pyarrow_table_round_trips_and_other_values_are_refused_writing_nothing(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    table = pa.table({"a": [1, 2, 3]})
    manager.store(ctx_for("t"), table)
    assert manager.load(ctx_for("t")).equals(
        table.replace_schema_metadata(manager.load(ctx_for("t")).schema.metadata)
    )
    for value in ({"a": [1]}, [1, 2], pl.LazyFrame({"a": [1]})):
        with pytest.raises(
            FlowStoneError, match=r"stores pandas\.DataFrame, polars\.DataFrame, pyarrow\.Table"
        ) as bad:
            manager.store(ctx_for("refused"), value)
        assert bad.value.type == "io_error" and not bad.value.retryable
    assert not manager.exists(ctx_for("refused")) and files(tmp_path) == ["t/2025-01-15.parquet"]
    manager.delete(ctx_for("t"))
    assert not manager.exists(ctx_for("t"))


@pytest.mark.parametrize(
    ("as_type", "check"),
    [
        (pl.DataFrame, lambda v: v["n"].to_list() == [1, 2]),
        (pd.DataFrame, lambda v: v["n"].tolist() == [1, 2]),
        (pa.Table, lambda v: v.column("n").to_pylist() == [1, 2]),
    ],
    ids=["polars", "pandas", "pyarrow"],
)
def test_a_dependent_reads_as_the_type_it_asks_for(
    flowstone: FlowStone, assets_dir: Path, as_type: type, check: Any
) -> None:
    got: list[Any] = []

    @asset(io_manager="parquet")
    def stored_as_pandas(ctx: Context, deps: dict[str, Any]) -> pd.DataFrame:
        return pd.DataFrame({"n": [1, 2]})

    @asset(depends_on=[Dep("stored_as_pandas", as_type=as_type)])
    def reader(ctx: Context, deps: dict[str, Any]) -> int:
        got.append(deps["stored_as_pandas"])
        return 0

    materialize("stored_as_pandas")
    materialize("reader")
    assert drain_queue("assets", with_scheduled=True).completed == 2
    [value] = got
    assert isinstance(value, as_type) and check(value)


def test_a_type_the_upstream_cannot_give_is_refused_when_the_graph_is_used(flowstone: FlowStone) -> None:
    @asset(io_manager="parquet")
    def frames(ctx: Context, deps: dict[str, Any]) -> pl.DataFrame:
        return pl.DataFrame()

    @asset(io_manager="memory")
    def in_memory(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    asset(name="wants_a_dict", depends_on=[Dep("frames", as_type=dict)])(lambda ctx, deps: 0)
    with pytest.raises(FlowStoneError, match=r"parquet IO manager loads as .*not <class .dict.>") as bad:
        default_assets.topological_order()
    assert bad.value.type == "validation_error"
    default_assets.unregister("wants_a_dict")
    asset(name="wants_a_frame", depends_on=[Dep("in_memory", as_type=pl.DataFrame)])(lambda ctx, deps: 0)
    with pytest.raises(FlowStoneError, match="MemoryIOManager loads values as stored, not as DataFrame"):
        default_assets.topological_order()
    default_assets.unregister("wants_a_frame")
    with pytest.raises(FlowStoneError, match="as_type of 'frames' must be a class"):
        asset(name="typo", depends_on=[Dep("frames", as_type="polars")])(lambda ctx, deps: 0)  # type: ignore[arg-type]
    assert default_assets.topological_order() == ["frames", "in_memory"]


def test_a_roll_up_and_a_window_get_one_concatenated_frame(flowstone: FlowStone, assets_dir: Path) -> None:
    got: dict[str, Any] = {}

    @asset(partitions=DAYS, io_manager="parquet")
    def daily(ctx: Context, deps: dict[str, Any]) -> pl.DataFrame:
        return day_frame(ctx.partition)

    @asset(depends_on=["daily"], partitions=WEEKS)
    def weekly(ctx: Context, deps: dict[str, Any]) -> int:
        got["weekly"] = deps["daily"]
        return 0

    @asset(depends_on=[Dep("daily", mapping=Window(3), as_type=pd.DataFrame)], partitions=DAYS)
    def last_three(ctx: Context, deps: dict[str, Any]) -> int:
        got["last_three"] = deps["daily"]
        return 0

    week = [date(2025, 1, 6) + timedelta(days=n) for n in range(7)]
    for day in week:
        materialize("daily", day)
    materialize("weekly", "2025-01-06")
    materialize("last_three", "2025-01-12")
    assert drain_queue("assets", with_scheduled=True).completed == 9

    weekly_frame = got["weekly"]
    assert isinstance(weekly_frame, pl.DataFrame)
    assert weekly_frame["day"].to_list() == [day for day in week for _ in range(day.day)], (
        "in partition order"
    )
    window = got["last_three"]
    assert isinstance(window, pd.DataFrame) and len(window) == 10 + 11 + 12
    assert list(window.index) == list(range(33)), "one frame, not three glued indexes"


# -- an object store --------------------------------------------------------------------------

BUCKET = "flowstone-frames"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on loopback (a port of its own), with one bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )


@pytest.fixture
def on_s3(s3_endpoint: str, request: pytest.FixtureRequest) -> ParquetIOManager:
    """A parquet manager under s3://BUCKET/<test name>, registered as `s3frames`."""
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    manager = ParquetIOManager(f"s3://{BUCKET}/{request.node.name}", storage_options=options)
    register_io_manager("s3frames", manager)
    return manager


def test_frames_on_s3_are_materialized_read_and_deleted(
    flowstone: FlowStone, on_s3: ParquetIOManager, s3_endpoint: str, request: pytest.FixtureRequest
) -> None:
    @asset(partitions=DAYS, io_manager="s3frames")
    def s3_orders(ctx: Context, deps: dict[str, Any]) -> pl.DataFrame:
        return day_frame(ctx.partition)

    @asset(depends_on=["s3_orders"], partitions=WEEKS, io_manager="s3frames")
    def s3_weekly(ctx: Context, deps: dict[str, Any]) -> pd.DataFrame:
        return deps["s3_orders"].to_pandas().groupby("day", as_index=False)["amount"].sum()

    for n in range(7):
        materialize("s3_orders", date(2025, 1, 6) + timedelta(days=n))
    materialize("s3_weekly", "2025-01-06")
    assert drain_queue("assets", with_scheduled=True).completed == 8

    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=request.node.name)
    keys = sorted(item["Key"].removeprefix(f"{request.node.name}/") for item in listed["Contents"])
    assert keys == [f"s3_orders/2025-01-{d:02d}.parquet" for d in range(6, 13)] + [
        "s3_weekly/2025-01-06.parquet"
    ]
    weekly = on_s3.load(ctx_for("s3_weekly", "2025-01-06"))
    assert isinstance(weekly, pd.DataFrame) and weekly["amount"].tolist() == [
        sum(range(d)) for d in range(6, 13)
    ]
    assert metadata(flowstone, "s3_weekly", "2025-01-06")["path"] == (
        f"s3://{BUCKET}/{request.node.name}/s3_weekly/2025-01-06.parquet"
    )
    on_s3.delete(ctx_for("s3_weekly", "2025-01-06"))
    assert not on_s3.exists(ctx_for("s3_weekly", "2025-01-06"))
    with pytest.raises(FlowStoneError, match="cannot read") as missing:
        on_s3.load(ctx_for("s3_weekly", "2025-01-06"))
    assert missing.value.type == "io_error"
