"""The pruner: delete finished jobs older than a maximum age, in bounded batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone.queue import telemetry

if TYPE_CHECKING:
    from flowstone.queue.runtime.node import Node


class Pruner:
    """Leader only: completed, cancelled and discarded jobs past `max_age` seconds."""

    name = "pruner"
    leader_only = True

    def __init__(self, interval: float, max_age: float, limit: int) -> None:
        self.interval = interval
        self.max_age = max_age
        self.limit = limit

    async def tick(self, node: Node) -> None:
        """Delete up to `limit` rows per terminal state."""
        params = {"max_age": self.max_age, "limit": self.limit}
        async with node.fs.aconnection() as conn:
            cursor = await conn.execute(node.fs.queries.prune, params)
            deleted = cursor.rowcount
        if deleted:
            telemetry.emit("pruner.prune", {"count": deleted}, {"max_age": self.max_age})
