"""`await_job` without a node: the job is claimed, executed and acknowledged step by step
while a waiter (in a thread, with a deadline on the test's side) waits for it — woken by
the notification of its end, or re-reading every poll where no session can LISTEN."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from support import wait_until

from flowstone import AwaitTimeoutError, FlowStone, Job, ValidationError, Worker

QUEUE = "awaited"


class Doubler(Worker):
    queue = QUEUE
    record_result = True

    def perform(self, job: Job) -> Any:
        return {"double": job.args["n"] * 2}


class Waiters:
    """Runs waiters in daemon threads: a waiter with no deadline that a failing test leaves
    blocked never holds up the test's teardown or the process's exit."""

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:
                future.set_exception(error)

        threading.Thread(target=run, daemon=True).start()
        return future


@pytest.fixture
def waiters() -> Waiters:
    return Waiters()


def marked(sql: Any, job_id: int) -> bool:
    """The waiter marked the job awaited: from then on, the job's end notifies it."""
    return sql("SELECT meta ? 'awaited' AS marked FROM flowstone.jobs WHERE id = %s", [job_id])[0]["marked"]


def finished_while_awaited(engine: Any, sql: Any, job_id: int, waiting: Future[Any]) -> Any:
    """Claim the job, let the waiter mark it, then execute and acknowledge it; the waiter's answer."""
    # The waiter's mark may hold the row's lock at that moment, and a claim skips locked
    # rows (SKIP LOCKED): claim again until the job is taken, as a producer's next cycle would.
    claimed = wait_until(lambda: engine.claim(QUEUE), 10, "the job to be claimed")
    wait_until(lambda: marked(sql, job_id), 10, "the waiter to mark the job")
    assert not waiting.done(), "the waiter returned before the job ended"
    engine.ack(engine.run_jobs(claimed))
    return waiting.result(timeout=10)


def test_a_waiter_without_a_deadline_is_woken_by_the_end(flowstone, engine, sql, waiters):
    job = flowstone.insert(Doubler.new({"n": 21}))
    waiting = waiters.submit(flowstone.await_job, job.id, timeout=None)
    assert finished_while_awaited(engine, sql, job.id, waiting) == {"double": 42}


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["no-deadline", "deadline"])
def test_where_no_session_listens_a_waiter_reads_again_every_poll(
    flowstone_url, engine, sql, waiters, timeout
):
    polled = FlowStone(flowstone_url, pooler="transaction", poll_interval=0.05)
    assert polled.database.poll_notices == 0.05
    job = polled.insert(Doubler.new({"n": 4}))
    try:
        waiting = waiters.submit(polled.await_job, job.id, timeout=timeout)
        assert finished_while_awaited(engine, sql, job.id, waiting) == {"double": 8}
        unfinished = polled.insert(Doubler.new({"n": 1}))
        with pytest.raises(AwaitTimeoutError):
            polled.await_job(unfinished.id, timeout=0.2)
    finally:
        polled.close()


@pytest.mark.anyio
async def test_awaiting_a_job_that_does_not_exist_says_so(flowstone):
    with pytest.raises(ValidationError, match="no job with id 424242"):
        flowstone.await_job(424242, timeout=1)
    with pytest.raises(ValidationError, match="no job with id 424242"):
        await flowstone.aawait_job(424242, timeout=1)


@pytest.mark.parametrize("timeout", [-1, True, math.nan])
def test_a_timeout_must_be_seconds(flowstone, timeout):
    job = flowstone.insert(Doubler.new({"n": 1}))
    with pytest.raises(ValidationError, match="timeout must be a number of seconds >= 0 or None"):
        flowstone.await_job(job.id, timeout=timeout)
