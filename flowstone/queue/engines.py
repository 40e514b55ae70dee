"""Engines: how an instance inserts and awaits jobs, chosen once when it is built (Oban's
`Engines.Basic` and `Inline`). `DatabaseEngine` writes to the jobs table for nodes to run;
`ManualEngine` writes too, but nodes run no queues and no plugins (tests drain them);
`InlineEngine` (`inline.py`) runs each job in the caller at insert, touching no database.
The facade validates and reports inserts, then hands them to its engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from flowstone.queue import awaiting
from flowstone.queue.config import TestingMode
from flowstone.queue.database import Database
from flowstone.queue.inline import InlineEngine
from flowstone.queue.insert import insert_plan
from flowstone.queue.job import Job
from flowstone.queue.plan import arun, run
from flowstone.queue.worker import NewJob, WorkerRegistry
from flowstone.queue.workflow import Workflow, insert_workflow_plan


class Engine(Protocol):
    """Inserting and awaiting jobs; `runs_queues`: whether nodes claim and run jobs and
    run their plugins."""

    runs_queues: bool

    def insert_all(self, jobs: Sequence[NewJob], conn: Any) -> Sequence[Job]:
        """Insert checked jobs (in `conn`'s transaction when given), in their order."""
        ...

    async def ainsert_all(self, jobs: Sequence[NewJob], conn: Any) -> Sequence[Job]:
        """Async twin of `insert_all`."""
        ...

    def insert_workflow(self, workflow: Workflow, conn: Any) -> dict[str, Job]:
        """Insert a checked workflow's jobs in one transaction; the jobs by name."""
        ...

    async def ainsert_workflow(self, workflow: Workflow, conn: Any) -> dict[str, Job]:
        """Async twin of `insert_workflow`."""
        ...

    def await_job(self, job_id: int, timeout: float | None) -> Any:
        """The job's recorded result once it finished (see `FlowStone.await_job`)."""
        ...

    async def aawait_job(self, job_id: int, timeout: float | None) -> Any:
        """Async twin of `await_job`."""
        ...


class DatabaseEngine:
    """Jobs go to the jobs table; nodes run them."""

    runs_queues = True

    def __init__(self, database: Database) -> None:
        self.database = database

    def insert_all(self, jobs: Sequence[NewJob], conn: Any) -> Sequence[Job]:
        """Insert in one statement (a transaction only when unique jobs take several)."""
        plan = insert_plan(self.database.statements.jobs, jobs)
        return self.database.execute(plan, conn, atomic=_unique(jobs))

    async def ainsert_all(self, jobs: Sequence[NewJob], conn: Any) -> Sequence[Job]:
        """Async twin of `insert_all`."""
        plan = insert_plan(self.database.statements.jobs, jobs)
        return await self.database.aexecute(plan, conn, atomic=_unique(jobs))

    def insert_workflow(self, workflow: Workflow, conn: Any) -> dict[str, Job]:
        """Insert the jobs and their pending dependencies under the workflow's lock."""
        statements = self.database.statements
        return self.database.execute(insert_workflow_plan(statements.jobs, statements.nodes, workflow), conn)

    async def ainsert_workflow(self, workflow: Workflow, conn: Any) -> dict[str, Job]:
        """Async twin of `insert_workflow`."""
        statements = self.database.statements
        plan = insert_workflow_plan(statements.jobs, statements.nodes, workflow)
        return await self.database.aexecute(plan, conn)

    def await_job(self, job_id: int, timeout: float | None) -> Any:
        """LISTEN for the job's end on a connection of its own (or poll where none keeps one)."""
        database = self.database
        plan = awaiting.await_plan(
            database.statements.jobs, awaiting.Deadline(job_id, timeout), database.poll_notices
        )
        with database.connect(direct=True, autocommit=True) as conn:
            return run(conn, plan)

    async def aawait_job(self, job_id: int, timeout: float | None) -> Any:
        """Async twin of `await_job`."""
        database = self.database
        plan = awaiting.await_plan(
            database.statements.jobs, awaiting.Deadline(job_id, timeout), database.poll_notices
        )
        async with await database.aconnect(direct=True, autocommit=True) as conn:
            return await arun(conn, plan)


class ManualEngine(DatabaseEngine):
    """Jobs go to the jobs table, and stay there until a test drains them."""

    runs_queues = False


def engine_for(mode: TestingMode, database: Database, registry: WorkerRegistry, instance: object) -> Engine:
    """The engine of a testing mode (`disabled`: the database's); inline jobs run on
    `registry`'s workers with `instance` as their `job.fs`."""
    if mode == "inline":
        return InlineEngine(registry, instance)
    if mode == "manual":
        return ManualEngine(database)
    return DatabaseEngine(database)


def _unique(jobs: Sequence[NewJob]) -> bool:
    """Whether inserting `jobs` takes several statements (which must commit together)."""
    return any(job.unique is not None for job in jobs)
