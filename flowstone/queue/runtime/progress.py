"""Progress reports of a node's running jobs, coalesced: `job.progress(...)` only notes the
latest report; the writer stores what is pending at most once per `progress_interval`,
in one statement for all of the node's jobs.

Reports come from the event loop and from sync jobs' threads alike; a report that
arrives after its job ended matches nothing (the statement is guarded by state and
attempt), and one that cannot be written is dropped with a warning: progress is a
view of a job, never part of its outcome.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from psycopg.types.json import Jsonb

from flowstone.queue.job import Job
from flowstone.queue.outcomes import describe
from flowstone.queue.plan import Plan
from flowstone.queue.queries.jobs import JobQueries

if TYPE_CHECKING:
    from flowstone.queue.database import Database

_log = structlog.get_logger("flowstone.progress")


def progress_plan(queries: JobQueries, reports: dict[int, dict[str, Any]]) -> Plan[None]:
    """Store the latest progress report of each executing job (`id` → attempt, progress)."""
    yield queries.progress, {"reports": Jsonb(list(reports.values())), "ids": list(reports)}


class ProgressWriter:
    """Collects progress reports and writes them in batches (see the module's text)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._pending: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()

    def note(self, job: Job) -> None:
        """Keep `job`'s latest report for the next write (callable from any thread)."""
        report = {"id": job.id, "attempt": job.attempt, "progress": job.progress_report}
        with self._lock:
            self._pending[job.id] = report
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._ready.set)

    async def run(self) -> None:
        """Write pending reports, then rest `progress_interval`, until cancelled."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                await self.flush()
                await anyio.sleep(self.database.settings.progress_interval)  # the coalescing window
        finally:
            self._loop = None

    async def flush(self) -> None:
        """Write what is pending now (a failure drops it, with a warning)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            await self.database.aexecute(progress_plan(self.database.statements.jobs, pending), atomic=False)
        except Exception as error:  # never fatal: the reports are a view, not an outcome
            _log.warning("progress reports not written", count=len(pending), error=describe(error))
