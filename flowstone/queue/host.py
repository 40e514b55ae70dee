"""`Host`: what the runtime needs of the instance it runs for — a `FlowStone` is one,
though the runtime never names the facade (it lies above the runtime)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from flowstone.queue.database import Database
from flowstone.queue.engines import Engine
from flowstone.queue.job import Job
from flowstone.queue.worker import NewJob, WorkerRegistry


class Host(Protocol):
    """The instance a node runs for: its database, workers and engine, and inserting
    (what plugins insert is checked and reported as any insert). The host itself is what
    a running job's `job.fs` gives."""

    @property
    def database(self) -> Database:
        """Settings, pools and statements."""
        ...

    @property
    def registry(self) -> WorkerRegistry:
        """The workers a node runs."""
        ...

    @property
    def engine(self) -> Engine:
        """How jobs are inserted, and whether nodes run queues."""
        ...

    async def ainsert_all(self, jobs: Sequence[NewJob], *, conn: Any = None) -> Sequence[Job]:
        """Insert jobs in one statement."""
        ...
