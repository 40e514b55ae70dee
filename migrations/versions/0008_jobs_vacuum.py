"""Autovacuum keeps up with the jobs table: a queue table churns (every job inserted, updated
twice, deleted by the pruner), and until a vacuum the claimed jobs' dead entries sit at the
head of the claim index, where every claim walks through them.

Revision ID: 0008_jobs_vacuum
Revises: 0007_asset_versions
"""

from flowstone.queue.migrate import execute_ddl

revision = "0008_jobs_vacuum"
down_revision = "0007_asset_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
-- Unthrottled (the default 2 ms of sleep per 200 pages stretched a vacuum of a busy jobs
-- table over most of the minute between autovacuum rounds), and due after 2 percent of the
-- table changed rather than 20 percent.
ALTER TABLE {schema}.jobs SET (
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
ALTER TABLE {schema}.jobs RESET (
    autovacuum_vacuum_cost_delay,
    autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_insert_scale_factor,
    autovacuum_analyze_scale_factor
);
"""
    )
