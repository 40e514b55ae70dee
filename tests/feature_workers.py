"""Workers of the queue feature tests (limits, workflows, batches, results, progress), and
what they report: per job when it ran, on which node, in which order."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from flowstone import Discard, Job, Worker

QUEUE = "features"


@dataclass
class Log:
    """Executions as (job id, args, started, ended) on the monotonic clock, and the
    most jobs seen running at once (overall and per partition key)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, job: Job, key: str) -> dict[str, Any]:
        run = {"id": job.id, "args": job.args, "attempted_at": job.attempted_at, "started": time.monotonic()}
        with self.lock:
            self.runs.append(run)
            for name in ("*", key):
                self.running[name] = self.running.get(name, 0) + 1
                self.peaks[name] = max(self.peaks.get(name, 0), self.running[name])
        return run

    def leave(self, run: dict[str, Any], key: str) -> None:
        with self.lock:
            run["ended"] = time.monotonic()
            for name in ("*", key):
                self.running[name] -= 1

    def of(self, job_id: int) -> dict[str, Any]:
        return next(run for run in self.runs if run["id"] == job_id)


LOG = Log()
GATE = threading.Event()  # opened by a test to let Held jobs finish


def reset() -> None:
    global LOG
    LOG = Log()
    GATE.clear()


class Timed(Worker):
    """Async: runs `seconds`, logged (per `tenant` when given); `fail` discards it."""

    queue = QUEUE
    max_attempts = 1

    async def perform(self, job: Job) -> Discard | None:
        key = str(job.args.get("tenant", "-"))
        run = LOG.enter(job, key)
        try:
            await anyio.sleep(job.args.get("seconds", 0.01))
        finally:
            LOG.leave(run, key)
        return Discard("told to fail") if job.args.get("fail") else None


class Held(Worker):
    """Sync: waits for GATE (so a test can hold it executing), logged."""

    queue = QUEUE

    def perform(self, job: Job) -> None:
        run = LOG.enter(job, "-")
        GATE.wait(30)
        LOG.leave(run, "-")


UNRECORDABLE: dict[str, Any] = {"nul": "a\x00b", "set": {1, 2}, "nan": float("nan"), "big": "x" * 2000}


class Answer(Worker):
    """Records what it returns: `{"answer": args["n"] * 2}`, or an UNRECORDABLE value."""

    queue = QUEUE
    record_result = True
    result_limit = 1000

    def perform(self, job: Job) -> Any:
        return UNRECORDABLE[job.args["bad"]] if "bad" in job.args else {"answer": job.args["n"] * 2}


class Fails(Worker):
    """Raises every time; out of attempts at once."""

    queue = QUEUE
    max_attempts = 1
    record_result = True

    def perform(self, job: Job) -> None:
        raise RuntimeError(f"failed on purpose ({job.args.get('why', 'no reason')})")


class Report(Worker):
    """A batch callback: logs the counts it was given."""

    queue = QUEUE

    def perform(self, job: Job) -> None:
        run = LOG.enter(job, "-")
        run["counts"] = job.meta["batch"]["counts"]
        LOG.leave(run, "-")


class Steps(Worker):
    """Reports progress `steps` times (fast), then waits for GATE."""

    queue = QUEUE

    async def perform(self, job: Job) -> None:
        steps = job.args["steps"]
        for step in range(1, steps + 1):
            job.progress(step / steps, message=f"step {step} of {steps}")
        await anyio.to_thread.run_sync(GATE.wait, 30)
