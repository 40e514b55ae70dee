"""The app of the process-executor and chaos tests, run by real `flowstone worker` processes.

Queue `iso` runs its sync jobs in child processes (`executor="process"`), recycled after
FS_MAX_TASKS jobs or above FS_MAX_MEMORY MiB when set; queue `chaos` runs in threads.
Every job started in a child records its pid in `public.children` through `job.fs` (the
child's own instance), so a test can tell children apart and check that one is gone.
"""

import ctypes
import os
import signal
import time

from flowstone import FlowStone, Job, Worker


def _optional(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


app = FlowStone(
    os.environ.get("FLOWSTONE_DATABASE_URL"),
    poll_interval=0.5,
    stage_interval=0.2,
    heartbeat_interval=0.2,
    node_expiry=2,
    leader_lease=2,
    shutdown_grace=float(os.environ.get("FS_GRACE", "15")),
    queues={
        "iso": {
            "limit": 2,
            "executor": "process",
            "max_tasks_per_child": _optional("FS_MAX_TASKS"),
            "max_memory_per_child": _optional("FS_MAX_MEMORY"),
        },
        "chaos": 10,
    },
)

LEAK: list[bytes] = []
"""What `Hog` keeps alive in its child, as a leaking job would."""


def started(job: Job) -> None:
    """Record this child's pid for the job (through the child's `job.fs`)."""
    with job.fs.connection() as conn:
        conn.execute("INSERT INTO public.children (job_id, pid) VALUES (%s, %s)", (job.id, os.getpid()))


class Sleep(Worker):
    """Sleeps `seconds`, with the timeout `timeout` (none unless given)."""

    queue = "iso"
    max_attempts = 1

    def perform(self, job: Job) -> None:
        started(job)
        time.sleep(job.args["seconds"])  # the job's work: a sleep no thread could interrupt

    def timeout(self, job: Job) -> float | None:
        timeout: float | None = job.args.get("timeout")
        return timeout


class Crash(Worker):
    """Dies the way `how` says: a segfault, `os._exit`, or a SIGKILL as the OOM killer sends."""

    queue = "iso"
    max_attempts = 1

    def perform(self, job: Job) -> None:
        started(job)
        how = job.args["how"]
        if how == "segfault":
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        elif how == "exit":
            os._exit(3)
        else:
            os.kill(os.getpid(), signal.SIGKILL)


class Pid(Worker):
    """Returns its child's pid (recorded with the job)."""

    queue = "iso"
    record_result = True

    def perform(self, job: Job) -> int:
        started(job)
        return os.getpid()


class Hog(Worker):
    """Leaks `mib` MiB in its child and returns its pid."""

    queue = "iso"
    record_result = True

    def perform(self, job: Job) -> int:
        started(job)
        LEAK.append(b"\x01" * (job.args["mib"] * 1024 * 1024))  # written pages: resident
        return os.getpid()


class Fails(Worker):
    """Raises in its child; the node records it as the thread executor would."""

    queue = "iso"
    max_attempts = 1

    def perform(self, job: Job) -> None:
        raise ValueError(f"no such thing as {job.args['what']}")


class FollowUp(Worker):
    """Inserts a `Pid` job through its child's `job.fs`."""

    queue = "iso"

    def perform(self, job: Job) -> None:
        job.fs.insert(Pid.new({"from": job.id}))


class Flaky(Worker):
    """A thread job for chaos runs: three attempts, retried at once."""

    queue = "chaos"
    max_attempts = 3

    def perform(self, job: Job) -> None:
        with job.fs.connection() as conn:
            conn.execute("INSERT INTO public.children (job_id, pid) VALUES (%s, %s)", (job.id, os.getpid()))
        return None

    def backoff(self, job: Job) -> float:
        return 0.0


class OwnProcess(Worker):
    """A worker of the thread queue `chaos` that asks for a process of its own."""

    queue = "chaos"
    executor = "process"
    record_result = True

    def perform(self, job: Job) -> int:
        job.progress(0.5, "half way, from the child")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _progress_stored(job):
            time.sleep(0.05)  # the node writes reports once per progress_interval
        return os.getpid()


def _progress_stored(job: Job) -> bool:
    with job.fs.connection() as conn:
        row = conn.execute("SELECT progress FROM flowstone.jobs WHERE id = %s", (job.id,)).fetchone()
    return row is not None and row[0] is not None
