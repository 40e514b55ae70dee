"""Statements on the runtime tables: nodes (heartbeats), leader (lease), queue_controls."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from flowstone.queue.queries import SchemaStatements, composer
from flowstone.queue.validation import check_identifier

# A node is its name and its incarnation (a start id): a process restarted under the
# same name is a new incarnation, and the lifeline rescues what the old one held.
_HEARTBEAT = """
INSERT INTO {nodes} (name, incarnation, queues) VALUES (%(node)s, %(incarnation)s, %(queues)s::jsonb)
ON CONFLICT (name, incarnation) DO UPDATE SET heartbeat_at = now(), queues = EXCLUDED.queues
"""

_FORGET = "DELETE FROM {nodes} WHERE name = %(node)s AND incarnation = %(incarnation)s"

_EXPIRE_NODES = """
DELETE FROM {nodes} WHERE heartbeat_at < now() - make_interval(secs => %(expiry)s)
RETURNING name
"""

_LIVE_NODES = """
SELECT name, incarnation, queues, started_at, heartbeat_at,
       heartbeat_at >= now() - make_interval(secs => %(expiry)s) AS alive
FROM {nodes} ORDER BY name
"""

# Take the lease if it is free, expired, or already ours; the returned row says who holds it.
_ELECT = """
INSERT INTO {leader} AS l (role, node, expires_at)
VALUES ('leader', %(node)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (role) DO UPDATE
    SET node = EXCLUDED.node,
        expires_at = EXCLUDED.expires_at,
        elected_at = CASE WHEN l.node = EXCLUDED.node THEN l.elected_at ELSE now() END
    WHERE l.node = EXCLUDED.node OR l.expires_at < now()
RETURNING node
"""

_RESIGN = "DELETE FROM {leader} WHERE node = %(node)s"

_LEADER = "SELECT node, elected_at, expires_at FROM {leader} WHERE expires_at >= now()"

# A setting for all nodes ('*') replaces the node-specific values of the same field, as
# it does on the running nodes its signal reaches.
_SET_CONTROL = """
WITH superseded AS (
    UPDATE {controls} SET
        paused = CASE WHEN %(paused)s::boolean IS NULL THEN paused END,
        "limit" = CASE WHEN %(limit)s::integer IS NULL THEN "limit" END,
        updated_at = now()
    WHERE queue = %(queue)s AND %(node)s = '*' AND node <> '*'
)
INSERT INTO {controls} AS c (queue, node, paused, "limit")
VALUES (%(queue)s, %(node)s, %(paused)s, %(limit)s)
ON CONFLICT (queue, node) DO UPDATE
    SET paused = coalesce(EXCLUDED.paused, c.paused),
        "limit" = coalesce(EXCLUDED."limit", c."limit"),
        updated_at = now()
RETURNING queue, node, paused, "limit", pg_notify(%(channel)s, %(signal)s) AS notified
"""

# Stored settings cleared: a queue's on every node and for all nodes (node NULL), or one
# node's own (then the cluster-wide ones apply to it again); the cleared rows come back.
_RESET_CONTROLS = """
DELETE FROM {controls} WHERE queue = %(queue)s AND (%(node)s::text IS NULL OR node = %(node)s)
RETURNING queue, node, paused, "limit", updated_at
"""

# Every stored setting, for front ends (what overrides the nodes' configured ones).
_CONTROLS = 'SELECT queue, node, paused, "limit", updated_at FROM {controls} ORDER BY queue, node'

# Node-specific settings override the cluster-wide ones ('*').
_CONTROLS_FOR = """
SELECT queue, bool_or(paused) FILTER (WHERE node = %(node)s) AS node_paused,
       bool_or(paused) FILTER (WHERE node = '*') AS all_paused,
       max("limit") FILTER (WHERE node = %(node)s) AS node_limit,
       max("limit") FILTER (WHERE node = '*') AS all_limit
FROM {controls} WHERE node IN (%(node)s, '*') GROUP BY queue
"""

_SIGNAL = "SELECT pg_notify(%(channel)s, %(signal)s)"

# The database's clock: what cron ticks follow, whatever the clock of the node asking.
_CLOCK = "SELECT now() AS now"


@dataclass(frozen=True, slots=True)
class NodeQueries(SchemaStatements):
    """The runtime tables' statements for one schema."""

    control_channel: str
    heartbeat: str
    forget: str
    expire_nodes: str
    live_nodes: str
    elect: str
    resign: str
    leader: str
    set_control: str
    reset_controls: str
    controls: str
    controls_for: str
    signal: str
    clock: str

    @classmethod
    def compose(cls, schema: str) -> NodeQueries:
        """Compose every statement with the schema's quoted identifiers."""
        check_identifier(schema, "schema")
        names = {
            "nodes": sql.Identifier(schema, "nodes"),
            "leader": sql.Identifier(schema, "leader"),
            "controls": sql.Identifier(schema, "queue_controls"),
        }

        compose = composer(names)
        return cls(
            control_channel=f"{schema}.control",
            heartbeat=compose(_HEARTBEAT),
            forget=compose(_FORGET),
            expire_nodes=compose(_EXPIRE_NODES),
            live_nodes=compose(_LIVE_NODES),
            elect=compose(_ELECT),
            resign=compose(_RESIGN),
            leader=compose(_LEADER),
            set_control=compose(_SET_CONTROL),
            reset_controls=compose(_RESET_CONTROLS),
            controls=compose(_CONTROLS),
            controls_for=compose(_CONTROLS_FOR),
            signal=compose(_SIGNAL),
            clock=compose(_CLOCK),
        )
