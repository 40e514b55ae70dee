"""One dedicated LISTEN connection per node; reconnects with backoff and says so."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio
import structlog
from psycopg import sql

from flowstone.queue.runtime.reconnect import TRANSIENT, Backoff

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone

_log = structlog.get_logger("flowstone.listener")


class Listener:
    """Delivers notification payloads to a handler per channel.

    `on_connect` runs after every (re)connection: notifications sent while we were away
    are lost, so the node re-reads what it may have missed (queues, controls).
    """

    def __init__(
        self,
        fs: FlowStone,
        handlers: Mapping[str, Callable[[str], None]],
        on_connect: Callable[[], None],
    ) -> None:
        self.fs = fs
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
        conn = await self.fs.aconnect(autocommit=True)
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
