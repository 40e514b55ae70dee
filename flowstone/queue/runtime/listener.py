"""One dedicated LISTEN connection per node; reconnects with backoff and says so. Where
no connection can keep a LISTEN (behind a transaction pooler without `direct_url`), a
`Poller` stands in for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio
import structlog
from psycopg import sql

from flowstone.queue.runtime.reconnect import TRANSIENT, Backoff

if TYPE_CHECKING:
    from flowstone.queue.database import Database

_log = structlog.get_logger("flowstone.listener")


class Listener:
    """Delivers notification payloads to a handler per channel.

    `on_connect` runs after every (re)connection: notifications sent while we were away
    are lost, so the node re-reads what it may have missed (queues, controls).
    """

    def __init__(
        self,
        database: Database,
        handlers: Mapping[str, Callable[[str], None]],
        on_connect: Callable[[], None],
    ) -> None:
        self.database = database
        self.handlers = dict(handlers)
        self.on_connect = on_connect
        self.connected = anyio.Event()

    async def run(self) -> None:
        """Listen forever (until cancelled), reconnecting after any connection loss."""
        backoff = Backoff()
        while True:
            try:
                await self._listen(backoff)
            except TRANSIENT as error:
                _log.warning("listener connection lost; reconnecting", error=str(error))
            await backoff.wait()

    async def _listen(self, backoff: Backoff) -> None:
        conn = await self.database.aconnect(direct=True, autocommit=True)
        async with conn:
            for channel in self.handlers:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            backoff.reset()
            self.on_connect()
            self.connected.set()
            async for notify in conn.notifies():
                handler = self.handlers.get(notify.channel)
                if handler is not None:
                    handler(notify.payload)


class Poller:
    """In place of a `Listener`: every `interval` seconds `tick` reads what notifications
    would have said (queue controls, cancelled jobs). Producers poll on their own."""

    def __init__(self, interval: float, tick: Callable[[], Awaitable[None]]) -> None:
        self.interval = interval
        self.tick = tick
        self.connected = anyio.Event()

    async def run(self) -> None:
        """Tick forever (until cancelled); a failed tick is logged and the next one tried."""
        self.connected.set()
        while True:
            await anyio.sleep(self.interval)
            try:
                await self.tick()
            except TRANSIENT as error:
                _log.warning("polling for controls failed", error=str(error))
