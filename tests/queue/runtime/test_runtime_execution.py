"""A running node executes jobs: wake-ups by NOTIFY, priority, retries, snoozes, limits."""

from __future__ import annotations

import time

import anyio
import pytest
import runtime_workers as w
import structlog.testing
from support import MakeFs, rows, wait_for, wait_for_job

from flowstone import Job
from flowstone.queue import telemetry

pytestmark = pytest.mark.anyio


async def test_an_insert_into_an_idle_queue_starts_by_notify_not_by_polling(make_fs: MakeFs) -> None:
    fs = make_fs(poll_interval=60)
    await fs.start({w.QUEUE: 2})
    for _ in range(2):  # the second insert surely finds the producer idle, waiting
        started = time.monotonic()
        job = await fs.ainsert(w.Echo.new())
        await wait_for_job(fs, job.id, "completed", timeout=5)
        assert time.monotonic() - started < 2.0


async def test_jobs_are_claimed_in_priority_order(make_fs: MakeFs) -> None:
    fs = make_fs()
    jobs = await fs.ainsert_all([w.Echo.new({"p": p}, priority=p) for p in (5, 0, 9, 2, 0)])
    await fs.start({w.QUEUE: 1})
    for job in jobs:
        await wait_for_job(fs, job.id, "completed")
    found = await rows(fs, "SELECT id, priority FROM flowstone.jobs ORDER BY attempted_at")
    assert [r["priority"] for r in found] == [0, 0, 2, 5, 9]
    assert [r["id"] for r in found][:2] == [jobs[1].id, jobs[4].id]


async def test_a_failed_job_is_staged_again_and_completes(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 2})
    job = await fs.ainsert(w.FailOnce.new())
    done = await wait_for_job(fs, job.id, "completed")
    assert done.attempt == 2
    assert [e["attempt"] for e in done.errors] == [1]
    assert "first attempt fails" in done.errors[0]["error"]


async def test_a_snoozed_job_runs_again_without_using_an_attempt(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 2})
    job = await fs.ainsert(w.SnoozeOnce.new())
    done = await wait_for_job(fs, job.id, "completed")
    assert (done.attempt, done.meta["snoozed"], done.errors) == (1, 1, [])


async def test_sync_perform_runs_in_a_thread_and_async_on_the_loop(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 2})
    sync_job, async_job = await fs.ainsert_all([w.SyncEcho.new(), w.Echo.new()])
    await wait_for_job(fs, sync_job.id, "completed")
    await wait_for_job(fs, async_job.id, "completed")
    assert w.reports == ["thread False"]


@pytest.mark.parametrize("worker", [w.Nap, w.SyncNap])
async def test_no_more_than_limit_jobs_run_at_once(make_fs: MakeFs, worker: type[w.Worker]) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 3})
    jobs = await fs.ainsert_all([worker.new({"seconds": 0.05}) for _ in range(12)])
    for job in jobs:
        await wait_for_job(fs, job.id, "completed")
    assert w.GAUGE.peak == 3


async def test_telemetry_reports_start_stop_and_exception_until_detached(make_fs: MakeFs) -> None:
    seen: list[tuple[str, dict[str, float], str | None]] = []

    def record(event: str, measurements: object, metadata: object) -> None:
        assert isinstance(measurements, dict) and isinstance(metadata, dict)
        seen.append((event, dict(measurements), metadata.get("state")))

    detach = [telemetry.attach(e, record) for e in ("job.start", "job.stop", "job.exception")]
    fs = make_fs()
    await fs.start({w.QUEUE: 1})
    try:
        ok = await fs.ainsert(w.Echo.new())
        await wait_for_job(fs, ok.id, "completed")
        failed = await fs.ainsert(w.FailOnce.new())
        await wait_for_job(fs, failed.id, "completed")
    finally:
        for undo in detach:
            undo()
    events = [(event, state) for event, _, state in seen]
    assert events == [
        ("job.start", None), ("job.stop", "completed"),
        ("job.start", None), ("job.exception", "retryable"),
        ("job.start", None), ("job.stop", "completed"),
    ]  # fmt: skip
    assert all(m["duration"] >= 0 and m["queue_time"] >= 0 for e, m, _ in seen if e != "job.start")
    assert all("queue_time" in m for _, m, _ in seen)
    later = await fs.ainsert(w.Echo.new())
    await wait_for_job(fs, later.id, "completed")
    assert len(seen) == 6


class Returns(w.Worker):
    queue = w.QUEUE

    async def perform(self, job: Job) -> object:
        return job.args["value"]


async def test_perform_returning_another_value_completes_with_a_warning(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 1})
    with structlog.testing.capture_logs() as logs:
        job = await fs.ainsert(Returns.new({"value": "error: disk full"}))
        await wait_for_job(fs, job.id, "completed")
    [warning] = [entry for entry in logs if entry["log_level"] == "warning" and entry.get("job_id") == job.id]
    assert "not None, Snooze, Discard or Cancel" in warning["event"]
    assert warning["returned"] == "error: disk full"


async def test_a_node_whose_producer_stalls_stops_vouching_for_itself(make_fs: MakeFs) -> None:
    fs = make_fs(node_expiry=1.0)
    node = await fs.start({w.QUEUE: 1})
    await wait_for(lambda: node.connected_for > 0, message="a first heartbeat")
    before = await rows(fs, "SELECT heartbeat_at FROM flowstone.nodes")
    node.producers[w.QUEUE].turned_at -= 3600  # as if its loop had not turned for an hour
    assert node._stalled() == [w.QUEUE]
    await node._heartbeat()
    assert await rows(fs, "SELECT heartbeat_at FROM flowstone.nodes") == before, "no heartbeat was written"


class RunsItsOwnLoop(w.Worker):
    """A sync job that starts an event loop of its own (as a sync library might)."""

    queue = w.QUEUE

    def perform(self, job: Job) -> None:
        async def inner() -> None:
            return None

        anyio.run(inner)


async def test_a_sync_job_may_start_an_event_loop_of_its_own(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({w.QUEUE: 1})
    job = await fs.ainsert(RunsItsOwnLoop.new())
    done = await wait_for_job(fs, job.id, "completed", "retryable")
    assert (done.state, done.errors) == ("completed", [])


@pytest.mark.parametrize(("async_commit", "expected"), [(False, "on"), (True, "off")])
async def test_async_commit_is_opt_in_for_the_producers_connections(
    make_fs: MakeFs, async_commit: bool, expected: str
) -> None:
    fs = make_fs(async_commit=async_commit)
    node = await fs.start({w.QUEUE: 2})
    job = await fs.ainsert(w.Echo.new())
    await wait_for_job(fs, job.id, "completed")
    conn = node.producers[w.QUEUE]._conn
    assert conn is not None
    cursor = await conn.execute("SHOW synchronous_commit")
    assert await cursor.fetchone() == (expected,)
