"""A node's own connection for the statements that keep it alive (heartbeat, leadership,
queue controls): never waits behind a connection pool recovering from an outage, never
hangs on a frozen server (each statement has a deadline), and reconnects at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import psycopg

from flowstone.queue.plan import Plan, arun
from flowstone.queue.pool import bounded_options, local_timeout

if TYPE_CHECKING:
    from flowstone.queue.database import Database

T = TypeVar("T")
CONNECT_TIMEOUT = 10


class Link:
    """One connection, used by one statement at a time, replaced whenever it fails."""

    def __init__(self, database: Database, name: str) -> None:
        self.database = database
        self.name = name
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = anyio.Lock()

    async def execute(self, plan: Plan[T]) -> T:
        """Run `plan` in a transaction of its own within the statement timeout; on any
        failure the connection is dropped (the next call opens a new one)."""
        timeout = self.database.settings.statement_timeout
        deadline = timeout + 5
        async with self._lock:
            try:
                with anyio.fail_after(deadline):
                    conn = await self._connection()
                    async with conn.transaction():
                        for bound in local_timeout(timeout, pooled=self.database.pooled):
                            await arun(conn, bound)
                        return await arun(conn, plan)
            except TimeoutError as error:
                await self.close()
                raise psycopg.OperationalError(f"no answer within {deadline:g} s") from error
            except BaseException:
                await self.close()
                raise

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await self.database.aconnect(
                autocommit=True,
                application_name=self.name[:63],
                connect_timeout=CONNECT_TIMEOUT,
                **bounded_options(self.database.settings.statement_timeout, pooled=self.database.pooled),
            )
        return self._conn

    async def close(self) -> None:
        """Close the connection, if open (without waiting long on a dead server)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await conn.close()
