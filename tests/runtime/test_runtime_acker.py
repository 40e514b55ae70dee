"""The acker's flush, which a stopping node relies on before it deregisters."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from support import wait_for

from flowstone.queue.engine import Outcome
from flowstone.queue.job import Job, JobState
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.runtime.acker import Acker


class SlowDatabase:
    """Stands in for FlowStone: each write takes 50 ms and is recorded once done."""

    queries = JobQueries.for_schema("flowstone")

    def __init__(self) -> None:
        self.writing = False
        self.written: list[int] = []

    async def aexecute(self, plan: Any) -> None:
        self.writing = True
        _, params = next(plan)
        await anyio.sleep(0.05)
        self.written.extend(ack["id"] for ack in params["acks"].obj)


@pytest.mark.anyio
async def test_flush_waits_for_the_batch_in_flight() -> None:
    database = SlowDatabase()
    acker = Acker(database, batch_size=10, on_written=lambda batch: None)  # type: ignore[arg-type]
    async with anyio.create_task_group() as group:
        group.start_soon(acker.run)
        job = Job(id=7, state=JobState.EXECUTING, queue="q", worker="w", args={})
        acker.push(Outcome(job, JobState.COMPLETED))
        await wait_for(lambda: database.writing, message="the write to begin")
        await acker.flush()
        assert database.written == [7]
        group.cancel_scope.cancel()
