"""Live updates: one LISTEN connection per dashboard whatever the number of open pages,
an event when a job becomes available, when jobs move without notifying (a finish),
and none held once every page closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from psycopg.rows import dict_row
from support import wait_for
from web_support import Echo

from flowstone import FlowStone
from flowstone.insights import Insights
from flowstone.web import live
from flowstone.web.live import LiveHub, event_stream

pytestmark = pytest.mark.anyio


async def listeners(fs: FlowStone) -> int:
    """Connections of this database that are LISTENing (the hub's, and nobody else's)."""
    async with fs.aconnection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
        return int(row["n"]) if row else 0


async def next_event(events: asyncio.Queue[dict[str, Any]], channel: str) -> dict[str, Any]:
    """The next event naming `channel`, within 10 s."""
    async with asyncio.timeout(10):
        while True:
            event = await events.get()
            if channel in event.get("channels", ()):
                return event


@pytest.fixture
async def hub(app_fs: FlowStone, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LiveHub]:
    monkeypatch.setattr(live, "LINGER", 0.3)
    monkeypatch.setattr(live, "COALESCE", 0.01)
    hub = LiveHub(Insights(app_fs), interval=0.1)
    yield hub
    await hub.stop()
    await app_fs.aclose()


async def test_many_pages_share_one_listener(hub: LiveHub, app_fs: FlowStone) -> None:
    async with AsyncExitStack() as pages:
        queues = [await pages.enter_async_context(hub.subscription()) for _ in range(5)]
        await wait_for(lambda: listeners(app_fs), message="the hub to listen")
        assert await listeners(app_fs) == 1
        assert [(await queue.get()) for queue in queues] == [{"kind": "connected", "version": "1.0"}] * 5
        job = await app_fs.ainsert(Echo.new({}))
        events = [await next_event(queue, f"{app_fs.schema}.jobs") for queue in queues]
        assert all(event["kind"] == "change" for event in events)
        async with app_fs.aconnection() as conn:  # a job finishing notifies nobody: the counts tell
            await conn.execute(
                "UPDATE flowstone.jobs SET state = 'completed', completed_at = now() WHERE id = %s", (job.id,)
            )
        await next_event(queues[0], "counts")
    await wait_for(lambda: not hub.running, message="the hub to stop once no page is open")
    assert await listeners(app_fs) == 0


async def test_the_stream_is_server_sent_events(hub: LiveHub, app_fs: FlowStone) -> None:
    stream = event_stream(hub)
    assert await anext(stream) == "retry: 200\n\n"
    connected = 'event: connected\ndata: {"kind": "connected", "version": "1.0"}\n\n'
    assert await asyncio.wait_for(anext(stream), 10) == connected
    assert hub.version == "1.0"
    await app_fs.ainsert(Echo.new({}))
    text = await asyncio.wait_for(anext(stream), 10)
    change = {"kind": "change", "channels": [f"{app_fs.schema}.jobs"], "version": "1.1"}
    assert text == f"event: change\ndata: {json.dumps(change)}\n\n"
    await stream.aclose()
