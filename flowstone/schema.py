"""FlowStone's tables as SQLAlchemy Core `Table` objects, for reading and querying them
from SQLAlchemy with typed columns (the migrations create them; a test compares the two).

    from flowstone.schema import jobs
    select(jobs.c.id, jobs.c.state).where(jobs.c.queue == "mailers")

The module-level tables are in the default schema `flowstone`; `tables("tenant_a")`
gives the same tables in another schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from flowstone.queue.job import JobState
from flowstone.queue.validation import check_identifier

MATERIALIZATION_STATUSES = ("pending", "running", "success", "failed", "skipped", "cancelled")
_TIMESTAMP = sa.DateTime(timezone=True)


@dataclass(frozen=True)
class Tables:
    """Every table of one FlowStone schema, in one `MetaData`."""

    metadata: sa.MetaData
    jobs: sa.Table
    nodes: sa.Table
    leader: sa.Table
    queue_controls: sa.Table
    materializations: sa.Table
    materialization_lineage: sa.Table
    job_deps: sa.Table
    rate_limits: sa.Table
    asset_check_results: sa.Table
    dynamic_partitions: sa.Table
    cron_entries: sa.Table
    overdue_assets: sa.Table


def _jobs(metadata: sa.MetaData, schema: str) -> sa.Table:
    state = pg.ENUM(*(s.value for s in JobState), name="job_state", schema=schema, create_type=False)
    return sa.Table(
        "jobs",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("state", state, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("args", pg.JSONB, nullable=False),
        sa.Column("meta", pg.JSONB, nullable=False),
        sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("errors", pg.JSONB, nullable=False),
        sa.Column("attempt", sa.SmallInteger, nullable=False),
        sa.Column("max_attempts", sa.SmallInteger, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("inserted_at", _TIMESTAMP, nullable=False),
        sa.Column("scheduled_at", _TIMESTAMP, nullable=False),
        sa.Column("attempted_at", _TIMESTAMP),
        sa.Column("completed_at", _TIMESTAMP),
        sa.Column("discarded_at", _TIMESTAMP),
        sa.Column("cancelled_at", _TIMESTAMP),
        sa.Column("attempted_by", pg.ARRAY(sa.Text)),
        sa.Column("unique_key", sa.Text),
        sa.Column("result", pg.JSONB),
        sa.Column("progress", pg.JSONB),
        schema=schema,
    )


def _runtime(metadata: sa.MetaData, schema: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    nodes = sa.Table(
        "nodes",
        metadata,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("queues", pg.JSONB, nullable=False),
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", _TIMESTAMP, nullable=False),
        sa.Column("incarnation", sa.Text, primary_key=True),
        schema=schema,
    )
    leader = sa.Table(
        "leader",
        metadata,
        sa.Column("role", sa.Text, primary_key=True),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("elected_at", _TIMESTAMP, nullable=False),
        sa.Column("expires_at", _TIMESTAMP, nullable=False),
        schema=schema,
    )
    controls = sa.Table(
        "queue_controls",
        metadata,
        sa.Column("queue", sa.Text, primary_key=True),
        sa.Column("node", sa.Text, primary_key=True),
        sa.Column("paused", sa.Boolean),
        sa.Column("limit", sa.Integer),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        schema=schema,
    )
    return nodes, leader, controls


def _materializations(metadata: sa.MetaData, schema: str) -> tuple[sa.Table, sa.Table]:
    status = pg.ENUM(
        *MATERIALIZATION_STATUSES, name="materialization_status", schema=schema, create_type=False
    )
    records = sa.Table(
        "materializations",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("partition", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("status", status, nullable=False),
        sa.Column("inserted_at", _TIMESTAMP, nullable=False),
        sa.Column("started_at", _TIMESTAMP),
        sa.Column("finished_at", _TIMESTAMP),
        sa.Column("duration", sa.Interval, sa.Computed("finished_at - started_at", persisted=True)),
        sa.Column("error_type", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("metadata", pg.JSONB, nullable=False),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("attempt", sa.SmallInteger, nullable=False),
        sa.Column("code_version", sa.Text),
        sa.Column("data_version", sa.Text),
        sa.Column("stands_for", sa.BigInteger),
        sa.Column("waiting_since", _TIMESTAMP),
        sa.Column("logs", sa.Text),
        schema=schema,
    )
    lineage = sa.Table(
        "materialization_lineage",
        metadata,
        sa.Column("materialization_id", sa.BigInteger, sa.ForeignKey(records.c.id), primary_key=True),
        sa.Column("upstream_id", sa.BigInteger, sa.ForeignKey(records.c.id), primary_key=True),
        schema=schema,
    )
    return records, lineage


def _queue_features(metadata: sa.MetaData, schema: str) -> tuple[sa.Table, sa.Table]:
    job_deps = sa.Table(
        "job_deps",
        metadata,
        sa.Column("dep_id", sa.BigInteger, primary_key=True),
        sa.Column("job_id", sa.BigInteger, primary_key=True),
        schema=schema,
    )
    rate_limits = sa.Table(
        "rate_limits",
        metadata,
        sa.Column("queue", sa.Text, primary_key=True),
        sa.Column("partition", sa.Text, primary_key=True),
        sa.Column("bucket", _TIMESTAMP, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        schema=schema,
    )
    return job_deps, rate_limits


def _asset_extras(metadata: sa.MetaData, schema: str, records: sa.Table) -> tuple[sa.Table, sa.Table]:
    checks = sa.Table(
        "asset_check_results",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("materialization_id", sa.BigInteger, sa.ForeignKey(records.c.id), nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("partition", sa.Text, nullable=False),
        sa.Column("check_name", sa.Text, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("blocking", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("metadata", pg.JSONB, nullable=False),
        sa.Column("checked_at", _TIMESTAMP, nullable=False),
        schema=schema,
    )
    dynamic = sa.Table(
        "dynamic_partitions",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("definition", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("added_at", _TIMESTAMP, nullable=False),
        schema=schema,
    )
    return checks, dynamic


def _cron_entries(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "cron_entries",
        metadata,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("expression", sa.Text, nullable=False),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("args", pg.JSONB, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("inserted_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        schema=schema,
    )


def _overdue_assets(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "overdue_assets",
        metadata,
        sa.Column("asset", sa.Text, primary_key=True),
        sa.Column("since", _TIMESTAMP, nullable=False),
        schema=schema,
    )


@lru_cache(maxsize=64)
def tables(schema: str = "flowstone") -> Tables:
    """The tables of FlowStone's `schema`."""
    check_identifier(schema, "schema")
    metadata = sa.MetaData()
    jobs_table = _jobs(metadata, schema)
    nodes_table, leader_table, controls = _runtime(metadata, schema)
    records, lineage = _materializations(metadata, schema)
    job_deps_table, rate_limits_table = _queue_features(metadata, schema)
    checks, dynamic = _asset_extras(metadata, schema, records)
    return Tables(
        metadata,
        jobs_table,
        nodes_table,
        leader_table,
        controls,
        records,
        lineage,
        job_deps_table,
        rate_limits_table,
        checks,
        dynamic,
        _cron_entries(metadata, schema),
        _overdue_assets(metadata, schema),
    )


_default = tables()
metadata = _default.metadata
jobs = _default.jobs
nodes = _default.nodes
leader = _default.leader
queue_controls = _default.queue_controls
materializations = _default.materializations
materialization_lineage = _default.materialization_lineage
job_deps = _default.job_deps
rate_limits = _default.rate_limits
asset_check_results = _default.asset_check_results
dynamic_partitions = _default.dynamic_partitions
cron_entries = _default.cron_entries
overdue_assets = _default.overdue_assets

__all__ = [
    "MATERIALIZATION_STATUSES",
    "Tables",
    "asset_check_results",
    "cron_entries",
    "dynamic_partitions",
    "job_deps",
    "jobs",
    "leader",
    "materialization_lineage",
    "materializations",
    "metadata",
    "nodes",
    "overdue_assets",
    "queue_controls",
    "rate_limits",
    "tables",
]
