"""Acknowledge finished jobs in batches: whatever finished while the last batch was in
flight goes in the next single UPDATE. Outcomes survive a database outage in memory
and are written once the database is back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import anyio
import structlog

from flowstone.queue.engine import Outcome, ack_plan
from flowstone.queue.runtime.retry import until_done

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone

_log = structlog.get_logger("flowstone.acker")


class Acker:
    """Collects outcomes from every producer of a node and writes them in batches."""

    def __init__(
        self, fs: FlowStone, batch_size: int, on_written: Callable[[Sequence[Outcome]], None]
    ) -> None:
        self.fs = fs
        self.batch_size = batch_size
        self.on_written = on_written
        self.pending: list[Outcome] = []
        self._ready = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()

    def push(self, outcome: Outcome) -> None:
        """Queue one outcome for the next batch."""
        self.pending.append(outcome)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._ready.set()

    async def run(self) -> None:
        """Write batches as outcomes arrive (until cancelled)."""
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            await self._flush_pending()

    async def flush(self) -> None:
        """Wait until every outcome pushed so far has been written, a batch in flight too."""
        if not self._idle.is_set():
            self._ready.set()
            await self._idle.wait()

    async def _flush_pending(self) -> None:
        while self.pending:
            batch = self.pending[: self.batch_size]
            del self.pending[: self.batch_size]
            await until_done(partial(self._write, batch), "ack")
            self.on_written(batch)
        self._idle.set()

    async def _write(self, batch: Sequence[Outcome]) -> None:
        await self.fs.aexecute(ack_plan(self.fs.queries, batch))
