"""The queue's reads for people, written once: a job, a workflow or batch, the nodes and
the leader. `FlowStone` (`get_job`, `workflow`, `nodes`, `leader`) delegates to them,
and the read layer's `Insights` extends them, so both answer with the same plan and the
same types."""

from __future__ import annotations

from flowstone.queue.control import NodeInfo, leader_plan, nodes_plan
from flowstone.queue.database import Database
from flowstone.queue.job import Job
from flowstone.queue.manage import get_plan
from flowstone.queue.plan import Plan
from flowstone.queue.workflow import BatchState, WorkflowState, workflow_plan


class QueueReads:
    """Reads of the queue's tables, with their async twins."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def job(self, job_id: int) -> Job | None:
        """One job in full (args, meta, every error with its traceback), or None."""
        return self.database.execute(get_plan(self.database.statements.jobs, job_id))

    async def ajob(self, job_id: int) -> Job | None:
        """Async twin of `job`."""
        return await self.database.aexecute(get_plan(self.database.statements.jobs, job_id))

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        """A workflow's (or batch's) jobs (name, dependencies, how many it still waits on,
        the job with its progress and result) and their counts per state; None when it
        has no jobs."""
        return self.database.execute(workflow_plan(self.database.statements.jobs, workflow_id))

    async def aworkflow(self, workflow_id: str) -> WorkflowState | None:
        """Async twin of `workflow`."""
        return await self.database.aexecute(workflow_plan(self.database.statements.jobs, workflow_id))

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
        return self.database.execute(self._nodes_plan())

    async def anodes(self) -> list[NodeInfo]:
        """Async twin of `nodes`."""
        return await self.database.aexecute(self._nodes_plan())

    def _nodes_plan(self) -> Plan[list[NodeInfo]]:
        return nodes_plan(self.database.statements.nodes, self.database.settings.node_expiry)

    def leader(self) -> str | None:
        """The node currently holding the leader lease."""
        return self.database.execute(leader_plan(self.database.statements.nodes))

    async def aleader(self) -> str | None:
        """Async twin of `leader`."""
        return await self.database.aexecute(leader_plan(self.database.statements.nodes))
