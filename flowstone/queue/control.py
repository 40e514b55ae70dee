"""Steering a cluster: pause, resume and scale queues (and reset them), cancel jobs, see
queues and nodes.

Changes are stored in `queue_controls` (so nodes that start or reconnect later obey
them) and signalled with NOTIFY so running nodes apply them at once. A stored setting
overrides what a node was configured with until it is reset (`reset_queue`): the node
says so in its log when it starts, and its heartbeat publishes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pydantic

from flowstone.errors import ValidationError
from flowstone.queue.config import MAX_LIMIT
from flowstone.queue.engine import lock_workflows_of
from flowstone.queue.job import Job
from flowstone.queue.plan import Plan, Row, single
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries
from flowstone.queue.validation import check_name, clean_text

ALL_NODES = "*"
Action = Literal["cancel", "pause", "resume", "scale", "reset"]


class Signal(pydantic.BaseModel):
    """A message on the control channel. Any database role can NOTIFY, so receivers parse
    every payload with this model and ignore what does not fit; senders build theirs with
    it too, so both apply the same rules (a limit of at least 1, a queue to steer)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", strict=True)

    action: Action
    node: str = ALL_NODES
    job_id: int | None = None
    queue: str | None = pydantic.Field(default=None, min_length=1, max_length=128)
    paused: bool | None = None
    limit: int | None = pydantic.Field(default=None, ge=1, le=MAX_LIMIT)

    @pydantic.model_validator(mode="after")
    def _complete(self) -> Signal:
        if self.action == "cancel" and self.job_id is None:
            raise ValueError("a cancel signal names a job_id")
        if self.action != "cancel" and self.queue is None:
            raise ValueError(f"a {self.action} signal names a queue")
        if self.action == "scale" and self.limit is None:
            raise ValueError("a scale signal names a limit")
        if self.action in ("pause", "resume") and self.paused is None:
            raise ValueError(f"a {self.action} signal says paused true or false")
        return self

    def for_node(self, node: str) -> bool:
        """Whether the signal addresses `node`."""
        return self.node in (ALL_NODES, node)

    def to_json(self) -> str:
        """The payload to NOTIFY."""
        return self.model_dump_json()


def parse_signal(payload: str) -> Signal:
    """The signal in `payload`; pydantic's ValidationError (a ValueError) when it is none."""
    return Signal.model_validate_json(payload)


def set_control_plan(
    nodes: NodeQueries,
    queue: str,
    *,
    node: str | None = None,
    paused: bool | None = None,
    limit: int | None = None,
) -> Plan[Row]:
    """Store and signal a queue's desired state for one node or all (`node=None`)."""
    check_name(queue, "queue")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
    ):
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}; got {limit!r}")
    target = node or ALL_NODES
    action: Action = "scale" if limit is not None else ("pause" if paused else "resume")
    signal = Signal(action=action, queue=queue, node=target, paused=paused, limit=limit)
    rows = yield (
        nodes.set_control,
        {
            "queue": queue,
            "node": target,
            "paused": paused,
            "limit": limit,
            "channel": nodes.control_channel,
            "signal": signal.to_json(),
        },
    )
    return rows[0]


@dataclass(frozen=True)
class QueueControl:
    """A stored setting of a queue, for one node or all (`node` "*"): paused and/or a
    limit (None: not set), overriding what the nodes were configured with."""

    queue: str
    node: str
    paused: bool | None
    limit: int | None
    updated_at: datetime


def reset_plan(nodes: NodeQueries, queue: str, node: str | None = None) -> Plan[list[QueueControl]]:
    """Clear the stored settings of `queue`: on every node (and for all of them), or only
    `node`'s own; the nodes concerned go back to their configured settings (then apply
    what is still stored for them). The settings cleared."""
    check_name(queue, "queue")
    if node is not None:
        check_name(node, "node")
    rows = yield nodes.reset_controls, {"queue": queue, "node": node}
    signal = Signal(action="reset", queue=queue, node=node or ALL_NODES)
    yield nodes.signal, {"channel": nodes.control_channel, "signal": signal.to_json()}
    return [QueueControl(**row) for row in rows]


def controls_plan(nodes: NodeQueries) -> Plan[list[QueueControl]]:
    """Every stored queue setting, by queue and node."""
    rows = yield from single(nodes.controls, {})
    return [QueueControl(**row) for row in rows]


def cancel_plan(
    jobs: JobQueries, nodes: NodeQueries, job_id: int, reason: str | None = None
) -> Plan[Job | None]:
    """Cancel a job that has not finished, recording `reason` (default "by request") and
    who cancelled it; an executing one is stopped by its node."""
    cancelled = yield from cancel_ids_plan(jobs, nodes, [job_id], reason)
    return cancelled[0] if cancelled else None


def cancel_ids_plan(
    jobs: JobQueries, nodes: NodeQueries, ids: Sequence[int], reason: str | None = None
) -> Plan[list[Job]]:
    """Cancel those of the jobs `ids` that have not finished (see `cancel_plan`); the jobs
    waiting on them in workflows are cancelled too unless they ignore it."""
    yield from lock_workflows_of(jobs, ids)
    why = clean_text(reason or "by request", 1000)
    params = {"ids": list(ids), "reason": why, "kind": None, "channel": nodes.control_channel}
    rows = yield jobs.cancel, params
    return [Job.from_row(_without(row, "previous_state", "notified")) for row in rows]


def _without(row: Row, *keys: str) -> Row:
    return {key: value for key, value in row.items() if key not in keys}


def queue_counts_plan(jobs: JobQueries) -> Plan[dict[str, dict[str, int]]]:
    """Job counts per queue and state (the `queue_stats` view)."""
    rows = yield from single(jobs.counts, {})
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["queue"], {})[row["state"]] = row["count"]
    return counts


@dataclass(frozen=True)
class NodeInfo:
    """A node as its heartbeat describes it: its queues (limit, paused, running) and
    whether it is alive (heartbeat within the expiry) and leading."""

    name: str
    incarnation: str
    queues: dict[str, dict[str, Any]]
    started_at: datetime
    heartbeat_at: datetime
    alive: bool
    leader: bool


def cluster_plan(nodes: NodeQueries, expiry: float) -> Plan[tuple[list[NodeInfo], str | None]]:
    """Known nodes (their queues, heartbeats, whether they are alive and leading) and the
    leader (which may be a node no longer listed)."""
    rows = yield from single(nodes.live_nodes, {"expiry": expiry})
    leader = yield from leader_plan(nodes)
    return [NodeInfo(**row, leader=row["name"] == leader) for row in rows], leader


def nodes_plan(nodes: NodeQueries, expiry: float) -> Plan[list[NodeInfo]]:
    """Known nodes with their queues, heartbeats and whether they are alive and leading."""
    infos, _ = yield from cluster_plan(nodes, expiry)
    return infos


def leader_plan(nodes: NodeQueries) -> Plan[str | None]:
    """The node holding an unexpired leader lease, if any."""
    rows = yield from single(nodes.leader, {})
    return str(rows[0]["node"]) if rows else None
