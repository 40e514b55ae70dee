"""What a plugin is (one periodic action, on every node or on the leader only) and the
narrow view of the node it runs on (`PluginRuntime`): settings, statements, running a plan,
inserting jobs and waking a queue — nothing else of the node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import psycopg

from flowstone.queue.plan import arun
from flowstone.queue.pool import transaction_timeout

if TYPE_CHECKING:
    from flowstone.queue.config import Settings
    from flowstone.queue.host import Host
    from flowstone.queue.job import Job
    from flowstone.queue.plan import Plan
    from flowstone.queue.queries.jobs import JobQueries
    from flowstone.queue.queries.nodes import NodeQueries
    from flowstone.queue.worker import NewJob

T = TypeVar("T")


class PluginRuntime(Protocol):
    """The node as a plugin sees it."""

    @property
    def name(self) -> str:
        """The node's name."""
        ...

    @property
    def settings(self) -> Settings:
        """The instance's settings (intervals, limits, expiry)."""
        ...

    @property
    def jobs(self) -> JobQueries:
        """The jobs table's statements for this schema."""
        ...

    @property
    def nodes(self) -> NodeQueries:
        """The runtime tables' statements for this schema."""
        ...

    @property
    def connected_for(self) -> float:
        """Seconds this node has reached the database without a break (0 while it cannot)."""
        ...

    async def execute(self, plan: Plan[T]) -> T:
        """Run a plan in a transaction of its own on a pooled connection, its statements
        bounded by `statement_timeout` (not the database's default)."""
        ...

    async def insert_all(self, jobs: Sequence[NewJob]) -> Sequence[Job]:
        """Insert jobs as `FlowStone.ainsert_all` does."""
        ...

    def wake(self, queue: str) -> None:
        """Tell this node's producer of `queue` that jobs are available."""
        ...


class InstanceRuntime:
    """What an instance (`host`) gives a `PluginRuntime`: its settings and statements,
    plans in a transaction of their own on its pool, inserts. A node adds its name, its
    connection's age and wake-ups."""

    host: Host

    @property
    def settings(self) -> Settings:
        """The instance's settings."""
        return self.host.database.settings

    @property
    def jobs(self) -> JobQueries:
        """The jobs table's statements."""
        return self.host.database.statements.jobs

    @property
    def nodes(self) -> NodeQueries:
        """The runtime tables' statements."""
        return self.host.database.statements.nodes

    async def execute(self, plan: Plan[T]) -> T:
        """Run a plan on a pooled connection, in a transaction of its own (see `_bounded`)."""
        async with self._bounded() as conn:
            return await self.host.database.aexecute(plan, conn)

    async def insert_all(self, jobs: Sequence[NewJob]) -> Sequence[Job]:
        """Insert jobs through the instance, in a transaction of their own (see `_bounded`)."""
        async with self._bounded() as conn:
            return await self.host.ainsert_all(jobs, conn=conn)

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in a transaction whose statements get `statement_timeout`,
        as the producers' do — not a lower default of the database or role, which would
        fail a plugin's longer statements at every tick — and are abandoned 5 s after."""
        timeout = self.settings.statement_timeout
        with anyio.fail_after(timeout + 5.0):
            async with self.host.database.aconnection() as conn:
                await arun(conn, transaction_timeout(timeout))
                yield conn


class Plugin(Protocol):
    """Run `tick(runtime)` every `interval` seconds (only while leading if `leader_only`).

    Add your own with `FlowStone(plugins=[...])`; an exception in a tick is logged and the
    next tick runs as usual."""

    name: str
    leader_only: bool

    @property
    def interval(self) -> float:
        """Seconds between ticks."""
        ...

    async def tick(self, runtime: PluginRuntime) -> None:
        """Do one round of work."""
        ...
