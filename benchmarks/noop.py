"""The benchmark's app: a no-op async job that only counts itself (as the peers' tasks do),
and a job that counts itself then waits 5 ms, as if for I/O (the `realistic` workload)."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from flowstone import FlowStone, Job, Worker

STATS: dict[str, Any] = {"count": 0, "first": None, "last": None, "lat": []}
QUEUE = "default"
SLEEP_S = 0.005
# The ids of the jobs run, when the worker is told to keep them (`--record-ids`): the
# scale-out workload checks across processes that no job ran twice.
IDS: list[int] | None = None


def record(job: Job) -> None:
    """Count one execution; with `t` in args, note the insert-to-start latency."""
    now = time.time()
    STATS["count"] += 1
    if STATS["first"] is None:
        STATS["first"] = now
    STATS["last"] = now
    if IDS is not None:
        IDS.append(job.id)
    sent = job.args.get("t")
    if sent is not None:
        STATS["lat"].append(now - float(sent))


class Noop(Worker):
    """The no-op job."""

    name = "bench.Noop"
    queue = QUEUE

    async def perform(self, job: Job) -> None:
        record(job)


class Sleep(Worker):
    """Counts itself when it starts, then 5 ms of (simulated) I/O."""

    name = "bench.Sleep"
    queue = QUEUE

    async def perform(self, job: Job) -> None:
        record(job)
        await anyio.sleep(SLEEP_S)


def app(url: str, **settings: Any) -> FlowStone:
    """A FlowStone on the benchmark database with the runtime defaults."""
    return FlowStone(url, node=f"bench.{os.getpid()}", **settings)
