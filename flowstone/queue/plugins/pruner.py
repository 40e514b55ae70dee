"""The pruner: delete finished jobs older than a maximum age, in bounded batches."""

from __future__ import annotations

from flowstone.queue import telemetry
from flowstone.queue.plan import single
from flowstone.queue.plugins.base import PluginRuntime


class Pruner:
    """Leader only: completed, cancelled and discarded jobs past `max_age` seconds."""

    name = "pruner"
    leader_only = True

    def __init__(self, interval: float, max_age: float, limit: int) -> None:
        self.interval = interval
        self.max_age = max_age
        self.limit = limit

    async def tick(self, runtime: PluginRuntime) -> None:
        """Delete up to `limit` rows per terminal state."""
        params = {"max_age": self.max_age, "limit": self.limit}
        rows = await runtime.execute(single(runtime.jobs.prune, params))
        deleted = rows[0]["count"]
        if deleted:
            telemetry.emit("pruner.prune", {"count": deleted}, {"max_age": self.max_age})
