"""Steering a cluster: pause, resume and scale queues, cancel jobs, see queues and nodes.

Changes are stored in `queue_controls` (so nodes that start or reconnect later obey
them) and signalled with NOTIFY so running nodes apply them at once.
"""

from __future__ import annotations

import json
from typing import Any

from flowstone.queue.job import Job
from flowstone.queue.plan import Plan, Row, single
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries
from flowstone.queue.validation import check_name

ALL_NODES = "*"


def set_control_plan(
    queries: NodeQueries,
    queue: str,
    *,
    node: str | None = None,
    paused: bool | None = None,
    limit: int | None = None,
) -> Plan[Row]:
    """Store and signal a queue's desired state for one node or all (`node=None`)."""
    check_name(queue, "queue")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer; got {limit!r}")
    target = node or ALL_NODES
    action = "scale" if limit is not None else ("pause" if paused else "resume")
    signal = {"action": action, "queue": queue, "node": target, "paused": paused, "limit": limit}
    rows = yield (
        queries.set_control,
        {
            "queue": queue,
            "node": target,
            "paused": paused,
            "limit": limit,
            "channel": queries.control_channel,
            "signal": json.dumps(signal),
        },
    )
    return rows[0]


def cancel_plan(jobs: JobQueries, nodes: NodeQueries, job_id: int) -> Plan[Job | None]:
    """Cancel a job that has not finished; an executing one is stopped by its node."""
    signal = json.dumps({"action": "cancel", "job_id": job_id, "node": ALL_NODES})
    rows = yield jobs.cancel, {"id": job_id, "channel": nodes.control_channel, "signal": signal}
    if not rows:
        return None
    row = {key: value for key, value in rows[0].items() if key not in ("previous_state", "notified")}
    return Job.from_row(row)


def queue_counts_plan(jobs: JobQueries) -> Plan[dict[str, dict[str, int]]]:
    """Job counts per queue and state (the `queue_stats` view)."""
    rows = yield from single(jobs.counts, {})
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["queue"], {})[row["state"]] = row["count"]
    return counts


def nodes_plan(nodes: NodeQueries, expiry: float) -> Plan[list[dict[str, Any]]]:
    """Known nodes with their queues, heartbeats and whether they are alive."""
    rows = yield from single(nodes.live_nodes, {"expiry": expiry})
    return [dict(row) for row in rows]


def leader_plan(nodes: NodeQueries) -> Plan[str | None]:
    """The node holding an unexpired leader lease, if any."""
    rows = yield from single(nodes.leader, {})
    return str(rows[0]["node"]) if rows else None
