"""The pruner: delete finished jobs older than a maximum age, in bounded batches.

Each statement deletes at most `prune_limit` rows per terminal state, so no statement
holds locks or runs long; while a batch comes back full there is a backlog, and the
pruner goes on with the next batch in the same tick, for up to `prune_budget` seconds.
So it keeps up with any sustained completion rate the database can take (a tick every
`prune_interval` s, each deleting until caught up or out of budget). A tick starts
`margin` seconds below the age bound of the last one that caught up (`Cursor`), so the
entries of rows deleted before are not walked again while a long transaction keeps them."""

from __future__ import annotations

import time

from flowstone.queue import telemetry
from flowstone.queue.plan import single
from flowstone.queue.plugins.base import PluginRuntime
from flowstone.queue.plugins.cursor import MARGIN, Cursor

FULL_EVERY = 300.0
"""Seconds between two ticks from the head of the terminal-timestamp indexes (see `Cursor`)."""


class Pruner:
    """Leader only: completed, cancelled and discarded jobs past `max_age` seconds."""

    name = "pruner"
    leader_only = True

    def __init__(
        self,
        interval: float,
        max_age: float,
        limit: int,
        budget: float = 10.0,
        margin: float = MARGIN,
        full_every: float = FULL_EVERY,
    ) -> None:
        self.interval = interval
        self.max_age = max_age
        self.limit = limit
        self.budget = budget
        self.cursor = Cursor(margin, full_every)

    async def tick(self, runtime: PluginRuntime) -> None:
        """Delete batches of up to `limit` rows per terminal state while there is a backlog
        and the tick's time budget lasts."""
        params = {"max_age": self.max_age, "limit": self.limit, "after": self.cursor.after()}
        deadline = time.monotonic() + self.budget
        deleted = 0
        while True:
            [row] = await runtime.execute(single(runtime.jobs.prune, params))
            deleted += row["count"]
            if row["fullest"] < self.limit:
                self.cursor.caught_up(row["cutoff"])
                break
            if time.monotonic() >= deadline:
                break
        if deleted:
            telemetry.emit("pruner.prune", {"count": deleted}, {"max_age": self.max_age})
