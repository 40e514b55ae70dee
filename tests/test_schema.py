"""`flowstone.schema` (SQLAlchemy Core tables) against the migrated database: same tables,
columns, types, nullability and enum values, so Python and SQL cannot drift apart."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from flowstone import FlowStone, Worker
from flowstone.queue.job import JobState
from flowstone.queue.migrate import engine
from flowstone.schema import MATERIALIZATION_STATUSES, Tables, jobs, tables

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def declared(table: sa.Table) -> list[tuple[str, str, bool]]:
    """(name, type, nullable) of each column, as format_type() spells the type."""
    return [(c.name, _type(c), bool(c.nullable)) for c in table.columns]


def _type(column: sa.Column[object]) -> str:
    compiled = column.type.compile(dialect=DIALECT).lower()
    return compiled.replace('"', "")


def migrated(conn: psycopg.Connection[object], schema: str, table: str) -> list[tuple[str, str, bool]]:
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
        FROM pg_attribute a
        WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (f'"{schema}"."{table}"',),
    ).fetchall()
    return [(name, kind, bool(nullable)) for name, kind, nullable in rows]


TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'alembic_version'"
ENUM = "SELECT enum_range(NULL::{type})::text[]"


@pytest.mark.parametrize("schema", ["flowstone", "tenant_x"])
def test_tables_match_the_migrated_schema(flowstone: FlowStone, schema: str) -> None:
    if schema != "flowstone":
        FlowStone(flowstone.database_url, schema=schema).migrate()
    declared_tables: Tables = tables(schema)
    with psycopg.connect(flowstone.database_url) as conn:
        conn.execute("SET search_path TO public")  # format_type() then qualifies the enums
        names = sorted(row[0] for row in conn.execute(TABLES, (schema,)))
        assert sorted(t.name for t in declared_tables.metadata.tables.values()) == names
        for table in declared_tables.metadata.tables.values():
            assert declared(table) == migrated(conn, schema, table.name), table.name
        states, statuses = (
            conn.execute(ENUM.format(type=f'"{schema}".{name}')).fetchone()
            for name in ("job_state", "materialization_status")
        )
    assert states is not None and states[0] == [s.value for s in JobState]
    assert statuses is not None and statuses[0] == list(MATERIALIZATION_STATUSES)


class Ping(Worker):
    register = False
    queue = "pings"


def test_jobs_are_queried_from_sqlalchemy(flowstone: FlowStone) -> None:
    job = flowstone.insert(Ping.new({"to": "x"}, tags=["a"]))
    query = sa.select(jobs.c.id, jobs.c.state, jobs.c.args, jobs.c.tags).where(jobs.c.queue == "pings")
    bind = engine(flowstone.database_url)
    try:
        with bind.connect() as conn:
            assert conn.execute(query).all() == [(job.id, "available", {"to": "x"}, ["a"])]
    finally:
        bind.dispose()
