"""The app of the queue feature process tests: a globally limited queue and workflow jobs,
each execution recorded (start and end, on the database's clock) in `public.stints`."""

import os
import time

from flowstone import Discard, FlowStone, Job, Worker

app = FlowStone(
    os.environ.get("FLOWSTONE_DATABASE_URL"),  # set for the worker processes; tests import it too
    queues={"limited": {"limit": 10, "global_limit": 3}},
    poll_interval=0.5,
    stage_interval=0.2,
    heartbeat_interval=0.2,
    node_expiry=float(os.environ.get("FS_EXPIRY", "2")),
    leader_lease=2,
    lifeline_interval=0.5,
)

STINTS = """
CREATE TABLE public.stints (
    job_id bigint NOT NULL, node text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz
)
"""


def stint(job: Job) -> None:
    """Record the execution's start, run `ms` milliseconds (in this sync job's thread),
    record its end."""
    with app.connection() as conn:
        conn.execute("INSERT INTO public.stints (job_id, node) VALUES (%s, %s)", (job.id, app.settings.node))
    time.sleep(job.args.get("ms", 10) / 1000)  # the job's work
    with app.connection() as conn:
        conn.execute(
            "UPDATE public.stints SET ended_at = clock_timestamp() WHERE job_id = %s AND node = %s "
            "AND ended_at IS NULL",
            (job.id, app.settings.node),
        )


class Stint(Worker):
    """A job of the globally limited queue."""

    queue = "limited"

    def perform(self, job: Job) -> None:
        stint(job)


class Step(Worker):
    """A workflow job; `fail` discards it."""

    queue = "flow"
    max_attempts = 1

    def perform(self, job: Job) -> Discard | None:
        stint(job)
        return Discard("told to fail") if job.args.get("fail") else None
