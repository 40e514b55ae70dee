"""Outcomes the database refuses (here a trigger does, for the jobs that ask it in their
args): the producer writes the batch's outcomes one by one, replaces a refused one by a
failure naming why — or, refused too, by a bare discard — and the other jobs and the
node carry on. And a second stop skips what is left of the grace period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
import runtime_workers as w
from support import MakeFs, rows, wait_for_job

from flowstone import FlowStone

pytestmark = pytest.mark.anyio

REFUSE = """
CREATE FUNCTION flowstone.refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'executing' AND NEW.args -> 'refuse' ? NEW.state::text THEN
        RAISE EXCEPTION 'outcome % refused', NEW.state;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_outcome BEFORE UPDATE ON flowstone.jobs
    FOR EACH ROW EXECUTE FUNCTION flowstone.refuse_outcome();
"""


async def refusing(make_fs: MakeFs) -> FlowStone:
    """An instance on a database that refuses the outcomes named in a job's `refuse` arg."""
    fs = make_fs()
    async with fs.aconnection() as conn:
        await conn.execute(REFUSE)
    return fs


async def test_a_refused_outcome_becomes_a_failure_and_the_batch_is_written(make_fs: MakeFs) -> None:
    fs = await refusing(make_fs)
    refused = await fs.ainsert(w.Echo.new({"refuse": ["completed"]}, max_attempts=3))
    others = await fs.ainsert_all([w.Echo.new({"n": n}) for n in range(4)])
    await fs.start({w.QUEUE: 10})
    failed = await wait_for_job(fs, refused.id, "retryable")
    error = failed.errors[-1]["error"]
    assert "FlowStone could not record this job's outcome (completed)" in error
    assert "outcome completed refused" in error
    assert failed.scheduled_at is not None
    assert failed.scheduled_at > datetime.now(UTC) + timedelta(seconds=30), "retried a minute later"
    for job in others:
        await wait_for_job(fs, job.id, "completed")


async def test_a_refused_outcome_of_a_last_attempt_is_discarded(make_fs: MakeFs) -> None:
    fs = await refusing(make_fs)
    refused = await fs.ainsert(w.Echo.new({"refuse": ["completed"]}, max_attempts=1))
    await fs.start({w.QUEUE: 10})
    failed = await wait_for_job(fs, refused.id, "discarded")
    assert "could not record this job's outcome (completed)" in failed.errors[-1]["error"]


async def test_when_the_failure_is_refused_too_the_job_is_discarded_bare(make_fs: MakeFs) -> None:
    fs = await refusing(make_fs)
    refused = await fs.ainsert(w.Echo.new({"refuse": ["completed", "retryable"]}, max_attempts=3))
    await fs.start({w.QUEUE: 10})
    failed = await wait_for_job(fs, refused.id, "discarded")
    assert failed.errors[-1]["error"] == "discarded: no outcome could be recorded"
    ordinary = await fs.ainsert(w.Echo.new({}))
    await wait_for_job(fs, ordinary.id, "completed")


async def test_a_second_stop_skips_the_rest_of_the_grace_period(make_fs: MakeFs) -> None:
    fs = make_fs(shutdown_grace=60)
    node = await fs.start({w.QUEUE: 2})
    job = await fs.ainsert(w.Hang.new())
    await wait_for_job(fs, job.id, "executing")
    node.stop()
    node.stop()
    with anyio.fail_after(10):
        await node.stopped.wait()
    back = await fs.aget_job(job.id)
    assert back is not None and (back.state, back.attempt) == ("available", 0)
    assert await rows(fs, "SELECT count(*) AS n FROM flowstone.jobs WHERE state = 'executing'") == [{"n": 0}]
