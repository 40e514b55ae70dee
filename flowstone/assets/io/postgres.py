"""The `postgres` IO manager: a table per asset, keyed by partition, in the FlowStone database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from flowstone.assets.io.base import IOManager, io_error, to_json
from flowstone.errors import FlowStoneError
from flowstone.queue.validation import check_identifier

if TYPE_CHECKING:
    from flowstone.assets.context import Context


SUFFIX = "_assets"
"""The default schema of asset tables is the instance's schema plus this (`flowstone_assets`)."""


class PostgresIOManager(IOManager):
    """A table per asset (`<schema>.<asset>`: partition text primary key, value jsonb).

    `schema` defaults to the running instance's schema + `_assets` (`flowstone_assets`,
    `tenant_a_assets`): two instances on two schemas keep their data apart unless given
    one schema on purpose. The partition of an unpartitioned asset is the empty string.
    Asset names must be lower-case SQL identifiers; identifiers are quoted and values
    always bound. A table is created on the first store that finds it missing.
    """

    def __init__(self, schema: str | None = None) -> None:
        self.schema = None if schema is None else check_identifier(schema, "postgres IO manager schema")

    def schema_for(self, ctx: Context) -> str:
        """The schema holding `ctx`'s asset table."""
        if self.schema is not None:
            return self.schema
        if ctx.fs is None:
            raise io_error(ctx, "the postgres IO manager needs a FlowStone instance in the context")
        return check_identifier(ctx.fs.schema + SUFFIX, "postgres IO manager schema")

    def check_asset(self, name: str) -> None:
        try:
            check_identifier(name, "asset name")
        except ValueError as error:
            raise FlowStoneError(
                "validation_error",
                f"the postgres IO manager (the default) cannot store asset {name!r}: {error}; rename it, "
                'or give it io_manager="filesystem" or "memory"',
            ) from error

    def _table(self, ctx: Context) -> sql.Identifier:
        return sql.Identifier(self.schema_for(ctx), check_identifier(ctx.asset, "asset name"))

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
            lock=sql.Literal(f"flowstone.io.{self.schema_for(ctx)}"),
            schema=sql.Identifier(self.schema_for(ctx)),
            table=self._table(ctx),
        )
        self._run(ctx, ddl)

    def load(self, ctx: Context) -> Any:
        rows = self._query(ctx, "SELECT value FROM {table} WHERE partition = %(p)s")
        if not rows:
            raise io_error(ctx, f"no row in {self.schema_for(ctx)}.{ctx.asset}", retryable=False)
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
        return {"table": f"{self.schema_for(ctx)}.{ctx.asset}"}

    def exists(self, ctx: Context) -> bool:
        return bool(self._query(ctx, "SELECT 1 FROM {table} WHERE partition = %(p)s"))

    def delete(self, ctx: Context) -> None:
        self._query(ctx, "DELETE FROM {table} WHERE partition = %(p)s")
