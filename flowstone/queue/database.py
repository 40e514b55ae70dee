"""`Database`: one FlowStone schema's settings, pools, connections and statements.

What the runtime, plugins, executor, asset bookkeeping and read layer take — never the
`FlowStone` facade, which composes a `Database` and adds the public calls. Every call that
talks to the server has an async twin (`connect` / `aconnect`, `execute` / `aexecute`, …);
async pools are one per event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import psycopg
import pydantic
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from pydantic_settings import SettingsError

from flowstone import embedded
from flowstone.errors import ValidationError, one_line
from flowstone.queue import jsonb, pool
from flowstone.queue.config import Settings
from flowstone.queue.connecting import SCHEMA_MISSING, aprobe, check_url, connect_kwargs, probe, schema_error
from flowstone.queue.migrate import migrate
from flowstone.queue.plan import Plan, arun, arun_on, run, run_on
from flowstone.queue.queries.statements import Statements
from flowstone.queue.transactional import ajoined, joined, offloader

T = TypeVar("T")


class Database:
    """Connections to one schema: the settings, a sync pool and one async pool per event
    loop (each opened on first use), and the statements composed for the schema."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.statements = Statements(settings.schema_name)
        self._url: str | None = None
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._apools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool] = {}

    def override(self, **settings: Any) -> None:
        """Change settings before the first connection (the CLI's --database-url, --node)."""
        if self._pool is not None or self._apools:
            raise RuntimeError("settings cannot change once the instance has connected")
        self.settings = settings_of(**{**self.settings.model_dump(), **settings})
        self.statements = Statements(self.settings.schema_name)
        self._url = None

    @property
    def schema(self) -> str:
        """The schema holding FlowStone's tables."""
        return self.settings.schema_name

    @property
    def url(self) -> str:
        """The server in use: the given URL, FLOWSTONE_DATABASE_URL, or the embedded one."""
        if self._url is None:
            url = embedded.resolve_database_url(self.settings.database_url, self.settings.data_dir)
            self._url = check_url(url)
        return self._url

    @property
    def pooled(self) -> bool:
        """Whether `url` leads to a transaction pooler (`pooler="transaction"`)."""
        return self.settings.pooler == "transaction"

    @property
    def sessions(self) -> bool:
        """Whether `connect(direct=True)` gives a connection that keeps session state
        (LISTEN, session advisory locks): yes, unless `url` leads to a transaction pooler
        and no `direct_url` is given — then nodes and waiters poll instead."""
        return not self.pooled or self.settings.direct_url is not None

    @property
    def poll_notices(self) -> float | None:
        """None where waiters LISTEN; where no connection keeps a LISTEN (see `sessions`),
        how often they re-read what they wait for instead: `poll_interval`."""
        return None if self.sessions else self.settings.poll_interval

    def migrate(self) -> None:
        """Bring the schema up to date (idempotent; safe from many processes at once);
        through `direct_url` when given."""
        migrate(self.settings.direct_url or self.url, self.schema)

    # -- dedicated connections -------------------------------------------------------------

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
        return self.url, self.pooled

    def _bounded(self, url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """`kwargs` with a connect timeout (`connect_timeout`) unless the URL or they set one."""
        return {**connect_kwargs(url, self.settings.connect_timeout), **kwargs}

    # -- pooled connections ----------------------------------------------------------------

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
                probe(self.url, self.settings.connect_timeout)
                self._pool = pool.sync_pool(
                    self.url, self.settings.pool_size, self.settings.connect_timeout, pooled=self.pooled
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
        await aprobe(self.url, self.settings.connect_timeout)
        opened = await pool.async_pool(
            self.url, self.settings.pool_size, self.settings.connect_timeout, pooled=self.pooled
        )
        kept = self._apools.setdefault(asyncio.get_running_loop(), opened)
        if kept is not opened:
            await opened.close()
        return kept

    # -- running plans ---------------------------------------------------------------------

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


def settings_of(**values: Any) -> Settings:
    """Validated settings; invalid ones raise one ValidationError naming every bad field."""
    try:
        return Settings(**values)
    except (pydantic.ValidationError, SettingsError) as error:
        raise ValidationError(f"invalid FlowStone settings: {one_line(error)}") from None
