"""Keep a runtime loop alive across database outages: reconnect with capped exponential backoff."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import psycopg
import psycopg_pool
import structlog

from flowstone.errors import FlowStoneError

T = TypeVar("T")
_log = structlog.get_logger("flowstone.runtime")

# What a lost or restarting server looks like from psycopg and its pool.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)


class Backoff:
    """Delays of 0.1 s doubling up to `cap`; `reset` after a success."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    async def wait(self) -> None:
        """Sleep the current delay, then double it (the outage is being waited out)."""
        await anyio.sleep(self.delay)
        self.delay = min(self.cap, self.delay * 2)

    def reset(self) -> None:
        """Back to the first delay."""
        self.delay = self.first


async def until_done(action: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `action` until it succeeds, waiting out transient database errors."""
    backoff = Backoff()
    while True:
        try:
            return await action()
        except (*TRANSIENT, FlowStoneError) as error:
            if isinstance(error, FlowStoneError) and not _unreachable(error):
                raise
            _log.warning("database unavailable, retrying", during=what, error=str(error))
            await backoff.wait()


def _unreachable(error: FlowStoneError) -> bool:
    """A first connect that found no server (worth waiting out, unlike a bad password)."""
    return error.type == "connection_error" and error.retryable
