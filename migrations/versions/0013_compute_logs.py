"""Materializations keep their compute logs: what the asset function, its IO manager and
its checks printed and logged (the last 64 Ki characters; NULL when nothing). On the
record, so that pruning a record prunes its logs.

Revision ID: 0013_compute_logs
Revises: 0012_claim_floor
"""

from flowstone.queue.migrate import execute_ddl

revision = "0013_compute_logs"
down_revision = "0012_claim_floor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl("ALTER TABLE {schema}.materializations ADD COLUMN logs text")


def downgrade() -> None:
    execute_ddl("ALTER TABLE {schema}.materializations DROP COLUMN logs")
