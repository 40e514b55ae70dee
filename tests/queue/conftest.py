"""Shared helpers for the queue-core tests: one claim/run/ack round (plain SQL: the
`sql` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from flowstone import FlowStone, Job
from flowstone.queue.engine import Outcome, ack_plan, claim_plan, stage_plan
from flowstone.queue.executor import Executor

NODE = "test-node"


class Engine:
    """The engine operations the runtime calls, driven one step at a time."""

    def __init__(self, fs: FlowStone) -> None:
        self.fs = fs
        self.executor = Executor(fs.registry, fs)

    def claim(self, queue: str, limit: int = 10, node: str = NODE) -> list[Job]:
        return self.fs.database.execute(claim_plan(self.fs.database.statements.jobs, queue, limit, node))

    def run_jobs(self, jobs: Sequence[Job]) -> list[Outcome]:
        async def run() -> list[Outcome]:
            return [await self.executor.run_job(job) for job in jobs]

        return anyio.run(run)

    def ack(self, outcomes: Sequence[Outcome]) -> set[int]:
        return self.fs.database.execute(ack_plan(self.fs.database.statements.jobs, outcomes))

    def stage(self, until: str | None = None, queue: str | None = None) -> dict[str, int]:
        return self.fs.database.execute(
            stage_plan(self.fs.database.statements.jobs, until=until, queue=queue)
        )

    def round(self, queue: str, limit: int = 10) -> list[Outcome]:
        """Claim, run and acknowledge once; every ack must land."""
        outcomes = self.run_jobs(self.claim(queue, limit))
        assert self.ack(outcomes) == {o.job.id for o in outcomes}
        return outcomes


@pytest.fixture
def engine(flowstone: FlowStone) -> Engine:
    """Claim/run/ack helpers on the test's FlowStone."""
    return Engine(flowstone)
