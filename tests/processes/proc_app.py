"""The app that process-level tests run in real `flowstone worker` processes.

Settings come from the environment so each test can shorten the intervals it waits on.
Every execution is recorded in `public.executions`, so a test can count runs per job.
"""

import os
import random
import time

import anyio

from flowstone import FlowStone, Job, Worker

app = FlowStone(
    os.environ["FLOWSTONE_DATABASE_URL"],
    poll_interval=float(os.environ.get("FS_POLL", "1")),
    stage_interval=0.2,
    heartbeat_interval=0.2,
    node_expiry=float(os.environ.get("FS_EXPIRY", "2")),
    leader_lease=float(os.environ.get("FS_LEASE", "2")),
    shutdown_grace=float(os.environ.get("FS_GRACE", "15")),
)


def record(job: Job) -> None:
    """Note that this node ran this job (one row per execution)."""
    with app.connection() as conn:
        conn.execute(
            "INSERT INTO public.executions (job_id, node) VALUES (%s, %s)", (job.id, app.settings.node)
        )


class Work(Worker):
    """A sync job of 0-20 ms."""

    queue = "work"

    def perform(self, job: Job) -> None:
        time.sleep(random.uniform(0, job.args.get("max_ms", 20)) / 1000)  # the job's work
        record(job)


class Slow(Worker):
    """An async job that takes `seconds`."""

    queue = "work"
    max_attempts = 3

    async def perform(self, job: Job) -> None:
        record(job)
        await anyio.sleep(job.args["seconds"])  # the job's work


class Tick(Worker):
    """A cron job, every minute (only on nodes started with FS_CRON=1)."""

    queue = "work"
    cron = "* * * * *" if os.environ.get("FS_CRON") else None

    def perform(self, job: Job) -> None:
        record(job)
