"""Job outcomes are visible: one structured log line per failure, discard, cancel and rescue
(completions at debug), written by a telemetry handler every started node attaches."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import runtime_workers as w
import structlog
from support import MakeFs, rows, wait_for, wait_for_job

from flowstone import Cancel, Discard, Job, Worker

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _unconfigured_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults (a CLI test run in this process may have
    configured it for warnings only), and leaves them: capture_logs leaves structlog
    configured (printing debug lines) for later tests."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


class Refuse(Worker):
    queue = w.QUEUE

    async def perform(self, job: Job) -> Cancel | Discard:
        return Cancel("no longer wanted") if job.args.get("cancel") else Discard("bad address")


class Broken(Worker):
    queue = w.QUEUE
    max_attempts = 1

    def perform(self, job: Job) -> None:
        raise ValueError("smtp said no")


def lines(captured: list[dict[str, Any]], job_id: int) -> list[dict[str, Any]]:
    return [line for line in captured if line.get("job_id") == job_id]


async def test_every_outcome_logs_one_line(make_fs: MakeFs) -> None:
    fs = make_fs()
    with structlog.testing.capture_logs() as captured:
        await fs.start({w.QUEUE: 4})
        flaky, broken, discard, cancel, done = await fs.ainsert_all(
            [w.FailOnce.new(), Broken.new(), Refuse.new(), Refuse.new({"cancel": True}), w.Echo.new()]
        )
        unknown = (await fs.ainsert_all([dataclasses.replace(w.Echo.new(), worker="gone.Mailer")]))[0]
        for job, state in [
            (flaky, "completed"),
            (broken, "discarded"),
            (discard, "discarded"),
            (cancel, "cancelled"),
            (done, "completed"),
            (unknown, "discarded"),
        ]:
            await wait_for_job(fs, job.id, state)
        await wait_for(lambda: len(lines(captured, flaky.id)) == 2, message="the retry's completion line")

    retried, completed = lines(captured, flaky.id)
    assert (retried["event"], retried["log_level"], retried["error_type"]) == (
        "job retryable",
        "warning",
        "RuntimeError",
    )
    assert retried["error"] == "RuntimeError: first attempt fails" and retried["attempt"] == 1
    assert (
        retried["worker"] == w.FailOnce.name and retried["queue"] == w.QUEUE and retried["duration_ms"] >= 0
    )
    assert (completed["event"], completed["log_level"], completed["attempt"]) == ("job completed", "debug", 2)
    [line] = lines(captured, broken.id)
    assert (line["event"], line["log_level"], line["error"]) == (
        "job discarded",
        "error",
        "ValueError: smtp said no",
    )
    [line] = lines(captured, discard.id)
    assert (line["event"], line["error"]) == ("job discarded", "discarded: bad address")
    [line] = lines(captured, cancel.id)
    assert (line["event"], line["log_level"], line["error"]) == (
        "job cancelled",
        "warning",
        "cancelled: no longer wanted",
    )
    [line] = lines(captured, unknown.id)
    assert line["event"] == "job discarded" and "'gone.Mailer' is not registered" in line["error"]
    assert line["error_type"] == "UnknownWorkerError"
    assert [line["event"] for line in lines(captured, done.id)] == ["job completed"]


async def test_a_rescue_logs_one_line_per_job(make_fs: MakeFs) -> None:
    fs = make_fs()
    job = await fs.ainsert(w.Echo.new(queue="parked"))
    await rows(
        fs,
        "UPDATE flowstone.jobs SET state = 'executing', attempt = 1, attempted_by = ARRAY['dead'],"
        " attempted_at = now() - interval '5 seconds' WHERE id = %s",
        [job.id],
    )
    with structlog.testing.capture_logs() as captured:
        await fs.start({w.QUEUE: 1})
        await wait_for_job(fs, job.id, "available")
        await wait_for(lambda: lines(captured, job.id), message="the rescue line")
    [line] = lines(captured, job.id)
    assert (line["event"], line["log_level"], line["queue"], line["state"]) == (
        "job rescued",
        "warning",
        "parked",
        "available",
    )


async def test_log_jobs_false_keeps_an_instance_quiet(make_fs: MakeFs) -> None:
    fs = make_fs(log_jobs=False)
    with structlog.testing.capture_logs() as captured:
        await fs.start({w.QUEUE: 1})
        job = await fs.ainsert(Broken.new())
        await wait_for_job(fs, job.id, "discarded")
    assert lines(captured, job.id) == []


def test_console_logs_carry_no_colours_into_a_pipe() -> None:
    code = (
        "from flowstone.logs import configure_logging; configure_logging('console', 'info'); "
        "import structlog; structlog.get_logger().warning('job discarded', job_id=1)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "job discarded" in done.stderr and "job_id=1" in done.stderr
    assert "\x1b[" not in done.stderr
