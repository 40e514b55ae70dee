"""Cron entries managed at run time (`fs.cron`, `flowstone cron`), beside those in code.

Revision ID: 0011_cron_entries
Revises: 0010_jobs_tail
"""

from flowstone.queue.migrate import execute_ddl

revision = "0011_cron_entries"
down_revision = "0010_jobs_tail"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
CREATE TABLE {schema}.cron_entries (
    name text PRIMARY KEY,
    expression text NOT NULL,
    worker text NOT NULL,
    args jsonb NOT NULL DEFAULT '{{}}',
    timezone text NOT NULL DEFAULT 'UTC',
    paused boolean NOT NULL DEFAULT false,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""
    )


def downgrade() -> None:
    execute_ddl("DROP TABLE {schema}.cron_entries;")
