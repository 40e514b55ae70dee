"""The stager: due scheduled and retryable jobs become available, and producers wake."""

from __future__ import annotations

from flowstone.queue import telemetry
from flowstone.queue.engine import stage_plan
from flowstone.queue.plugins.base import PluginRuntime


class Stager:
    """Runs on every node; SKIP LOCKED keeps nodes from staging the same rows."""

    name = "stager"
    leader_only = False

    def __init__(self, interval: float) -> None:
        self.interval = interval

    async def tick(self, runtime: PluginRuntime) -> None:
        """Stage what is due (the statement also NOTIFYs each queue it touched)."""
        staged = await runtime.execute(stage_plan(runtime.jobs))
        for queue in staged:
            runtime.wake(queue)
        if staged:
            telemetry.emit("stager.stage", {"count": sum(staged.values())}, {"queues": staged})
