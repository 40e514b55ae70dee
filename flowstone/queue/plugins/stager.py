"""The stager: due scheduled and retryable jobs become available, and producers wake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone.queue import telemetry
from flowstone.queue.engine import stage_plan

if TYPE_CHECKING:
    from flowstone.queue.runtime.node import Node


class Stager:
    """Runs on every node; SKIP LOCKED keeps nodes from staging the same rows."""

    name = "stager"
    leader_only = False

    def __init__(self, interval: float) -> None:
        self.interval = interval

    async def tick(self, node: Node) -> None:
        """Stage what is due (the statement also NOTIFYs each queue it touched)."""
        staged = await node.fs.aexecute(stage_plan(node.fs.queries))
        for queue in staged:
            node.wake(queue)
        if staged:
            telemetry.emit("stager.stage", {"count": sum(staged.values())}, {"queues": staged})
