"""`FlowStone`: the one object users hold — every public call, with sync and async twins,
over a `Database` (connections and statements), an engine (how jobs are inserted and
awaited: the testing modes) and an extension (what a higher layer adds to nodes).

Convention: every call that talks to the database has an async twin named with an
`a` prefix (`insert` / `ainsert`, `get_job` / `aget_job`, …).
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
import structlog

from flowstone.errors import ValidationError, ValidationTypeError
from flowstone.queue import control, manage, outcome_log, telemetry
from flowstone.queue.config import QueuesOption, Settings, TestingMode
from flowstone.queue.control import NodeInfo
from flowstone.queue.database import Database, settings_of
from flowstone.queue.dynamic_cron import CronManager
from flowstone.queue.engines import engine_for
from flowstone.queue.extension import Extension, extension_of
from flowstone.queue.job import Job, JobState, running_job
from flowstone.queue.plan import Plan
from flowstone.queue.plugins import CronEntry, Plugin
from flowstone.queue.plugins.cron import entries_from
from flowstone.queue.queries.statements import Statements
from flowstone.queue.reads import QueueReads
from flowstone.queue.runtime.node import Node
from flowstone.queue.worker import UNNAMED_MAIN, NewJob, Worker, WorkerRegistry, default_registry, use_default
from flowstone.queue.workflow import Batch, Workflow, WorkflowState
from flowstone.queue.workflow_retry import retry_job_plan, retry_workflow_plan

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
        assets: Extension | None = None,
        plugins: Sequence[Plugin] = (),
        data_dir: str | Path | None = None,
        **settings: Any,
    ) -> None:
        """`queues` maps names to a limit or a `QueueConfig`; `registry` holds the workers
        this instance runs (default: every `Worker` subclass); `assets` is the asset
        graph (an `AssetRegistry`, the asset layer's `Extension`: its schedules run on every
        node; default: the one `@asset` fills); `plugins` run on every node besides the
        built-in ones; `settings` are the fields of `Settings` (intervals, pool size, node
        name, …). A setting not given is read from its FLOWSTONE_* environment variable,
        else takes its default."""
        given = {"database_url": database_url, "schema_name": schema, "queues": queues, "data_dir": data_dir}
        self.database = self._database(
            settings_of(**{k: v for k, v in given.items() if v is not None}, **settings)
        )
        self.registry = registry if registry is not None else default_registry
        if assets is not None and not isinstance(assets, Extension):
            raise ValidationTypeError(
                f"FlowStone(assets=...) must be an AssetRegistry; got {type(assets).__name__}"
            )
        self.assets = assets
        self.plugins = list(plugins)
        self.cron_entries: list[CronEntry] = []
        self.cron = CronManager(self.database, self.registry)
        """Cron entries stored in the database, managed at run time (`add`, `pause`, …)."""
        self._nodes: dict[Node, asyncio.Task[None]] = {}
        self.engine = engine_for(self.settings.testing, self.database, self.registry, self)
        self.reads = QueueReads(self.database)
        """The queue's reads for people (`get_job`, `workflow`, `nodes`, `leader` answer
        through them; `flowstone.insights.Insights` extends them)."""

    def _database(self, settings: Settings) -> Database:
        """The database of these settings (a subclass may give its own kind)."""
        return Database(settings)

    def override(self, **settings: Any) -> None:
        """Change settings before the first connection (the CLI's --database-url, --node)."""
        self.database.override(**settings)
        self.engine = engine_for(self.settings.testing, self.database, self.registry, self)

    def _use_testing_mode(self, mode: TestingMode) -> None:
        """Run in testing `mode` from now on (`flowstone.testing.with_testing_mode`)."""
        self.database.settings = self.settings.model_copy(update={"testing": mode})
        self.engine = engine_for(mode, self.database, self.registry, self)

    @property
    def settings(self) -> Settings:
        """The instance's settings (see `Settings`)."""
        return self.database.settings

    @property
    def _statements(self) -> Statements:
        return self.database.statements

    @property
    def schema(self) -> str:
        """The schema holding FlowStone's tables."""
        return self.database.schema

    @property
    def database_url(self) -> str:
        """The server in use: the given URL, FLOWSTONE_DATABASE_URL, or the embedded one."""
        return self.database.url

    @property
    def sessions(self) -> bool:
        """Whether `connect(direct=True)` keeps session state (see `Database.sessions`)."""
        return self.database.sessions

    def migrate(self) -> None:
        """Bring the schema up to date (idempotent; safe from many processes at once);
        through `direct_url` when given."""
        self.database.migrate()

    # -- connections (see `Database`) -----------------------------------------------------

    def connect(self, *, direct: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new dedicated connection outside the pool (`Database.connect`)."""
        return self.database.connect(direct=direct, **kwargs)

    async def aconnect(self, *, direct: bool = False, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
        """Async twin of `connect`."""
        return await self.database.aconnect(direct=direct, **kwargs)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction that commits when the block exits
        cleanly (and rolls back on an exception)."""
        with self.database.connection() as conn:
            yield conn

    @asynccontextmanager
    async def aconnection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Async twin of `connection` (one pool per event loop)."""
        async with self.database.aconnection() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit mode (`Database.session`)."""
        with self.database.session() as conn:
            yield conn

    @asynccontextmanager
    async def asession(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Async twin of `session`."""
        async with self.database.asession() as conn:
            yield conn

    def close(self) -> None:
        """Close the sync pool (async pools close with `aclose`)."""
        self.database.close()

    async def aclose(self) -> None:
        """Close this loop's async pool and the sync pool."""
        await self.database.aclose()

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

    def insert_all(self, jobs: Sequence[NewJob], *, conn: Any = None) -> Sequence[Job]:
        """Insert many jobs in one statement; results in the same order as `jobs`."""
        with telemetry.inserting(_check_jobs(jobs)) as checked:
            return self.engine.insert_all(checked, conn)

    async def ainsert_all(self, jobs: Sequence[NewJob], *, conn: Any = None) -> Sequence[Job]:
        """Async twin of `insert_all`."""
        with telemetry.inserting(_check_jobs(jobs)) as checked:
            return await self.engine.ainsert_all(checked, conn)

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
        return self.database.execute(manage.list_plan(self._statements.jobs, where))

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
        return await self.database.aexecute(manage.list_plan(self._statements.jobs, where))

    def retry_job(self, job_id: int) -> Job | None:
        """Run a discarded, cancelled, completed, scheduled or retryable job again now; a
        failed workflow job re-arms the dependents its failure cancelled."""
        return self.database.execute(retry_job_plan(self._statements.jobs, job_id))

    async def aretry_job(self, job_id: int) -> Job | None:
        """Async twin of `retry_job`."""
        return await self.database.aexecute(retry_job_plan(self._statements.jobs, job_id))

    def cancel_job(self, job_id: int, *, reason: str | None = None) -> Job | None:
        """Cancel a job that has not finished; None when it already finished or does not exist.
        Its errors record `reason` and who cancelled it (database role and client).

        An executing job is stopped by its node: an async `perform` is cancelled; a sync one
        cannot be (a thread cannot be killed): its thread runs on, holding its slot, until
        `perform` returns, and its outcome is then ignored.
        """
        return self.database.execute(
            control.cancel_plan(self._statements.jobs, self._statements.nodes, job_id, reason)
        )

    async def acancel_job(self, job_id: int, *, reason: str | None = None) -> Job | None:
        """Async twin of `cancel_job`."""
        return await self.database.aexecute(
            control.cancel_plan(self._statements.jobs, self._statements.nodes, job_id, reason)
        )

    def delete_job(self, job_id: int) -> bool:
        """Delete a job that is not executing."""
        return self.database.execute(manage.delete_plan(self._statements.jobs, job_id))

    async def adelete_job(self, job_id: int) -> bool:
        """Async twin of `delete_job`."""
        return await self.database.aexecute(manage.delete_plan(self._statements.jobs, job_id))

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
        return self.database.execute(
            self._bulk("cancel", where, batch_size, dry_run, reason, all), atomic=False
        )

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
        return await self.database.aexecute(
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
        return self.database.execute(
            self._bulk("retry", where, batch_size, dry_run, everything=all), atomic=False
        )

    async def aretry_all_jobs(
        self,
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,
        **where: Any,
    ) -> int:
        """Async twin of `retry_all_jobs`."""
        return await self.database.aexecute(
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
        return self.database.execute(
            self._bulk("delete", where, batch_size, dry_run, everything=all), atomic=False
        )

    async def adelete_all_jobs(
        self,
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
        all: bool = False,
        **where: Any,
    ) -> int:
        """Async twin of `delete_all_jobs`."""
        return await self.database.aexecute(
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
        return manage.bulk_plan(self._statements.jobs, self._statements.nodes, bulk)

    # -- workflows, batches and results ---------------------------------------------------------

    def insert_workflow(self, workflow: Workflow, *, conn: Any = None) -> dict[str, Job]:
        """Insert a workflow's jobs in one transaction (in `conn`'s when given); the jobs
        by name. Appending (`Workflow(id=...)`) names jobs already in it as dependencies."""
        return self.engine.insert_workflow(_check_workflow(workflow), conn)

    async def ainsert_workflow(self, workflow: Workflow, *, conn: Any = None) -> dict[str, Job]:
        """Async twin of `insert_workflow`."""
        return await self.engine.ainsert_workflow(_check_workflow(workflow), conn)

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
        return self.database.execute(retry_workflow_plan(self._statements.jobs, workflow_id))

    async def aretry_workflow(self, workflow_id: str) -> list[Job]:
        """Async twin of `retry_workflow`."""
        return await self.database.aexecute(retry_workflow_plan(self._statements.jobs, workflow_id))

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
        return self.engine.await_job(job_id, timeout)

    async def aawait_job(self, job_id: int, *, timeout: float | None = None) -> Any:
        """Async twin of `await_job`."""
        return await self.engine.aawait_job(job_id, timeout)

    # -- steering --------------------------------------------------------------------------

    def pause_queue(self, queue: str, *, node: str | None = None) -> None:
        """Stop claiming from `queue` on `node` (default: every node); running jobs finish.
        Stored: nodes started later obey it too, until `reset_queue`."""
        self.database.execute(control.set_control_plan(self._statements.nodes, queue, node=node, paused=True))

    async def apause_queue(self, queue: str, *, node: str | None = None) -> None:
        """Async twin of `pause_queue`."""
        await self.database.aexecute(
            control.set_control_plan(self._statements.nodes, queue, node=node, paused=True)
        )

    def resume_queue(self, queue: str, *, node: str | None = None) -> None:
        """Resume claiming from `queue` on `node` (default: every node)."""
        self.database.execute(
            control.set_control_plan(self._statements.nodes, queue, node=node, paused=False)
        )

    async def aresume_queue(self, queue: str, *, node: str | None = None) -> None:
        """Async twin of `resume_queue`."""
        await self.database.aexecute(
            control.set_control_plan(self._statements.nodes, queue, node=node, paused=False)
        )

    def scale_queue(self, queue: str, limit: int, *, node: str | None = None) -> None:
        """Run at most `limit` jobs of `queue` at once on `node` (default: every node).
        Stored: it overrides the limit nodes started later are configured with, until
        `reset_queue`."""
        self.database.execute(control.set_control_plan(self._statements.nodes, queue, node=node, limit=limit))

    async def ascale_queue(self, queue: str, limit: int, *, node: str | None = None) -> None:
        """Async twin of `scale_queue`."""
        await self.database.aexecute(
            control.set_control_plan(self._statements.nodes, queue, node=node, limit=limit)
        )

    def reset_queue(self, queue: str, *, node: str | None = None) -> list[control.QueueControl]:
        """Clear the stored pause/scale settings of `queue` on every node (default), or
        only `node`'s own; the nodes go back to what they were configured with (`queues=`,
        `--queues`). The settings cleared."""
        return self.database.execute(control.reset_plan(self._statements.nodes, queue, node))

    async def areset_queue(self, queue: str, *, node: str | None = None) -> list[control.QueueControl]:
        """Async twin of `reset_queue`."""
        return await self.database.aexecute(control.reset_plan(self._statements.nodes, queue, node))

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Job counts per queue and state."""
        return self.database.execute(control.queue_counts_plan(self._statements.jobs))

    async def aqueue_counts(self) -> dict[str, dict[str, int]]:
        """Async twin of `queue_counts`."""
        return await self.database.aexecute(control.queue_counts_plan(self._statements.jobs))

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

    def all_cron_entries(self) -> list[CronEntry]:
        """The cron entries a node of this instance runs: workers' `cron`, `schedule` and
        the extension's (asset schedules)."""
        extension = extension_of(self.assets)
        added = [] if extension is None else extension.cron_entries(self.registry)
        return [*entries_from(self.registry), *self.cron_entries, *added]

    def node(self, queues: QueuesOption | None = None) -> Node:
        """A node for this instance (call inside an event loop; `run` and `start` do)."""
        extension = extension_of(self.assets)
        added = [] if extension is None else extension.plugins()
        return Node(self, queues, self.all_cron_entries(), [*self.plugins, *added])

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


def _check_jobs(jobs: Sequence[object]) -> list[NewJob]:
    """The jobs to insert, each checked before any is written; a bad one is named by its
    position in the batch."""
    return [_check_new(job, index) for index, job in enumerate(jobs)]


def _check_new(job: object, index: int) -> NewJob:
    if not isinstance(job, NewJob):
        raise ValidationTypeError(
            f"jobs[{index}]: expected a job built with Worker.new(...); got {type(job).__name__}"
        )
    if job.worker.startswith(UNNAMED_MAIN):
        raise ValidationError(
            f"jobs[{index}]: worker {job.worker!r} is defined in __main__ with no importable module "
            "(an interactive session, python -c, a notebook), so no worker process could run its jobs: "
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
    if running is not None and isinstance(running._fs, FlowStone):
        return running._fs
    return get_default()


def set_default(instance: FlowStone | None) -> None:
    """Replace the default instance (the test fixtures use this)."""
    global _default
    _default = instance


use_default(get_default)  # `Worker.enqueue` outside a job (the worker module lies below)
