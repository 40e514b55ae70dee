"""The pruner: delete finished jobs older than a maximum age, in bounded batches.

Each statement deletes at most `prune_limit` rows per terminal state, so no statement
holds locks or runs long; while a batch comes back full there is a backlog, and the
pruner goes on with the next batch in the same tick, for up to `prune_budget` seconds.
So it keeps up with any sustained completion rate the database can take (a tick every
`prune_interval` s, each deleting until caught up or out of budget)."""

from __future__ import annotations

import time

from flowstone.queue import telemetry
from flowstone.queue.plan import single
from flowstone.queue.plugins.base import PluginRuntime


class Pruner:
    """Leader only: completed, cancelled and discarded jobs past `max_age` seconds."""

    name = "pruner"
    leader_only = True

    def __init__(self, interval: float, max_age: float, limit: int, budget: float = 10.0) -> None:
        self.interval = interval
        self.max_age = max_age
        self.limit = limit
        self.budget = budget

    async def tick(self, runtime: PluginRuntime) -> None:
        """Delete batches of up to `limit` rows per terminal state while there is a backlog
        and the tick's time budget lasts."""
        params = {"max_age": self.max_age, "limit": self.limit}
        deadline = time.monotonic() + self.budget
        deleted = 0
        while True:
            [row] = await runtime.execute(single(runtime.jobs.prune, params))
            deleted += row["count"]
            if row["fullest"] < self.limit or time.monotonic() >= deadline:
                break
        if deleted:
            telemetry.emit("pruner.prune", {"count": deleted}, {"max_age": self.max_age})
