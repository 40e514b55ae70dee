"""What a node survives: timeouts, BaseExceptions, shutdown with jobs running, lost connections."""

from __future__ import annotations

import time

import anyio
import psycopg
import pytest
import runtime_workers as w
from support import MakeFs, rows, wait_for, wait_for_job

from flowstone import FlowStone

pytestmark = pytest.mark.anyio


async def executing(fs: FlowStone) -> int:
    found = await rows(fs, "SELECT count(*) AS n FROM flowstone.jobs WHERE state = 'executing'")
    return int(found[0]["n"])


async def test_an_async_job_past_its_timeout_is_cancelled_and_retryable(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 1})
    job = await fs.ainsert(w.SlowAsync.new())
    failed = await wait_for_job(fs, job.id, "retryable", timeout=3)
    assert w.reports == [f"cancelled {job.id}"]
    assert failed.errors[0]["error"].startswith("JobTimeoutError")


async def test_a_sync_job_past_its_timeout_is_recorded_as_timed_out_when_its_thread_returns(
    make_fs: MakeFs,
) -> None:
    """The thread cannot be stopped, so the job stays executing (it must not run again
    meanwhile) and fails with the timeout once perform returns."""
    fs = make_fs()
    await fs.start({w.QUEUE: 1})
    job = await fs.ainsert(w.SlowSync.new(max_attempts=1))
    past = time.monotonic() + 0.3
    await wait_for(lambda: time.monotonic() > past, message="the clock to pass the 0.1 s timeout well")
    assert (await fs.aget_job(job.id)).state == "executing"  # type: ignore[union-attr]
    w.RELEASE.set()
    failed = await wait_for_job(fs, job.id, "discarded", timeout=3)
    assert "timeout of 0.1 s" in failed.errors[0]["error"]
    assert w.reports == [f"thread done {job.id}"]


@pytest.mark.parametrize("kind", sorted(w.RAISABLE))
@pytest.mark.parametrize("worker", [w.RaiseBase, w.SyncRaiseBase])
async def test_a_job_raising_a_base_exception_fails_alone(
    make_fs: MakeFs, worker: type[w.Worker], kind: str
) -> None:
    fs = make_fs()
    node = await fs.start({w.QUEUE: 2})
    retried, discarded = await fs.ainsert_all(
        [worker.new({"kind": kind}), worker.new({"kind": kind}, max_attempts=1)]
    )
    first = await wait_for_job(fs, retried.id, "retryable")
    await wait_for_job(fs, discarded.id, "discarded")
    assert first.errors[0]["error"] == f"{w.RAISABLE[kind].__name__}: from a job"
    after = await fs.ainsert(w.Echo.new())
    await wait_for_job(fs, after.id, "completed")
    assert not node.stopped.is_set()


async def test_stop_hands_back_async_jobs_and_leaves_sync_threads_to_the_lifeline(make_fs: MakeFs) -> None:
    fs = make_fs(shutdown_grace=0.5)
    node = await fs.start({w.QUEUE: 4})
    short, hang, sync_hang = await fs.ainsert_all(
        [w.Nap.new({"seconds": 0.3}), w.Hang.new(), w.SyncHang.new()]
    )
    for job in (short, hang, sync_hang):
        await wait_for_job(fs, job.id, "executing")
    started = time.monotonic()
    await fs.stop()
    assert time.monotonic() - started < 1.5
    assert (await fs.aget_job(short.id)).state == "completed"  # type: ignore[union-attr]
    back = await fs.aget_job(hang.id)
    assert back is not None and (back.state, back.attempt, back.errors) == ("available", 0, [])
    left = await fs.aget_job(sync_hang.id)
    assert left is not None and (left.state, left.attempted_by) == ("executing", node.claimer)
    assert node.producers[w.QUEUE].left_behind == [sync_hang.id]
    assert await rows(fs, "SELECT incarnation FROM flowstone.nodes") == [{"incarnation": node.incarnation}], (
        "the node's row stays until its heartbeat expires, so the lifeline waits for the process to be gone"
    )


async def terminate_backends(url: str) -> int:
    """Kill every FlowStone connection to the test database, as a server restart would."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND application_name LIKE 'flowstone%'"
        )
        return len(await cursor.fetchall())


async def count(url: str, state: str) -> int:
    """Jobs in `state`, read on a connection of its own (the node's get killed)."""
    async with await psycopg.AsyncConnection.connect(url, application_name="observer") as conn:
        cursor = await conn.execute("SELECT count(*) FROM flowstone.jobs WHERE state = %s", [state])
        found = await cursor.fetchone()
        return int(found[0]) if found else 0


async def test_jobs_complete_when_the_connections_drop_mid_run(make_fs: MakeFs, flowstone_url: str) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 4})
    jobs = await fs.ainsert_all([w.Nap.new({"seconds": 0.05}) for _ in range(40)])
    for progress in (5, 20):
        await wait_for(lambda p=progress: _at_least(flowstone_url, p), message=f"{progress} jobs done")
        assert await terminate_backends(flowstone_url) >= 2
    await wait_for(lambda: _at_least(flowstone_url, len(jobs)), timeout=20, message="all jobs done")
    assert await count(flowstone_url, "executing") == 0
    with anyio.fail_after(5):
        await fs.stop()


async def _at_least(url: str, completed: int) -> bool:
    return await count(url, "completed") >= completed


async def test_jobs_claimed_while_stopping_are_handed_back(make_fs: MakeFs, flowstone_url: str) -> None:
    """A claim still in flight when the stop begins must not start jobs nobody will stop."""
    fs = make_fs(shutdown_grace=0.1)
    producer = (await fs.start({w.QUEUE: 1})).producers[w.QUEUE]
    await fs.apause_queue(w.QUEUE)
    # The pause reaches the producer through a notification and a reload of the controls;
    # an insert's wake-up may overtake it and get the job claimed before the lock below.
    await wait_for(lambda: producer.paused, message="the pause to reach the producer")
    job = await fs.ainsert(w.Hang.new())
    async with await psycopg.AsyncConnection.connect(flowstone_url, application_name="locker") as locker:
        await locker.execute("LOCK TABLE flowstone.jobs IN EXCLUSIVE MODE")  # claims now wait
        await fs.aresume_queue(w.QUEUE)
        await wait_for(lambda: claim_waiting(flowstone_url), message="the claim to wait on the lock")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(fs.stop)
                await wait_for(lambda: producer._stopping, message="the stop to begin")
                await locker.rollback()
    back = await fs.aget_job(job.id)
    assert back is not None and (back.state, back.attempt) == ("available", 0)


async def claim_waiting(url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(url, application_name="observer") as conn:
        cursor = await conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'flowstone%' AND wait_event_type = 'Lock'"
            " AND (query LIKE 'WITH claimed AS%' OR query LIKE 'WITH acked AS%')"
        )
        return await cursor.fetchone() is not None


async def test_a_claim_whose_answer_was_lost_is_handed_back_after_reconnecting(
    make_fs: MakeFs, flowstone_url: str
) -> None:
    """A claim can commit while its answer is lost with the connection; the job would stay
    executing under a live node forever. The producer hands such jobs back on reconnect."""
    fs = make_fs()
    node = await fs.start({w.QUEUE: 2})
    orphan = await fs.ainsert(w.Nap.new({"seconds": 0}))
    async with await psycopg.AsyncConnection.connect(flowstone_url, autocommit=True) as conn:
        await conn.execute(  # as the lost claim left it
            "UPDATE flowstone.jobs SET state = 'executing', attempt = 1, attempted_at = now(),"
            " attempted_by = %s WHERE id = %s",
            [node.claimer, orphan.id],
        )
    assert await terminate_backends(flowstone_url) >= 1  # the listener's reconnect wakes the producer
    observer = make_fs(node="observer")  # fresh connections: fs's pooled ones were just killed
    done = await wait_for_job(observer, orphan.id, "completed", timeout=10)
    assert done.attempt == 1, "the attempt of the claim that never ran was refunded"
    with anyio.fail_after(5):
        await fs.stop()
