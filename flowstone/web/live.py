"""Live updates: one LISTEN connection per dashboard, fanned out to every open page as
server-sent events.

The hub starts with the first subscriber and stops a little after the last one leaves,
so an idle dashboard holds no connection. It listens on the jobs, control and
materializations channels (a job became available, a queue was steered, a record
finished) and, because a job finishing notifies nobody, it also compares a cheap
fingerprint of the cluster (counts, running jobs, this minute's throughput) once per
`interval` seconds. Either way subscribers get a `change` event and refresh what they show.
Where no connection can keep a LISTEN (behind a transaction pooler without `direct_url`),
the fingerprint alone does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any

import psycopg
import structlog
from psycopg import sql

from flowstone.insights import Insights

_log = structlog.get_logger("flowstone.web")

LINGER = 10.0
"""Seconds the hub keeps listening after its last subscriber left (a page reloading)."""

KEEPALIVE = 15.0
"""Seconds between comments on an idle event stream, so proxies keep it open."""

COALESCE = 0.1
"""Seconds a burst of notifications is gathered into one event (pages refresh once)."""


class LiveHub:
    """Fans one LISTEN connection and one fingerprint check out to many subscribers."""

    def __init__(self, insights: Insights, interval: float = 1.0) -> None:
        self.insights = insights
        self.interval = interval
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._fingerprint: Hashable = None
        self._checked = 0.0
        self._listening = False
        self._epoch = 0
        self._changes = 0

    @property
    def version(self) -> str:
        """Where the hub is: listening since its `epoch`-th connection, `changes` events
        published since. A page renders it; the `connected` event a new stream starts with
        carries it, and the page refreshes only if it differs (it missed something)."""
        return f"{self._epoch}.{self._changes}"

    def _connected(self) -> dict[str, Any]:
        return {"kind": "connected", "version": self.version}

    @property
    def channels(self) -> list[str]:
        """The notification channels of the instance's schema."""
        schema = self.insights.database.schema
        return [f"{schema}.jobs", f"{schema}.control", f"{schema}.materializations"]

    @property
    def subscribers(self) -> int:
        """Open event streams (one per browser: its tabs share it)."""
        return len(self._subscribers)

    @property
    def running(self) -> bool:
        """Whether the hub's listener is running."""
        return self._task is not None and not self._task.done()

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue receiving every event while the block runs (starts the hub if needed)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self._subscribers.add(queue)
        if self._listening:
            queue.put_nowait(self._connected())
        self._ensure_running()
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand a change `event` to every subscriber (one that fell 100 events behind misses
        it: the next one makes it refresh all the same)."""
        self._changes += 1
        event = {**event, "version": self.version}
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def _ensure_running(self, ended: asyncio.Task[None] | None = None) -> None:
        """Start the listener when someone subscribes and it is not running (also when it
        ended, idle, just as someone subscribed)."""
        if ended is not None and not ended.cancelled() and ended.exception() is not None:
            _log.error("dashboard listener stopped", error=repr(ended.exception()))
            return
        if self._subscribers and not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flowstone dashboard hub")
            self._task.add_done_callback(self._ensure_running)

    async def stop(self) -> None:
        """Stop listening now (the app shuts down)."""
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        """Listen until no one subscribed for `LINGER` seconds; reconnect after errors."""
        while self._subscribers or not await self._idle():
            try:
                database = self.insights.database
                async with await database.aconnect(direct=True, autocommit=True) as conn:
                    for channel in self.channels if database.sessions else ():  # else: fingerprints only
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    await self._check_fingerprint()
                    self._listening, self._epoch = True, self._epoch + 1
                    for queue in list(self._subscribers):
                        with contextlib.suppress(asyncio.QueueFull):
                            queue.put_nowait(self._connected())
                    await self._relay(conn)
                    return
            except (psycopg.Error, OSError) as error:
                _log.warning("dashboard listener failed; retrying", error=str(error))
                await asyncio.sleep(min(self.interval * 5, 5.0))
            finally:
                self._listening = False

    async def _idle(self) -> bool:
        """Whether no one subscribed during `LINGER` seconds."""
        deadline = time.monotonic() + LINGER
        while time.monotonic() < deadline:
            if self._subscribers:
                return False
            await asyncio.sleep(self.interval)
        return True

    async def _relay(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Publish notifications (a burst as one event) and fingerprint changes, until
        no one subscribed for `LINGER` seconds."""
        left = time.monotonic()
        while self._subscribers or time.monotonic() - left < LINGER:
            if self._subscribers:
                left = time.monotonic()
            channels = [n.channel async for n in conn.notifies(timeout=self.interval, stop_after=1)]
            if channels:
                await asyncio.sleep(COALESCE)
                channels += [n.channel async for n in conn.notifies(timeout=0)]
                self.publish({"kind": "change", "channels": sorted(set(channels))})
            if time.monotonic() - self._checked >= self.interval:
                await self._check_fingerprint()

    async def _check_fingerprint(self) -> None:
        self._checked = time.monotonic()
        overview = await self.insights.aoverview()
        minute = (await self.insights.athroughput(1))[-1]
        queues = overview.queues
        fingerprint = (
            tuple((q.queue, tuple(q.counts.items()), q.running, q.paused_on, q.nodes) for q in queues),
            tuple((n.name, n.alive, n.leader) for n in overview.nodes),
            (minute.minute, minute.completed, minute.discarded),
        )
        if fingerprint != self._fingerprint:
            if self._fingerprint is not None:
                self.publish({"kind": "change", "channels": ["counts"]})
            self._fingerprint = fingerprint


async def event_stream(hub: LiveHub) -> AsyncIterator[str]:
    """The text of a server-sent event stream fed by `hub`."""
    yield f"retry: {int(hub.interval * 2000)}\n\n"
    async with hub.subscription() as events:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), KEEPALIVE)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            yield f"event: {event['kind']}\ndata: {json.dumps(event)}\n\n"
