"""Executing jobs by claimer key (`name/incarnation`, bytewise order), so the lifeline
searches for orphans only between the keys of the live nodes.

A long transaction anywhere in the database keeps the entry of every job that ever ran
in the executing indexes; the orphan search walked them all every `lifeline_interval`
(~1.8M entries after 30 minutes at 1,000 jobs/s). Live nodes' jobs — nearly all of those
entries — sit at their own keys, which the search now steps over.

Revision ID: 0015_claimer_index
Revises: 0014_overdue_assets
"""

from flowstone.queue.migrate import execute_ddl

revision = "0015_claimer_index"
down_revision = "0014_overdue_assets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
-- The key the lifeline matches live nodes by (flowstone/queue/queries/jobs.py: _CLAIMER).
-- It replaces jobs_executing_idx (executing jobs by node name): what that served, a
-- producer's release of its own orphans and the executing count's sample, reads this
-- one, so a claim still writes one executing index entry, not two.
CREATE INDEX jobs_claimer_idx ON {schema}.jobs
    (((coalesce(attempted_by[1], '') || '/' || coalesce(attempted_by[2], '*')) COLLATE "C"))
    WHERE state = 'executing';
DROP INDEX {schema}.jobs_executing_idx;
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
CREATE INDEX jobs_executing_idx ON {schema}.jobs ((attempted_by[1])) WHERE state = 'executing';
DROP INDEX {schema}.jobs_claimer_idx;
"""
    )
