"""Executing jobs by claimer key and claim time, so a producer's periodic sweep for its
own orphans reads only the claims of the last minute or so.

A long transaction anywhere in the database keeps the entry of every job a node ever
ran under its claimer key; the sweep (once per node expiry, on the claim path) walked
them all: 87 ms at 800k dead rows, four minutes into a pin at 1,000 jobs/s, and growing.
With the claim time after the key, it starts where its last pass left off (less a
margin); the lifeline's search between keys reads the same index by its first column.

Revision ID: 0016_claimer_since
Revises: 0015_claimer_index
"""

from flowstone.queue.migrate import execute_ddl

revision = "0016_claimer_since"
down_revision = "0015_claimer_index"
branch_labels = None
depends_on = None

KEY = """((coalesce(attempted_by[1], '') || '/' || coalesce(attempted_by[2], '*')) COLLATE "C")"""


def upgrade() -> None:
    execute_ddl(
        f"""
DROP INDEX {{schema}}.jobs_claimer_idx;
CREATE INDEX jobs_claimer_idx ON {{schema}}.jobs ({KEY}, attempted_at) WHERE state = 'executing';
"""
    )


def downgrade() -> None:
    execute_ddl(
        f"""
DROP INDEX {{schema}}.jobs_claimer_idx;
CREATE INDEX jobs_claimer_idx ON {{schema}}.jobs ({KEY}) WHERE state = 'executing';
"""
    )
