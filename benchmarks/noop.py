"""The benchmark's app: a no-op async job that only counts itself (as the peers' tasks do)."""

from __future__ import annotations

import os
import time
from typing import Any

from flowstone import FlowStone, Job, Worker

STATS: dict[str, Any] = {"count": 0, "first": None, "last": None, "lat": []}
QUEUE = "default"


def record(job: Job) -> None:
    """Count one execution; with `t` in args, note the insert-to-start latency."""
    now = time.time()
    STATS["count"] += 1
    if STATS["first"] is None:
        STATS["first"] = now
    STATS["last"] = now
    sent = job.args.get("t")
    if sent is not None:
        STATS["lat"].append(now - float(sent))


class Noop(Worker):
    """The no-op job."""

    name = "bench.Noop"
    queue = QUEUE

    async def perform(self, job: Job) -> None:
        record(job)


def app(url: str, **settings: Any) -> FlowStone:
    """A FlowStone on the benchmark database with the runtime defaults."""
    return FlowStone(url, node=f"bench.{os.getpid()}", **settings)
