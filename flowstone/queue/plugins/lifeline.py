"""The lifeline: rescue jobs left `executing` by nodes whose heartbeat stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from flowstone.queue import telemetry
from flowstone.queue.plan import single

if TYPE_CHECKING:
    from flowstone.queue.runtime.node import Node

_log = structlog.get_logger("flowstone.lifeline")


class Lifeline:
    """Leader only: by heartbeat, not by age — a long job on a live node is left alone."""

    name = "lifeline"
    leader_only = True

    def __init__(self, interval: float, limit: int = 5000) -> None:
        self.interval = interval
        self.limit = limit

    async def tick(self, node: Node) -> None:
        """Rescue the orphans of dead nodes, then forget those nodes."""
        expiry = node.fs.settings.node_expiry
        nodes = await node.fs.aexecute(single(node.node_queries.live_nodes, {"expiry": expiry}))
        alive = [row["name"] for row in nodes if row["alive"]]
        params = {"alive": alive, "grace": expiry, "limit": self.limit}
        rescued = await node.fs.aexecute(single(node.fs.queries.rescue, params))
        await node.fs.aexecute(single(node.node_queries.expire_nodes, {"expiry": expiry * 6}))
        if rescued:
            _log.warning("rescued orphaned jobs", count=len(rescued))
            for queue in {row["queue"] for row in rescued}:
                node.wake(queue)
            telemetry.emit("lifeline.rescue", {"count": len(rescued)}, {"jobs": rescued})
