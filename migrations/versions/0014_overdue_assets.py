"""The assets overdue by their freshness policy, as the freshness sentry last saw them:
so that becoming overdue sends one event cluster-wide, not one per tick or per leader.

Revision ID: 0014_overdue_assets
Revises: 0013_compute_logs
"""

from flowstone.queue.migrate import execute_ddl

revision = "0014_overdue_assets"
down_revision = "0013_compute_logs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
CREATE TABLE {schema}.overdue_assets (
    asset text PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);
"""
    )


def downgrade() -> None:
    execute_ddl("DROP TABLE {schema}.overdue_assets")
