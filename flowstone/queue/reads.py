"""The queue's reads for people, written once: a job, a workflow or batch, the nodes and
the leader. `FlowStone` (`get_job`, `workflow`, `nodes`, `leader`) delegates to them,
and the read layer's `Insights` extends them, so both answer with the same plan and the
same types."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from flowstone.queue.config import Settings
from flowstone.queue.control import NodeInfo, leader_plan, nodes_plan
from flowstone.queue.job import Job
from flowstone.queue.manage import get_plan
from flowstone.queue.plan import Plan
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries
from flowstone.queue.workflow import BatchState, WorkflowState, workflow_plan

T = TypeVar("T")


class Source(Protocol):
    """What the reads need of an instance: its statements, settings, and plans run."""

    @property
    def queries(self) -> JobQueries: ...

    @property
    def node_queries(self) -> NodeQueries: ...

    @property
    def settings(self) -> Settings: ...

    def execute(self, plan: Plan[T], conn: Any = None, *, atomic: bool = True) -> T: ...

    async def aexecute(self, plan: Plan[T], conn: Any = None, *, atomic: bool = True) -> T: ...


class QueueReads:
    """Reads of the queue's tables, with their async twins."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def job(self, job_id: int) -> Job | None:
        """One job in full (args, meta, every error with its traceback), or None."""
        return self.source.execute(get_plan(self.source.queries, job_id))

    async def ajob(self, job_id: int) -> Job | None:
        """Async twin of `job`."""
        return await self.source.aexecute(get_plan(self.source.queries, job_id))

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        """A workflow's (or batch's) jobs (name, dependencies, how many it still waits on,
        the job with its progress and result) and their counts per state; None when it
        has no jobs."""
        return self.source.execute(workflow_plan(self.source.queries, workflow_id))

    async def aworkflow(self, workflow_id: str) -> WorkflowState | None:
        """Async twin of `workflow`."""
        return await self.source.aexecute(workflow_plan(self.source.queries, workflow_id))

    def batch(self, batch_id: str) -> BatchState | None:
        """A batch's counts per state (its callback aside) and its callback job."""
        state = self.workflow(batch_id)
        return None if state is None else state.batch

    async def abatch(self, batch_id: str) -> BatchState | None:
        """Async twin of `batch`."""
        state = await self.aworkflow(batch_id)
        return None if state is None else state.batch

    def nodes(self) -> list[NodeInfo]:
        """Known nodes, their queues, whether their heartbeat is current and who leads."""
        return self.source.execute(self._nodes_plan())

    async def anodes(self) -> list[NodeInfo]:
        """Async twin of `nodes`."""
        return await self.source.aexecute(self._nodes_plan())

    def _nodes_plan(self) -> Plan[list[NodeInfo]]:
        return nodes_plan(self.source.node_queries, self.source.settings.node_expiry)

    def leader(self) -> str | None:
        """The node currently holding the leader lease."""
        return self.source.execute(leader_plan(self.source.node_queries))

    async def aleader(self) -> str | None:
        """Async twin of `leader`."""
        return await self.source.aexecute(leader_plan(self.source.node_queries))
