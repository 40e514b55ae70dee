"""Recorded results, awaiting a job (woken by notification) and progress reports."""

from __future__ import annotations

import threading
import time

import anyio
import feature_workers as fw
import psycopg
import pytest
from support import MakeFs, rows, wait_for, wait_for_job, wait_until

from flowstone import AwaitTimeoutError, Job, JobFailedError, JobState
from flowstone.insights import Insights

pytestmark = pytest.mark.anyio


async def test_await_job_returns_the_recorded_value(make_fs: MakeFs) -> None:
    fs = make_fs(poll_interval=60)
    await fs.start({fw.QUEUE: 2})
    job = await fs.ainsert(fw.Answer.new({"n": 21}))
    assert await fs.aawait_job(job.id, timeout=10) == {"answer": 42}
    stored = await Insights(fs).ajob(job.id)
    assert stored is not None and stored.result == {"answer": 42}


async def test_await_job_raises_with_the_last_error_of_a_discarded_job(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 2})
    job = await fs.ainsert(fw.Fails.new({"why": "bad input"}))
    with pytest.raises(JobFailedError, match=r"was discarded: RuntimeError: failed on purpose \(bad input\)"):
        await fs.aawait_job(job.id, timeout=10)


async def test_await_job_is_woken_by_the_end_not_by_polling(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 2})
    job = await fs.ainsert(fw.Held.new())
    await wait_for(lambda: len(fw.LOG.runs) == 1, 10, "the job to run")
    with pytest.raises(AwaitTimeoutError):
        await fs.aawait_job(job.id, timeout=0.2)
    opened: list[float] = []
    with psycopg.connect(fs.database_url) as conn:
        [(since,)] = conn.execute("SELECT clock_timestamp()").fetchall()

    def waiting() -> bool:
        """The waiter marked the job awaited and sits idle on its LISTEN connection."""
        with psycopg.connect(fs.database_url) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle'"
                " AND query LIKE '%%\"awaited\": true%%' AND state_change > %s",
                [since],
            ).fetchone()
        return found is not None

    def open_gate() -> None:
        wait_until(waiting, 10, "the waiter to wait")  # from then, only the notification can wake it
        opened.append(time.monotonic())
        fw.GATE.set()

    threading.Thread(target=open_gate).start()
    assert await anyio.to_thread.run_sync(lambda: fs.await_job(job.id, timeout=30)) is None
    assert time.monotonic() - opened[0] < 2


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("nul", "holds a NUL character"),
        ("set", "cannot be recorded as JSON: Object of type set"),
        ("nan", "Out of range float values"),
        ("big", "2002 bytes of JSON, over the worker's result_limit of 1000"),
    ],
)
async def test_a_value_that_cannot_be_recorded_fails_the_job(make_fs: MakeFs, bad: str, why: str) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 2})
    job = await fs.ainsert(fw.Answer.new({"bad": bad}))
    failed = await wait_for_job(fs, job.id, "retryable")
    assert why in failed.errors[0]["error"]
    assert failed.result is None


COUNT_PROGRESS_WRITES = """
CREATE TABLE public.progress_writes (job_id bigint);
CREATE FUNCTION public.count_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.progress_writes VALUES (NEW.id); RETURN NULL; END $$;
CREATE TRIGGER count_progress AFTER UPDATE OF progress ON flowstone.jobs
    FOR EACH ROW EXECUTE FUNCTION public.count_progress();
"""


async def test_progress_is_coalesced_and_visible(make_fs: MakeFs) -> None:
    fs = make_fs(progress_interval=0.2)
    await rows(fs, COUNT_PROGRESS_WRITES)
    await fs.start({fw.QUEUE: 2})
    job = await fs.ainsert(fw.Steps.new({"steps": 500}))

    async def reported() -> dict[str, object] | None:
        found = await Insights(fs).ajob(job.id)
        report = None if found is None else found.progress_report
        return report if report and report["fraction"] == 1.0 else None

    report = await wait_for(reported, 10, "the last progress report")
    assert report["message"] == "step 500 of 500" and "at" in report
    fw.GATE.set()
    await wait_for_job(fs, job.id, "completed")
    writes = await rows(fs, "SELECT count(*) AS n FROM public.progress_writes")
    assert 1 <= writes[0]["n"] <= 5, "500 reports, a handful of writes"


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), True, "half"])
def test_progress_refuses_a_fraction_out_of_range(fraction: object) -> None:
    with pytest.raises(ValueError, match=r"progress fraction must be a number from 0\.0 to 1\.0"):
        Job(id=1, state=JobState.EXECUTING, queue="q", worker="w", args={}).progress(fraction)  # type: ignore[arg-type]
