"""Reads of the queue side for front ends: the cluster overview and pages of jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowstone.queue.control import leader_plan, nodes_plan, queue_counts_plan
from flowstone.queue.job import Job, JobState
from flowstone.queue.manage import JobFilter, list_plan
from flowstone.queue.plan import Plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries


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


@dataclass(frozen=True)
class QueueOverview:
    """One queue: jobs per state, and how the alive nodes run it (with the cluster-wide
    `global_limit` and `rate_limit` they apply, if any)."""

    queue: str
    counts: dict[str, int]
    nodes: int = 0
    paused_on: int = 0
    limit: int = 0
    running: int = 0
    global_limit: int | None = None
    rate_limit: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClusterOverview:
    """Every queue (known from its jobs or a node running it), every node, the leader."""

    queues: list[QueueOverview]
    nodes: list[NodeInfo]
    leader: str | None

    @property
    def alive(self) -> list[NodeInfo]:
        """The nodes whose heartbeat is current."""
        return [node for node in self.nodes if node.alive]


def overview_plan(jobs: JobQueries, nodes: NodeQueries, expiry: float) -> Plan[ClusterOverview]:
    """Counts per queue and state, the nodes and the leader, assembled per queue."""
    counts = yield from queue_counts_plan(jobs)
    node_rows = yield from nodes_plan(nodes, expiry)
    leader = yield from leader_plan(nodes)
    infos = [NodeInfo(**row, leader=row["name"] == leader) for row in node_rows]
    names = sorted(set(counts) | {queue for info in infos for queue in info.queues})
    return ClusterOverview([_queue(name, counts.get(name, {}), infos) for name in names], infos, leader)


def _queue(name: str, counts: dict[str, int], infos: list[NodeInfo]) -> QueueOverview:
    running_on = [info.queues[name] for info in infos if info.alive and name in info.queues]
    return QueueOverview(
        queue=name,
        counts={state.value: counts.get(state.value, 0) for state in JobState},
        nodes=len(running_on),
        paused_on=sum(1 for queue in running_on if queue.get("paused")),
        limit=sum(int(queue.get("limit", 0)) for queue in running_on),
        running=sum(int(queue.get("running", 0)) for queue in running_on),
        global_limit=next((q["global_limit"] for q in running_on if q.get("global_limit")), None),
        rate_limit=next((q["rate_limit"] for q in running_on if q.get("rate_limit")), None),
    )


@dataclass(frozen=True)
class JobPage:
    """One page of jobs and the cursor of the next page (None on the last one)."""

    jobs: list[Job]
    next_cursor: int | None = None
    where: JobFilter = field(default_factory=JobFilter)


def jobs_plan(jobs: JobQueries, where: JobFilter) -> Plan[JobPage]:
    """A page of jobs matching `where` (keyset paging on the id)."""
    found = yield from list_plan(jobs, where)
    cursor = found[-1].id if len(found) == where.limit else None
    return JobPage(found, cursor, where)
