"""Runtime tables: live nodes and their heartbeats, the leader lease, queue controls.

Revision ID: 0002_runtime
Revises: 0001_jobs
"""

from flowstone.queue.migrate import execute_ddl

revision = "0002_runtime"
down_revision = "0001_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
CREATE TABLE {schema}.nodes (
    name text PRIMARY KEY,
    queues jsonb NOT NULL DEFAULT '{{}}',
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- One row: the node holding the lease runs the cluster-wide plugins until it expires.
CREATE TABLE {schema}.leader (
    role text PRIMARY KEY DEFAULT 'leader',
    node text NOT NULL,
    elected_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- Desired queue state (pause / scale), per node or for all nodes (node = '*').
-- Signals arrive by NOTIFY; this table is what a (re)connecting node reads.
CREATE TABLE {schema}.queue_controls (
    queue text NOT NULL,
    node text NOT NULL DEFAULT '*',
    paused boolean,
    "limit" integer CHECK ("limit" > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, node)
);
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
DROP TABLE {schema}.queue_controls;
DROP TABLE {schema}.leader;
DROP TABLE {schema}.nodes;
"""
    )
