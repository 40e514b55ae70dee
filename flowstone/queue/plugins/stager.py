"""The stager: due scheduled and retryable jobs become available, and producers wake."""

from __future__ import annotations

from flowstone.queue import telemetry
from flowstone.queue.engine import staging_plan
from flowstone.queue.plugins.base import PluginRuntime
from flowstone.queue.plugins.cursor import MARGIN, Cursor

FULL_EVERY = 60.0
"""Seconds between two passes from the head of the staging index (see `Cursor`)."""


class Stager:
    """Runs on every node; SKIP LOCKED keeps nodes from staging the same rows. Each pass
    starts `margin` seconds below where the last one that caught up ended."""

    name = "stager"
    leader_only = False

    def __init__(
        self, interval: float, margin: float = MARGIN, limit: int = 5000, full_every: float = FULL_EVERY
    ) -> None:
        self.interval = interval
        self.limit = limit
        self.cursor = Cursor(margin, full_every)

    async def tick(self, runtime: PluginRuntime) -> None:
        """Stage what is due (the statement also NOTIFYs each queue it touched)."""
        plan = staging_plan(runtime.jobs, after=self.cursor.after(), limit=self.limit)
        staged, upto = await runtime.execute(plan)
        if sum(staged.values()) < self.limit:
            self.cursor.caught_up(upto)
        for queue in staged:
            runtime.wake(queue)
        if staged:
            telemetry.emit("stager.stage", {"count": sum(staged.values())}, {"queues": staged})
