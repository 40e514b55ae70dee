"""Nodes are identified by name and incarnation (a start id), so a node restarted under
the same name does not keep its previous life's jobs `executing` forever.

Revision ID: 0004_incarnations
Revises: 0003_materializations
"""

from flowstone.queue.migrate import execute_ddl

revision = "0004_incarnations"
down_revision = "0003_materializations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_ddl(
        """
ALTER TABLE {schema}.nodes ADD COLUMN incarnation text NOT NULL DEFAULT '';
ALTER TABLE {schema}.nodes DROP CONSTRAINT nodes_pkey;
ALTER TABLE {schema}.nodes ADD PRIMARY KEY (name, incarnation);
"""
    )


def downgrade() -> None:
    execute_ddl(
        """
DELETE FROM {schema}.nodes a USING {schema}.nodes b
    WHERE a.name = b.name AND a.heartbeat_at < b.heartbeat_at;
ALTER TABLE {schema}.nodes DROP CONSTRAINT nodes_pkey;
ALTER TABLE {schema}.nodes ADD PRIMARY KEY (name);
ALTER TABLE {schema}.nodes DROP COLUMN incarnation;
"""
    )
