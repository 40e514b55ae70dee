"""`FlowStone`: one configured connection to a FlowStone schema, with sync and async twins.

Convention: every call that talks to the database has an async twin named with an
`a` prefix (`insert` / `ainsert`, `get_job` / `aget_job`, …).
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import psycopg
import pydantic
import structlog
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from pydantic_settings import SettingsError

from flowstone import embedded
from flowstone.errors import ValidationError, ValidationTypeError, one_line
from flowstone.queue import (
    awaiting,
    control,
    inline,
    jsonb,
    manage,
    outcome_log,
    pool,
    telemetry,
)
from flowstone.queue.config import QueuesOption, Settings
from flowstone.queue.connecting import SCHEMA_MISSING, aprobe, check_url, connect_kwargs, probe, schema_error
from flowstone.queue.control import NodeInfo
from flowstone.queue.dynamic_cron import CronManager
from flowstone.queue.insert import insert_plan
from flowstone.queue.job import Job, JobState, running_job
from flowstone.queue.migrate import migrate
from flowstone.queue.plan import Plan, arun, arun_on, run, run_on
from flowstone.queue.plugins import CronEntry, Plugin
from flowstone.queue.plugins.base import sourced_plugins
from flowstone.queue.plugins.cron import sourced_entries
from flowstone.queue.queries.jobs import JobQueries
from flowstone.queue.queries.nodes import NodeQueries
from flowstone.queue.reads import QueueReads
from flowstone.queue.runtime.node import Node
from flowstone.queue.transactional import ajoined, joined, offloader
from flowstone.queue.worker import UNNAMED_MAIN, NewJob, Worker, WorkerRegistry, default_registry
from flowstone.queue.workflow import Batch, Workflow, WorkflowState, insert_workflow_plan
from flowstone.queue.workflow_retry import retry_job_plan, retry_workflow_plan

T = TypeVar("T")
_log = structlog.get_logger("flowstone")


class FlowStone:
    """The entry point: insert and manage jobs, migrate, and run a node (`run` / `start`)."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        schema: str | None = None,
        queues: QueuesOption | None = None,
        registry: WorkerRegistry | None = None,
        assets: object | None = None,
        plugins: Sequence[Plugin] = (),
        data_dir: str | Path | None = None,
        **settings: Any,
    ) -> None:
        """`queues` maps names to a limit or a `QueueConfig`; `registry` holds the workers
        this instance runs (default: every `Worker` subclass); `assets` is the asset
        graph (an `AssetRegistry`; default: the one `@asset` fills), carried for the asset
        layer; `plugins` run on every node besides the built-in ones; `settings` are the
        fields of `Settings` (intervals, pool size, node name, …). A setting not given is read
        from its FLOWSTONE_* environment variable, else takes its default."""
        given = {"database_url": database_url, "schema_name": schema, "queues": queues, "data_dir": data_dir}
        self.settings = _settings(**{k: v for k, v in given.items() if v is not None}, **settings)
        self.registry = registry if registry is not None else default_registry
        self.assets = assets
        self.plugins = list(plugins)
        self._url: str | None = None
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._apools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool] = {}
        self.cron_entries: list[CronEntry] = []
        self.cron = CronManager(self)
        """Cron entries stored in the database, managed at run time (`add`, `pause`, …)."""
        self._nodes: dict[Node, asyncio.Task[None]] = {}
        self._inline: inline.InlineRunner | None = None
        self.reads = QueueReads(self)
        """The queue's reads for people (`get_job`, `workflow`, `nodes`, `leader` answer
        through them; `flowstone.insights.Insights` extends them)."""

    def override(self, **settings: Any) -> None:
        """Change settings before the first connection (the CLI's --database-url, --node)."""
        if self._pool is not None or self._apools:
            raise RuntimeError("settings cannot change once the instance has connected")
        self.settings = _settings(**{**self.settings.model_dump(), **settings})
        self._url = None

    @property
    def queries(self) -> JobQueries:
        """The jobs table's statements for this schema (composed once per schema)."""
        return JobQueries.for_schema(self.settings.schema_name)

    @property
    def node_queries(self) -> NodeQueries:
        """The runtime tables' statements for this schema (composed once per schema)."""
        return NodeQueries.for_schema(self.settings.schema_name)

    @property
    def schema(self) -> str:
        """The schema holding FlowStone's tables."""
        return self.settings.schema_name

    @property
    def database_url(self) -> str:
        """The server in use: the given URL, FLOWSTONE_DATABASE_URL, or the embedded one."""
        if self._url is None:
            url = embedded.resolve_database_url(self.settings.database_url, self.settings.data_dir)
            self._url = check_url(url)
        return self._url

    @property
    def pooled(self) -> bool:
        """Whether `database_url` leads to a transaction pooler (`pooler="transaction"`)."""
        return self.settings.pooler == "transaction"

    @property
    def sessions(self) -> bool:
        """Whether `connect(direct=True)` gives a connection that keeps session state
        (LISTEN, session advisory locks): yes, unless `database_url` leads to a transaction
        pooler and no `direct_url` is given — then nodes and waiters poll instead."""
        return not self.pooled or self.settings.direct_url is not None

    @property
    def poll_notices(self) -> float | None:
        """None where waiters LISTEN; where no connection keeps a LISTEN (see `sessions`),
        how often they re-read what they wait for instead: `poll_interval`."""
        return None if self.sessions else self.settings.poll_interval

    def migrate(self) -> None:
        """Bring the schema up to date (idempotent; safe from many processes at once);
        through `direct_url` when given."""
        migrate(self.settings.direct_url or self.database_url, self.schema)

    # -- connections -------------------------------------------------------------------

    def connect(self, *, direct: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new dedicated connection outside the pool; `direct=True` for session state
        (LISTEN, session locks): to `direct_url` when given (see `sessions`)."""
        url, pooled = self._target(direct)
        conn = psycopg.connect(url, **pool.connection_kwargs(pooled=pooled, **self._bounded(url, kwargs)))
        jsonb.prepare(conn)
        return conn

    async def aconnect(self, *, direct: bool = False, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        """Async twin of `connect`."""
        url, pooled = self._target(direct)
        conn = await psycopg.AsyncConnection.connect(
            url, **pool.connection_kwargs(pooled=pooled, **self._bounded(url, kwargs))
        )
        jsonb.prepare(conn)
        return conn

    def _target(self, direct: bool) -> tuple[str, bool]:
        """The URL of a dedicated connection and whether it leads to a transaction pooler."""
        if direct and self.settings.direct_url is not None:
            return self.settings.direct_url, False
        return self.database_url, self.pooled

    def _bounded(self, url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """`kwargs` with a connect timeout (`connect_timeout`) unless the URL or they set one."""
        return {**connect_kwargs(url, self.settings.connect_timeout), **kwargs}

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction that commits when the block exits
        cleanly (and rolls back on an exception)."""
        with self.session() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def aconnection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Async twin of `connection` (one pool per event loop)."""
        async with self.asession() as conn, conn.transaction():
            yield conn

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit mode: each statement commits on its own.

        For single statements, or work that opens its own transactions; return it as you
        found it (no open transaction). Behind a transaction pooler (`pooled`) it keeps no
        session state from one transaction to the next."""
        with self._lock:
            if self._pool is None:
                probe(self.database_url, self.settings.connect_timeout)
                self._pool = pool.sync_pool(
                    self.database_url,
                    self.settings.pool_size,
                    self.settings.connect_timeout,
                    pooled=self.pooled,
                )
        with self._pool.connection() as conn:
            yield conn
            pool.mark_used(conn)

    @asynccontextmanager
    async def asession(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Async twin of `session` (one pool per event loop)."""
        apool = self._apools.get(asyncio.get_running_loop()) or await self._apool()
        async with apool.connection() as conn:
            yield conn
            pool.mark_used(conn)

    async def _apool(self) -> AsyncConnectionPool:
        """The running loop's pool, opened on first use. Callers that meet an unopened pool
        at once each open one while the others wait for the server: the first kept wins,
        the others are closed (a pool dropped unclosed leaves its connections and tasks
        behind)."""
        await aprobe(self.database_url, self.settings.connect_timeout)
        opened = await pool.async_pool(
            self.database_url, self.settings.pool_size, self.settings.connect_timeout, pooled=self.pooled
        )
        kept = self._apools.setdefault(asyncio.get_running_loop(), opened)
        if kept is not opened:
            await opened.close()
        return kept

    def execute(self, plan: Plan[T], conn: Any = None, *, atomic: bool = True) -> T:
        """Run a plan in `conn`'s transaction (see `transactional`), or on a pooled connection
        in a transaction of its own unless `atomic=False` (a single statement needs none)."""
        with self._diagnosed():
            if conn is not None:
                with joined(conn, atomic=atomic) as cursor:
                    return run_on(cursor, plan)
            if atomic:
                with self.connection() as pooled:
                    return run(pooled, plan)
            with self.session() as pooled:
                return run(pooled, plan)

    async def aexecute(self, plan: Plan[T], conn: Any = None, *, atomic: bool = True) -> T:
        """Async twin of `execute`."""
        with self._diagnosed():
            if conn is not None:
                offload = offloader(conn)
                if offload is not None:  # bound to a thread of its own: the sync call, run there
                    result: T = await offload(lambda: self.execute(plan, conn, atomic=atomic))
                    return result
                async with ajoined(conn, atomic=atomic) as cursor:
                    return await arun_on(cursor, plan)
            if atomic:
                async with self.aconnection() as pooled:
                    return await arun(pooled, plan)
            async with self.asession() as pooled:
                return await arun(pooled, plan)

    @contextmanager
    def _diagnosed(self) -> Iterator[None]:
        """A statement failing because the schema is missing or behind: one line saying
        to run `flowstone migrate` (a FlowStoneError of type schema_error)."""
        try:
            yield
        except SCHEMA_MISSING as error:
            raise schema_error(error, self.schema) from error

    def close(self) -> None:
        """Close the sync pool (async pools close with `aclose`)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        """Close this loop's async pool and the sync pool."""
        apool = self._apools.pop(asyncio.get_running_loop(), None)
        if apool is not None:
            await apool.close()
        self.close()

    def __enter__(self) -> FlowStone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> FlowStone:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- inserting -----------------------------------------------------------------------

    def insert(self, job: NewJob, *, conn: Any = None) -> Job:
        """Insert one job (in `conn`'s transaction when given); a unique conflict returns the
        existing job with `conflict=True`."""
        return self.insert_all([job], conn=conn)[0]

    async def ainsert(self, job: NewJob, *, conn: Any = None) -> Job:
        """Async twin of `insert`."""
        return (await self.ainsert_all([job], conn=conn))[0]

    def insert_all(self, jobs: Sequence[NewJob], *, conn: Any = None) -> list[Job]:
        """Insert many jobs in one statement; results in the same order as `jobs`."""
        with telemetry.inserting([_check_new(job) for job in jobs]) as checked:
            if self.settings.testing == "inline":
                return inline.call(lambda: self.inline_runner.arun_all(checked))
            return self.execute(insert_plan(self.queries, checked), conn, atomic=_unique(checked))

    async def ainsert_all(self, jobs: Sequence[NewJob], *, conn: Any = None) -> list[Job]:
        """Async twin of `insert_all`."""
        with telemetry.inserting([_check_new(job) for job in jobs]) as checked:
            if self.settings.testing == "inline":
                return await self.inline_runner.arun_all(checked)
            return await self.aexecute(insert_plan(self.queries, checked), conn, atomic=_unique(checked))

    @property
    def inline_runner(self) -> inline.InlineRunner:
        """What runs jobs at insert in the `inline` testing mode (and remembers them)."""
        if self._inline is None:
            self._inline = inline.InlineRunner(self)
        return self._inline

    # -- managing ------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        """The job with `job_id`, or None (`Insights.job`)."""
        return self.reads.job(job_id)

    async def aget_job(self, job_id: int) -> Job | None:
        """Async twin of `get_job`."""
        return await self.reads.ajob(job_id)

    def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: str | JobState | None = None,
        worker: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs matching every given filter, oldest first (`flowstone.insights` pages newest first)."""
        where = manage.JobFilter(queue, state, worker, oldest_first=True, limit=limit)
        return self.execute(manage.list_plan(self.queries, where))

    async def alist_jobs(
        self,
        *,
        queue: str | None = None,
        state: str | JobState | None = None,
        worker: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Async twin of `list_jobs`."""
        where = manage.JobFilter(queue, state, worker, oldest_first=True, limit=limit)
        return await self.aexecute(manage.list_plan(self.queries, where))

    def retry_job(self, job_id: int) -> Job | None:
        """Run a discarded, cancelled, completed, scheduled or retryable job again now; a
        failed workflow job re-arms the dependents its failure cancelled."""
        return self.execute(retry_job_plan(self.queries, job_id))

    async def aretry_job(self, job_id: int) -> Job | None:
        """Async twin of `retry_job`."""
        return await self.aexecute(retry_job_plan(self.queries, job_id))

    def cancel_job(self, job_id: int, *, reason: str | None = None) -> Job | None:
        """Cancel a job that has not finished; None when it already finished or does not exist.
        Its errors record `reason` and who cancelled it (database role and client).

        An executing job is stopped by its node: an async `perform` is cancelled; a sync one
        cannot be (a thread cannot be killed): its thread runs on, holding its slot, until
        `perform` returns, and its outcome is then ignored.
        """
        return self.execute(control.cancel_plan(self.queries, self.node_queries, job_id, reason))

    async def acancel_job(self, job_id: int, *, reason: str | None = None) -> Job | None:
        """Async twin of `cancel_job`."""
        return await self.aexecute(control.cancel_plan(self.queries, self.node_queries, job_id, reason))

    def delete_job(self, job_id: int) -> bool:
        """Delete a job that is not executing."""
        return self.execute(manage.delete_plan(self.queries, job_id))

    async def adelete_job(self, job_id: int) -> bool:
        """Async twin of `delete_job`."""
        return await self.aexecute(manage.delete_plan(self.queries, job_id))

    # -- in bulk -----------------------------------------------------------------------------

    def cancel_all_jobs(
        self,
        *,
        reason: str | None = None,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,  # the CLI's --all: every job, said explicitly
        **where: Any,
    ) -> int:
        """Cancel every unfinished job matching `where` (`queue`, `state`, `worker`, `tag`,
        `args` by containment) in transactions of `batch_size`; how many were (with
        `dry_run`: would be) cancelled. An empty filter is refused; with none, `all=True`
        must say that every job is meant."""
        return self.execute(self._bulk("cancel", where, batch_size, dry_run, reason, all), atomic=False)

    async def acancel_all_jobs(
        self,
        *,
        reason: str | None = None,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,
        **where: Any,
    ) -> int:
        """Async twin of `cancel_all_jobs`."""
        return await self.aexecute(
            self._bulk("cancel", where, batch_size, dry_run, reason, all), atomic=False
        )

    def retry_all_jobs(
        self,
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,
        **where: Any,
    ) -> int:
        """Retry every scheduled, retryable or finished job matching `where` (see
        `cancel_all_jobs`); how many were (with `dry_run`: would be) retried."""
        return self.execute(self._bulk("retry", where, batch_size, dry_run, everything=all), atomic=False)

    async def aretry_all_jobs(
        self,
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,
        **where: Any,
    ) -> int:
        """Async twin of `retry_all_jobs`."""
        return await self.aexecute(
            self._bulk("retry", where, batch_size, dry_run, everything=all), atomic=False
        )

    def delete_all_jobs(
        self,
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,
        **where: Any,
    ) -> int:
        """Delete every job matching `where` that is not executing (see `cancel_all_jobs`);
        how many were (with `dry_run`: would be) deleted."""
        return self.execute(self._bulk("delete", where, batch_size, dry_run, everything=all), atomic=False)

    async def adelete_all_jobs(
        self,
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,
        **where: Any,
    ) -> int:
        """Async twin of `delete_all_jobs`."""
        return await self.aexecute(
            self._bulk("delete", where, batch_size, dry_run, everything=all), atomic=False
        )

    def _bulk(
        self,
        action: manage.BulkAction,
        where: dict[str, Any],
        batch_size: int,
        dry_run: bool,
        reason: str | None = None,
        everything: bool = False,
    ) -> Plan[int]:
        """A bulk operation's plan, run outside a transaction (a transaction per batch)."""
        bulk = manage.Bulk(action, _filter(where), batch_size, dry_run, reason, everything)
        return manage.bulk_plan(self.queries, self.node_queries, bulk)

    # -- workflows, batches and results ---------------------------------------------------------

    def insert_workflow(self, workflow: Workflow, *, conn: Any = None) -> dict[str, Job]:
        """Insert a workflow's jobs in one transaction (in `conn`'s when given); the jobs
        by name. Appending (`Workflow(id=...)`) names jobs already in it as dependencies."""
        checked = _check_workflow(workflow)
        if self.settings.testing == "inline":
            return inline.call(lambda: self.inline_runner.arun_workflow(checked))
        return self.execute(insert_workflow_plan(self.queries, self.node_queries, checked), conn)

    async def ainsert_workflow(self, workflow: Workflow, *, conn: Any = None) -> dict[str, Job]:
        """Async twin of `insert_workflow`."""
        checked = _check_workflow(workflow)
        if self.settings.testing == "inline":
            return await self.inline_runner.arun_workflow(checked)
        return await self.aexecute(insert_workflow_plan(self.queries, self.node_queries, checked), conn)

    def insert_batch(self, batch: Batch, *, conn: Any = None) -> dict[str, Job]:
        """Insert a batch's jobs (named "0", "1", …) and its callback ("callback") in one
        transaction; the callback runs once they have all finished."""
        return self.insert_workflow(_check_batch(batch).workflow(), conn=conn)

    async def ainsert_batch(self, batch: Batch, *, conn: Any = None) -> dict[str, Job]:
        """Async twin of `insert_batch`."""
        return await self.ainsert_workflow(_check_batch(batch).workflow(), conn=conn)

    def retry_workflow(self, workflow_id: str) -> list[Job]:
        """Retry every discarded and cancelled job of a workflow in dependency order (those
        waiting on another retried job are held until it completes); the jobs changed."""
        return self.execute(retry_workflow_plan(self.queries, workflow_id))

    async def aretry_workflow(self, workflow_id: str) -> list[Job]:
        """Async twin of `retry_workflow`."""
        return await self.aexecute(retry_workflow_plan(self.queries, workflow_id))

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        """A workflow's (or batch's) jobs and their states, or None when it has none
        (`Insights.workflow`)."""
        return self.reads.workflow(workflow_id)

    async def aworkflow(self, workflow_id: str) -> WorkflowState | None:
        """Async twin of `workflow`."""
        return await self.reads.aworkflow(workflow_id)

    def await_job(self, job_id: int, *, timeout: float | None = None) -> Any:
        """Wait until the job finishes (woken by a notification) and return its recorded
        result (None when its worker records none); raise `JobFailedError` when it was
        discarded or cancelled, `AwaitTimeoutError` after `timeout` seconds."""
        if self.settings.testing == "inline":
            return self.inline_runner.settled(job_id)
        plan = awaiting.await_plan(self.queries, awaiting.Deadline(job_id, timeout), self.poll_notices)
        with self.connect(direct=True, autocommit=True) as conn:
            return run(conn, plan)

    async def aawait_job(self, job_id: int, *, timeout: float | None = None) -> Any:
        """Async twin of `await_job`."""
        if self.settings.testing == "inline":
            return self.inline_runner.settled(job_id)
        plan = awaiting.await_plan(self.queries, awaiting.Deadline(job_id, timeout), self.poll_notices)
        async with await self.aconnect(direct=True, autocommit=True) as conn:
            return await arun(conn, plan)

    # -- steering --------------------------------------------------------------------------

    def pause_queue(self, queue: str, *, node: str | None = None) -> None:
        """Stop claiming from `queue` on `node` (default: every node); running jobs finish.
        Stored: nodes started later obey it too, until `reset_queue`."""
        self.execute(control.set_control_plan(self.node_queries, queue, node=node, paused=True))

    async def apause_queue(self, queue: str, *, node: str | None = None) -> None:
        """Async twin of `pause_queue`."""
        await self.aexecute(control.set_control_plan(self.node_queries, queue, node=node, paused=True))

    def resume_queue(self, queue: str, *, node: str | None = None) -> None:
        """Resume claiming from `queue` on `node` (default: every node)."""
        self.execute(control.set_control_plan(self.node_queries, queue, node=node, paused=False))

    async def aresume_queue(self, queue: str, *, node: str | None = None) -> None:
        """Async twin of `resume_queue`."""
        await self.aexecute(control.set_control_plan(self.node_queries, queue, node=node, paused=False))

    def scale_queue(self, queue: str, limit: int, *, node: str | None = None) -> None:
        """Run at most `limit` jobs of `queue` at once on `node` (default: every node).
        Stored: it overrides the limit nodes started later are configured with, until
        `reset_queue`."""
        self.execute(control.set_control_plan(self.node_queries, queue, node=node, limit=limit))

    async def ascale_queue(self, queue: str, limit: int, *, node: str | None = None) -> None:
        """Async twin of `scale_queue`."""
        await self.aexecute(control.set_control_plan(self.node_queries, queue, node=node, limit=limit))

    def reset_queue(self, queue: str, *, node: str | None = None) -> list[control.QueueControl]:
        """Clear the stored pause/scale settings of `queue` on every node (default), or
        only `node`'s own; the nodes go back to what they were configured with (`queues=`,
        `--queues`). The settings cleared."""
        return self.execute(control.reset_plan(self.node_queries, queue, node))

    async def areset_queue(self, queue: str, *, node: str | None = None) -> list[control.QueueControl]:
        """Async twin of `reset_queue`."""
        return await self.aexecute(control.reset_plan(self.node_queries, queue, node))

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Job counts per queue and state."""
        return self.execute(control.queue_counts_plan(self.queries))

    async def aqueue_counts(self) -> dict[str, dict[str, int]]:
        """Async twin of `queue_counts`."""
        return await self.aexecute(control.queue_counts_plan(self.queries))

    def nodes(self) -> list[NodeInfo]:
        """Known nodes, their queues, whether their heartbeat is current and who leads
        (`Insights.nodes`)."""
        return self.reads.nodes()

    async def anodes(self) -> list[NodeInfo]:
        """Async twin of `nodes`."""
        return await self.reads.anodes()

    def leader(self) -> str | None:
        """The node currently holding the leader lease (`Insights.leader`)."""
        return self.reads.leader()

    async def aleader(self) -> str | None:
        """Async twin of `leader`."""
        return await self.reads.aleader()

    # -- running a node ----------------------------------------------------------------------

    def schedule(
        self,
        expression: str,
        worker: type[Worker],
        args: dict[str, Any] | None = None,
        *,
        timezone: str = "UTC",
    ) -> CronEntry:
        """Insert `worker(args)` on every tick of a 5-field cron expression (leader only)."""
        entry = CronEntry(expression, worker, args or {}, timezone)
        self.cron_entries.append(entry)
        return entry

    def node(self, queues: QueuesOption | None = None) -> Node:
        """A node for this instance (call inside an event loop; `run` and `start` do)."""
        plugins = [*self.plugins, *sourced_plugins(self)]
        return Node(self, queues, [*self.cron_entries, *sourced_entries(self)], plugins)

    def _started_node(self, queues: QueuesOption | None) -> Node:
        """A node about to run: its job outcomes are logged unless `log_jobs=False`."""
        node = self.node(queues)
        if self.settings.log_jobs:
            outcome_log.attach()
        return node

    def run(self, queues: QueuesOption | None = None) -> None:
        """Run a node in this thread until SIGTERM or SIGINT, then shut down gracefully
        (on uvloop when it is installed: `pip install 'flowstone[uvloop]'`)."""
        uvloop = importlib.util.find_spec("uvloop") is not None
        anyio.run(self._run_until_signal, queues, backend_options={"use_uvloop": uvloop})

    async def _run_until_signal(self, queues: QueuesOption | None) -> None:
        node = self._started_node(queues)
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, node)
            await node.run()
            group.cancel_scope.cancel()
        await self.aclose()

    async def start(self, queues: QueuesOption | None = None) -> Node:
        """Start a node in the background of the running event loop; returns once it runs."""
        node = self._started_node(queues)
        task = asyncio.get_running_loop().create_task(node.run())
        self._nodes[node] = task
        started = asyncio.ensure_future(node.started.wait())
        await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            started.cancel()
            task.result()
        return node

    async def stop(self) -> None:
        """Gracefully stop the nodes started with `start`."""
        for node, task in list(self._nodes.items()):
            node.stop()
            await task
            del self._nodes[node]


async def _stop_on_signal(node: Node) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            _log.info("stopping on signal", signal=signal.Signals(received).name, node=node.name)
            node.stop()


def _settings(**values: Any) -> Settings:
    """Validated settings; invalid ones raise one ValidationError naming every bad field."""
    try:
        return Settings(**values)
    except (pydantic.ValidationError, SettingsError) as error:
        raise ValidationError(f"invalid FlowStone settings: {one_line(error)}") from None


def _unique(jobs: Sequence[NewJob]) -> bool:
    """Whether inserting `jobs` takes several statements (which must commit together)."""
    return any(job.unique is not None for job in jobs)


def _filter(where: dict[str, Any]) -> manage.JobFilter:
    """The filter of a bulk operation: `queue`, `state`, `worker`, `tag`, `args`."""
    unknown = sorted(set(where) - {"queue", "state", "worker", "tag", "args"})
    if unknown:
        raise ValidationTypeError(
            f"unknown filter(s) {', '.join(unknown)}; filter by queue, state, worker, tag or args"
        )
    return manage.JobFilter(**where)


def _check_workflow(workflow: object) -> Workflow:
    if not isinstance(workflow, Workflow):
        raise ValidationTypeError(f"expected a flowstone.Workflow; got {type(workflow).__name__}")
    return workflow


def _check_batch(batch: object) -> Batch:
    if not isinstance(batch, Batch):
        raise ValidationTypeError(f"expected a flowstone.Batch; got {type(batch).__name__}")
    return batch


def _check_new(job: object) -> NewJob:
    if not isinstance(job, NewJob):
        raise ValidationTypeError(f"expected a job built with Worker.new(...); got {type(job).__name__}")
    if job.worker.startswith(UNNAMED_MAIN):
        raise ValidationError(
            f"worker {job.worker!r} is defined in __main__ with no importable module (an interactive "
            "session, python -c, a notebook), so no worker process could run its jobs: "
            "set name = '...' on the class"
        )
    return job


_default: FlowStone | None = None


def configure(database_url: str | FlowStone | None = None, **options: Any) -> FlowStone:
    """Set the default instance used by `Worker.enqueue` and the module-level API: a
    `FlowStone` you made (`configure(fs)`), or a new one from a URL and options. The
    previous default, if another, is closed."""
    global _default
    if isinstance(database_url, FlowStone):
        if options:
            raise ValidationTypeError(
                f"configure(fs) takes the instance alone; got options {', '.join(sorted(options))} too "
                "(give them to FlowStone(...))"
            )
        instance = database_url
    else:
        instance = FlowStone(database_url, **options)
    if _default is not None and _default is not instance:
        _default.close()
    _default = instance
    return _default


def get_default() -> FlowStone:
    """The default instance; created from the environment on first use."""
    global _default
    if _default is None:
        _default = FlowStone()
    return _default


def configured_default() -> FlowStone | None:
    """The default instance if one was configured or created, without creating one."""
    return _default


def current() -> FlowStone:
    """The instance of the job running in this context, else the default instance: what
    `Worker.enqueue` and the module-level asset API use when given no instance."""
    running = running_job()
    if running is not None and running._fs is not None:
        return running._fs
    return get_default()


def set_default(instance: FlowStone | None) -> None:
    """Replace the default instance (the test fixtures use this)."""
    global _default
    _default = instance
