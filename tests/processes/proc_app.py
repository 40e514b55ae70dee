"""The app that process-level tests run in real `flowstone worker` processes.

Settings come from the environment so each test can shorten the intervals it waits on.
Every execution is recorded in `public.executions`, so a test can count runs per job.
"""

import os
import random
import time
from typing import Any

import anyio

from flowstone import Discard, FlowStone, Job, Snooze, Worker

app = FlowStone(
    os.environ.get("FLOWSTONE_DATABASE_URL"),  # set for the worker processes; tests import it too
    poll_interval=float(os.environ.get("FS_POLL", "1")),
    stage_interval=0.2,
    heartbeat_interval=0.2,
    node_expiry=float(os.environ.get("FS_EXPIRY", "2")),
    leader_lease=float(os.environ.get("FS_LEASE", "2")),
    shutdown_grace=float(os.environ.get("FS_GRACE", "15")),
    statement_timeout=float(os.environ.get("FS_STATEMENT_TIMEOUT", "30")),
    lifeline_interval=float(os.environ.get("FS_LIFELINE", "2")),
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


class HostileError(Exception):
    """Its message cannot be turned into text."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


POISON: dict[str, Any] = {  # what once killed every node that claimed such a job
    "nul": lambda: Discard("a\x00b"),
    "surrogate": lambda: Discard("\ud800"),
    "snooze": lambda: Snooze(1e13),
    "hostile": lambda: _raise(HostileError()),
    "generator_exit": lambda: _raise(GeneratorExit()),
}


def _raise(error: BaseException) -> None:
    raise error


class Poison(Worker):
    """A sync job whose outcome is hostile (see POISON); its backoff raises too."""

    queue = "work"
    max_attempts = 3

    def perform(self, job: Job) -> Any:
        return POISON[job.args["kind"]]()

    def backoff(self, job: Job) -> float:
        raise ValueError("a backoff that raises")


class Stretch(Worker):
    """A sync job of `seconds` that records when it started and when it ended."""

    queue = "work"

    def perform(self, job: Job) -> None:
        with app.connection() as conn:
            conn.execute(
                "INSERT INTO public.runs (job_id, node) VALUES (%s, %s)", (job.id, app.settings.node)
            )
        time.sleep(job.args["seconds"])  # the job's work, in its thread
        with app.connection() as conn:
            conn.execute(
                "UPDATE public.runs SET ended_at = clock_timestamp() WHERE job_id = %s AND node = %s",
                (job.id, app.settings.node),
            )
