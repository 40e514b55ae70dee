"""Workers the runtime tests run, and the shared state they report through."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import anyio

from flowstone import Job, Snooze, Worker

QUEUE = "rt"


@dataclass
class Gauge:
    """How many jobs run at once, and the most seen."""

    current: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def leave(self) -> None:
        with self.lock:
            self.current -= 1


GAUGE = Gauge()
RELEASE = threading.Event()  # lets blocked sync jobs finish at the end of a test
reports: list[str] = []  # what jobs reported, e.g. "cancelled 7", "thread done 7"


def reset() -> None:
    """Fresh shared state for the next test."""
    global GAUGE
    GAUGE = Gauge()
    RELEASE.clear()
    reports.clear()


class Echo(Worker):
    queue = QUEUE

    async def perform(self, job: Job) -> None:
        return None


class SyncEcho(Worker):
    queue = QUEUE

    def perform(self, job: Job) -> None:
        reports.append(f"thread {threading.current_thread() is threading.main_thread()}")


class Nap(Worker):
    """Async: sleeps `seconds`, counted by the gauge."""

    queue = QUEUE

    async def perform(self, job: Job) -> None:
        GAUGE.enter()
        try:
            await anyio.sleep(job.args.get("seconds", 0.05))
        finally:
            GAUGE.leave()


class SyncNap(Worker):
    """Sync: sleeps `seconds` in its thread, counted by the gauge."""

    queue = QUEUE

    def perform(self, job: Job) -> None:
        GAUGE.enter()
        try:
            time.sleep(job.args.get("seconds", 0.05))
        finally:
            GAUGE.leave()


class FailOnce(Worker):
    queue = QUEUE
    max_attempts = 3

    def perform(self, job: Job) -> None:
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")

    def backoff(self, job: Job) -> float:
        return 0.05


class SnoozeOnce(Worker):
    queue = QUEUE

    async def perform(self, job: Job) -> Snooze | None:
        return Snooze(0.05) if not job.meta.get("snoozed") else None


class Hang(Worker):
    """Async: runs until cancelled, and says so."""

    queue = QUEUE
    max_attempts = 2

    async def perform(self, job: Job) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            reports.append(f"cancelled {job.id}")


class SyncHang(Worker):
    """Sync: blocks until RELEASE (at most 10 s); a thread cannot be cancelled."""

    queue = QUEUE
    max_attempts = 2

    def perform(self, job: Job) -> None:
        RELEASE.wait(10)
        reports.append(f"thread done {job.id}")


class SlowAsync(Hang):
    """`Hang` with a 0.1 s timeout."""

    def timeout(self, job: Job) -> float | None:
        return 0.1


class SlowSync(SyncHang):
    """`SyncHang` with a 0.1 s timeout."""

    def timeout(self, job: Job) -> float | None:
        return 0.1


class Custom(BaseException):
    """Neither an Exception nor a cancellation."""


RAISABLE: dict[str, type[BaseException]] = {
    "system_exit": SystemExit,
    "keyboard_interrupt": KeyboardInterrupt,
    "custom": Custom,
    "cancelled_error": asyncio.CancelledError,  # raised by the job, not a cancellation
}


class RaiseBase(Worker):
    """Async: raises the BaseException named by `kind`."""

    queue = QUEUE
    max_attempts = 2

    async def perform(self, job: Job) -> None:
        raise RAISABLE[job.args["kind"]]("from a job")


class SyncRaiseBase(Worker):
    """Sync: raises the BaseException named by `kind` in its thread."""

    queue = QUEUE
    max_attempts = 2

    def perform(self, job: Job) -> None:
        raise RAISABLE[job.args["kind"]]("from a job")
