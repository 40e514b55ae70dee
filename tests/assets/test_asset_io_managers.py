"""IO managers: one interface, three built-ins, all-or-nothing stores, user-defined ones."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from flowstone import (
    Context,
    FlowStone,
    FlowStoneError,
    IOManager,
    MaterializationRecords,
    asset,
    register_io_manager,
)
from flowstone.assets import FilesystemIOManager, MemoryIOManager, PostgresIOManager


def ctx_for(
    fs: FlowStone | None, asset_name: str = "orders", partition: str | None = "2025-01-15"
) -> Context:
    return Context(asset=asset_name, partition=partition, partition_key=partition, run_id="r", fs=fs)


@pytest.fixture(params=["memory", "filesystem", "postgres"])
def manager(request: pytest.FixtureRequest, tmp_path: Path, flowstone: FlowStone) -> IOManager:
    return {
        "memory": lambda: MemoryIOManager(),
        "filesystem": lambda: FilesystemIOManager(tmp_path),
        "postgres": lambda: PostgresIOManager(),
    }[request.param]()


@pytest.mark.parametrize("partition", ["2025-01-15", "2025-01-15T13:00:00+00:00", None])
def test_store_load_exists_delete(manager: IOManager, flowstone: FlowStone, partition: str | None) -> None:
    ctx = ctx_for(flowstone, partition=partition)
    assert not manager.exists(ctx)
    manager.store(ctx, {"rows": [1, 2.5, "x", None, True]})
    assert manager.exists(ctx)
    assert manager.load(ctx) == {"rows": [1, 2.5, "x", None, True]}
    manager.store(ctx, [3])  # overwrite
    assert manager.load(ctx) == [3]
    assert not manager.exists(ctx_for(flowstone, partition="2025-01-16"))
    manager.delete(ctx)
    assert not manager.exists(ctx)
    with pytest.raises(FlowStoneError) as raised:
        manager.load(ctx)
    assert raised.value.type == "io_error"


@pytest.mark.parametrize(
    "value", [{1, 2}, {"when": date(2025, 1, 1)}, float("nan"), {1: "non-string key"}, object()]
)
def test_json_managers_reject_unstorable_values_writing_nothing(
    tmp_path: Path, flowstone: FlowStone, value: Any
) -> None:
    for manager in (FilesystemIOManager(tmp_path), PostgresIOManager()):
        ctx = ctx_for(flowstone)
        with pytest.raises(FlowStoneError) as raised:
            manager.store(ctx, value)
        assert raised.value.type == "io_error" and not raised.value.retryable
        assert not manager.exists(ctx)
    assert not list(tmp_path.rglob("*.json"))


def test_postgres_rejects_what_jsonb_cannot_hold_and_keeps_the_old_value(flowstone: FlowStone) -> None:
    manager, ctx = PostgresIOManager(), ctx_for(flowstone)
    manager.store(ctx, {"ok": 1})
    with pytest.raises(FlowStoneError, match="cannot be stored"):
        manager.store(ctx, {"text": "nul \u0000 byte"})
    assert manager.load(ctx) == {"ok": 1}


def test_a_value_the_default_cannot_store_fails_its_materialization_naming_the_fix(
    flowstone: FlowStone,
) -> None:
    from flowstone import materialize
    from flowstone.testing import drain_queue

    @asset
    def when(ctx: Context, deps: dict[str, Any]) -> date:
        return date(2025, 1, 15)

    materialize("when")
    assert drain_queue("assets").discarded == 1
    record = MaterializationRecords().get("when")
    assert record is not None and (record.status, record.error_type) == ("failed", "io_error")
    assert "value cannot be stored as JSON" in (record.error_message or "")
    assert 'io_manager="memory" (this process only) or a pickling "filesystem" manager' in (
        record.error_message or ""
    )


def test_filesystem_layout_is_a_directory_per_asset_and_a_file_per_partition(tmp_path: Path) -> None:
    manager = FilesystemIOManager(tmp_path)
    manager.store(ctx_for(None, "orders", "2025-01-15"), [1])
    manager.store(ctx_for(None, "orders", "2025-01-16"), [2])
    manager.store(ctx_for(None, "summary", None), {"n": 2})
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["orders/2025-01-15.json", "orders/2025-01-16.json", "summary/__unpartitioned__.json"]


LONG_KEYS = ["x" * 255, "é" * 128, "x" * 300 + "a", "x" * 300 + "b", "%-" * 100]


@pytest.mark.parametrize("form", ["json", "pickle"])
def test_filesystem_keeps_partition_keys_too_long_for_a_file_name(tmp_path: Path, form: Any) -> None:
    manager = FilesystemIOManager(tmp_path, format=form)
    for n, key in enumerate(LONG_KEYS):
        manager.store(ctx_for(None, "orders", key), {"n": n})
    for n, key in enumerate(LONG_KEYS):
        assert manager.exists(ctx_for(None, "orders", key)) and manager.load(
            ctx_for(None, "orders", key)
        ) == {"n": n}
    names = [path.name for path in (tmp_path / "orders").iterdir()]
    assert len(names) == len(LONG_KEYS) and all(len(name.encode()) <= 255 for name in names)
    manager.delete(ctx_for(None, "orders", LONG_KEYS[0]))
    assert not manager.exists(ctx_for(None, "orders", LONG_KEYS[0])) and manager.exists(
        ctx_for(None, "orders", LONG_KEYS[1])
    )


def temporaries(root: Path) -> list[str]:
    return sorted(path.name for path in root.rglob(".tmp-*"))


def test_a_failed_filesystem_store_leaves_no_temporary(tmp_path: Path) -> None:
    manager, ctx = FilesystemIOManager(tmp_path), ctx_for(None)
    manager.path(ctx).mkdir(parents=True)  # a directory where the file should go: the rename fails
    with pytest.raises(FlowStoneError, match="cannot write") as failed:
        manager.store(ctx, {"n": 1})
    assert failed.value.retryable and temporaries(tmp_path) == []


def test_temporaries_of_killed_stores_are_removed_when_a_process_starts_storing(tmp_path: Path) -> None:
    """A store killed between writing and renaming leaves its temporary; the next
    process's first store removes it (and any other host's not written for an hour),
    never one that a live process, or another host, may still be writing."""
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_STORE, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "writing\n"
    child.kill()
    child.wait(10)
    [killed] = temporaries(tmp_path)
    assert killed.startswith(".tmp-") and f"-{child.pid}-" in killed
    elsewhere = tmp_path / "orders" / ".tmp-otherhost-12-abcdefgh"
    stale = tmp_path / "orders" / ".tmp-otherhost-13-abcdefgh"
    live = tmp_path / "orders" / f".tmp-{socket.gethostname()}-{os.getpid()}-abcdefgh"
    for path in (elsewhere, stale, live):
        path.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    FilesystemIOManager(tmp_path).store(ctx_for(None, "summary", None), 1)
    assert temporaries(tmp_path) == sorted([elsewhere.name, live.name])


KILLED_STORE = """
import sys, threading
from flowstone import Context
from flowstone.assets.io import filesystem

def hang(source, target):
    print("writing", flush=True)
    threading.Event().wait()  # killed here, between writing the temporary and renaming it

filesystem.os.replace = hang
ctx = Context(asset="orders", partition="2025-01-15", partition_key="2025-01-15", run_id="r")
filesystem.FilesystemIOManager(sys.argv[1]).store(ctx, {"big": "x" * 1000})
"""


def test_pickle_only_when_asked_for(tmp_path: Path) -> None:
    ctx = ctx_for(None)
    pickled = FilesystemIOManager(tmp_path, format="pickle")
    pickled.store(ctx, {"when": date(2025, 1, 1)})
    assert pickled.load(ctx) == {"when": date(2025, 1, 1)}
    assert pickle.loads(pickled.path(ctx).read_bytes()) == {"when": date(2025, 1, 1)}
    with pytest.raises(ValueError, match="format"):
        FilesystemIOManager(tmp_path, format="yaml")  # type: ignore[arg-type]


def test_postgres_table_per_asset_keyed_by_partition(flowstone: FlowStone) -> None:
    manager = PostgresIOManager(schema="lake")
    manager.store(ctx_for(flowstone, "orders", "2025-01-15"), {"n": 1})
    manager.store(ctx_for(flowstone, "orders", "2025-01-16"), {"n": 2})
    manager.store(ctx_for(flowstone, "totals", None), 3)
    with flowstone.connection() as conn:
        rows = conn.execute("SELECT partition, value FROM lake.orders ORDER BY partition").fetchall()
        total = conn.execute("SELECT partition, value FROM lake.totals").fetchall()
    assert rows == [("2025-01-15", {"n": 1}), ("2025-01-16", {"n": 2})]
    assert total == [("", 3)]


def test_postgres_tables_follow_each_instances_schema_unless_one_is_given(flowstone_url: str) -> None:
    tenants = [FlowStone(flowstone_url, schema=name) for name in ("tenant_a", "tenant_b")]
    try:
        default, shared = PostgresIOManager(), PostgresIOManager(schema="shared_lake")
        for n, fs in enumerate(tenants):
            default.store(ctx_for(fs), {"tenant": n})
            assert default.store(ctx_for(fs, "totals"), n) == {"table": f"{fs.schema}_assets.totals"}
            shared.store(ctx_for(fs, "common", f"2025-01-1{n}"), n)
        a, b = (ctx_for(fs) for fs in tenants)
        assert (default.load(a), default.load(b)) == ({"tenant": 0}, {"tenant": 1}), "not shared"
        default.delete(a)
        assert not default.exists(a) and default.exists(b)
        with tenants[0].connection() as conn:
            tables = conn.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname IN"
                " ('tenant_a_assets', 'tenant_b_assets', 'shared_lake', 'flowstone_assets') ORDER BY 1"
            ).fetchall()
        assert [t for (t,) in tables] == [
            "shared_lake.common",
            "tenant_a_assets.orders",
            "tenant_a_assets.totals",
            "tenant_b_assets.orders",
            "tenant_b_assets.totals",
        ]
        assert shared.load(ctx_for(tenants[0], "common", "2025-01-11")) == 1, "shared when configured"
    finally:
        for fs in tenants:
            fs.close()


def test_postgres_identifiers_are_validated() -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresIOManager(schema='x"; DROP TABLE y; --')


def test_users_register_their_own_io_manager(flowstone: FlowStone) -> None:
    class Recording(IOManager):
        def __init__(self) -> None:
            self.values: dict[tuple[str, str | None], Any] = {}

        def load(self, ctx: Context) -> Any:
            return self.values[ctx.asset, ctx.partition_key]

        def store(self, ctx: Context, value: Any) -> Mapping[str, Any]:
            self.values[ctx.asset, ctx.partition_key] = value
            return {"where": "recording"}

        def exists(self, ctx: Context) -> bool:
            return (ctx.asset, ctx.partition_key) in self.values

        def delete(self, ctx: Context) -> None:
            self.values.pop((ctx.asset, ctx.partition_key), None)

    recording = register_io_manager("recording", Recording())

    @asset(io_manager="recording")
    def numbers(ctx: Context, deps: dict[str, Any]) -> list[int]:
        return [1, 2]

    assert numbers.io_manager == "recording"
    with pytest.raises(TypeError, match="subclass IOManager"):
        register_io_manager("bad", object())  # type: ignore[arg-type]
    assert recording.exists(ctx_for(flowstone)) is False
