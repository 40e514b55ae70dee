"""IO managers: where an asset's data lives, behind one interface (load/store/exists/delete).

Built in: `memory` (this process only; for tests), `filesystem` (a directory per asset, a
file per partition; JSON unless pickle is asked for) and `postgres` (a table per asset,
keyed by partition, in the FlowStone database). A store either writes the whole value or
raises `FlowStoneError(type="io_error")` having written nothing.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import psycopg
from psycopg import sql

from flowstone.assets.errors import FlowStoneError
from flowstone.queue.validation import check_identifier, check_json

if TYPE_CHECKING:
    from flowstone.assets.materializer import Context

UNPARTITIONED = "__unpartitioned__"
"""The file name stem (filesystem) used for an unpartitioned asset's value."""


def io_error(ctx: Context, message: str, *, retryable: bool = True) -> FlowStoneError:
    """An io_error locating the asset and partition."""
    return FlowStoneError(
        "io_error",
        f"asset {ctx.asset!r} partition {ctx.partition_key!r}: {message}",
        retryable=retryable,
        context={"asset": ctx.asset, "partition": ctx.partition_key},
    )


def to_json(ctx: Context, value: Any) -> str:
    """`value` as JSON text, or a non-retryable io_error saying why it cannot be stored."""
    try:
        check_json(value, "value")
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise io_error(ctx, f"value cannot be stored as JSON: {error}", retryable=False) from error


class IOManager(ABC):
    """Stores and loads one value per asset and partition (`ctx.asset`, `ctx.partition_key`)."""

    @abstractmethod
    def load(self, ctx: Context) -> Any:
        """The stored value; io_error when there is none."""

    @abstractmethod
    def store(self, ctx: Context, value: Any) -> Mapping[str, Any] | None:
        """Store `value` entirely or not at all; may return metadata for the record."""

    @abstractmethod
    def exists(self, ctx: Context) -> bool:
        """Whether a value is stored."""

    @abstractmethod
    def delete(self, ctx: Context) -> None:
        """Remove the stored value, if any."""

    def check_asset(self, name: str) -> None:  # noqa: B027 - optional hook, accepts by default
        """Reject, when an asset is defined, a name this manager cannot store under."""


class MemoryIOManager(IOManager):
    """Values in a dict of this process (copied in and out, so callers cannot alias them)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def load(self, ctx: Context) -> Any:
        with self._lock:
            if (ctx.asset, ctx.partition_key) not in self._values:
                raise io_error(ctx, "nothing stored in memory", retryable=False)
            return copy.deepcopy(self._values[ctx.asset, ctx.partition_key])

    def store(self, ctx: Context, value: Any) -> None:
        try:
            stored = copy.deepcopy(value)
        except Exception as error:
            raise io_error(ctx, f"value cannot be copied: {error}", retryable=False) from error
        with self._lock:
            self._values[ctx.asset, ctx.partition_key] = stored

    def exists(self, ctx: Context) -> bool:
        with self._lock:
            return (ctx.asset, ctx.partition_key) in self._values

    def delete(self, ctx: Context) -> None:
        with self._lock:
            self._values.pop((ctx.asset, ctx.partition_key), None)

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()


class FilesystemIOManager(IOManager):
    """`root/<asset>/<partition>.json` (or `.pkl` with `format="pickle"`), written atomically."""

    def __init__(self, root: str | Path, *, format: Literal["json", "pickle"] = "json") -> None:
        if format not in ("json", "pickle"):
            raise ValueError(f"format must be 'json' or 'pickle'; got {format!r}")
        self.root = Path(root)
        self.format = format

    def path(self, ctx: Context) -> Path:
        """The file holding the value of `ctx`'s asset and partition."""
        stem = UNPARTITIONED if ctx.partition_key is None else quote(ctx.partition_key, safe="")
        return self.root / ctx.asset / f"{stem}.{'json' if self.format == 'json' else 'pkl'}"

    def _encode(self, ctx: Context, value: Any) -> bytes:
        if self.format == "json":
            return to_json(ctx, value).encode()
        try:
            return pickle.dumps(value)
        except Exception as error:
            raise io_error(ctx, f"value cannot be pickled: {error}", retryable=False) from error

    def load(self, ctx: Context) -> Any:
        try:
            data = self.path(ctx).read_bytes()
        except OSError as error:
            raise io_error(ctx, f"cannot read {self.path(ctx)}: {error}", retryable=False) from error
        if self.format == "json":
            return json.loads(data)
        return pickle.loads(data)

    def store(self, ctx: Context, value: Any) -> Mapping[str, Any]:
        data = self._encode(ctx, value)
        target = self.path(ctx)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, target)
        except OSError as error:
            raise io_error(ctx, f"cannot write {target}: {error}") from error
        return {"path": str(target), "bytes": len(data)}

    def exists(self, ctx: Context) -> bool:
        return self.path(ctx).is_file()

    def delete(self, ctx: Context) -> None:
        self.path(ctx).unlink(missing_ok=True)


class PostgresIOManager(IOManager):
    """A table per asset (`<schema>.<asset>`: partition text primary key, value jsonb).

    The partition of an unpartitioned asset is the empty string. Asset names must be
    lower-case SQL identifiers; identifiers are quoted and values always bound. A table
    is created on the first store that finds it missing.
    """

    def __init__(self, schema: str = "flowstone_assets") -> None:
        self.schema = check_identifier(schema, "postgres IO manager schema")

    def check_asset(self, name: str) -> None:
        try:
            check_identifier(name, "asset name")
        except ValueError as error:
            raise FlowStoneError(
                "validation_error", f"postgres IO manager cannot store asset {name!r}: {error}"
            ) from error

    def _table(self, ctx: Context) -> sql.Identifier:
        return sql.Identifier(self.schema, check_identifier(ctx.asset, "asset name"))

    def _run(
        self, ctx: Context, query: sql.Composed, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement; UndefinedTable propagates, other errors become io_errors."""
        if ctx.fs is None:
            raise io_error(ctx, "the postgres IO manager needs a FlowStone instance in the context")
        try:
            with ctx.fs.connection() as conn:
                cursor = conn.execute(query, params)
                return cursor.fetchall() if cursor.description is not None else []
        except psycopg.errors.UndefinedTable:
            raise
        except psycopg.DataError as error:
            raise io_error(ctx, f"postgres rejected the value: {error}", retryable=False) from error
        except psycopg.Error as error:
            raise io_error(ctx, f"postgres error: {error}") from error

    def _query(self, ctx: Context, template: str, **params: Any) -> list[tuple[Any, ...]]:
        """A statement on the asset's table; a missing table reads as empty."""
        query = sql.SQL(template).format(table=self._table(ctx))
        try:
            return self._run(ctx, query, {"p": ctx.partition_key or "", **params})
        except psycopg.errors.UndefinedTable:
            return []

    def _create_table(self, ctx: Context) -> None:
        """Create the schema and table; concurrent creators queue on an advisory lock."""
        ddl = sql.SQL(
            "SELECT pg_advisory_xact_lock(hashtextextended({lock}, 0));"
            "CREATE SCHEMA IF NOT EXISTS {schema};"
            "CREATE TABLE IF NOT EXISTS {table} (partition text PRIMARY KEY, value jsonb NOT NULL, "
            "stored_at timestamptz NOT NULL DEFAULT now())"
        ).format(
            lock=sql.Literal(f"flowstone.io.{self.schema}"),
            schema=sql.Identifier(self.schema),
            table=self._table(ctx),
        )
        self._run(ctx, ddl)

    def load(self, ctx: Context) -> Any:
        rows = self._query(ctx, "SELECT value FROM {table} WHERE partition = %(p)s")
        if not rows:
            raise io_error(ctx, f"no row in {self.schema}.{ctx.asset}", retryable=False)
        return rows[0][0]

    def store(self, ctx: Context, value: Any) -> Mapping[str, Any]:
        upsert = sql.SQL(
            "INSERT INTO {table} (partition, value) VALUES (%(p)s, %(v)s::jsonb) "
            "ON CONFLICT (partition) DO UPDATE SET value = EXCLUDED.value, stored_at = now()"
        ).format(table=self._table(ctx))
        params = {"p": ctx.partition_key or "", "v": to_json(ctx, value)}
        try:
            self._run(ctx, upsert, params)
        except psycopg.errors.UndefinedTable:
            self._create_table(ctx)
            self._run(ctx, upsert, params)
        return {"table": f"{self.schema}.{ctx.asset}"}

    def exists(self, ctx: Context) -> bool:
        return bool(self._query(ctx, "SELECT 1 FROM {table} WHERE partition = %(p)s"))

    def delete(self, ctx: Context) -> None:
        self._query(ctx, "DELETE FROM {table} WHERE partition = %(p)s")


class IOManagerRegistry:
    """IO managers by name; assets name theirs and the name is checked at definition."""

    def __init__(self) -> None:
        self._managers: dict[str, IOManager] = {}

    def register(self, name: str, manager: IOManager) -> IOManager:
        """Add (or replace) the manager called `name`."""
        if not isinstance(manager, IOManager):
            raise TypeError(f"an IO manager must subclass IOManager; got {type(manager).__name__}")
        self._managers[name] = manager
        return manager

    def get(self, name: str) -> IOManager:
        """The manager called `name` (KeyError naming the registered ones otherwise)."""
        try:
            return self._managers[name]
        except KeyError:
            raise KeyError(f"IO manager {name!r} is not registered ({', '.join(self.names())})") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._managers)

    def __contains__(self, name: object) -> bool:
        return name in self._managers


default_io_managers = IOManagerRegistry()
default_io_managers.register("memory", MemoryIOManager())
default_io_managers.register(
    "filesystem", FilesystemIOManager(os.environ.get("FLOWSTONE_ASSETS_DIR", "flowstone_assets"))
)
default_io_managers.register("postgres", PostgresIOManager())


def register_io_manager(name: str, manager: IOManager) -> IOManager:
    """Make `manager` available to assets as `io_manager=name`."""
    return default_io_managers.register(name, manager)
