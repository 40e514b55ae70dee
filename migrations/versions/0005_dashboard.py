"""Statistics for the dashboard's job counts: the planner's joint view of queue and state.

The read layer counts jobs exactly up to a cap and asks the planner beyond it. The
planner estimates `queue = … AND state = …` from each column's statistics as if the two
were independent; a multi-column MCV list gives it their real joint frequencies (a
queue that fails a lot, one that is all completed). Statistics cost ANALYZE a little and
writes nothing.

Revision ID: 0005_dashboard
Revises: 0004_incarnations
"""

from flowstone.queue.migrate import execute_ddl

revision = "0005_dashboard"
down_revision = "0004_incarnations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
CREATE STATISTICS {schema}.jobs_queue_state_stats (mcv) ON queue, state FROM {schema}.jobs;
ANALYZE {schema}.jobs;
"""
    )


def downgrade() -> None:
    execute_ddl("DROP STATISTICS {schema}.jobs_queue_state_stats;")
