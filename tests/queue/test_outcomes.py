"""Every row of the job state machine (docs/architecture.md), against the real jobs table."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import anyio
import pytest

from flowstone import Cancel, Discard, Snooze, Worker
from flowstone.queue.engine import claim_plan
from flowstone.queue.job import JobState
from flowstone.queue.plan import run

QUEUE = "outcomes"


class Ok(Worker):
    queue = QUEUE

    def perform(self, job):
        return None


class Boom(Worker):
    queue = QUEUE
    max_attempts = 3

    def perform(self, job):
        raise RuntimeError(f"boom {job.args.get('n')}")

    def backoff(self, job):
        return 100.0


class DefaultBackoff(Worker):
    queue = QUEUE

    def perform(self, job):
        raise ValueError("nope")


class Snoozer(Worker):
    queue = QUEUE

    def perform(self, job):
        return Snooze(30)


class Discarder(Worker):
    queue = QUEUE

    def perform(self, job):
        return Discard("bad data")


class Canceller(Worker):
    queue = QUEUE

    def perform(self, job):
        return Cancel("not needed")


RELEASE = threading.Event()


class SlowSync(Worker):
    queue = QUEUE
    max_attempts = 2

    def perform(self, job):
        RELEASE.wait(10)

    def timeout(self, job):
        return 0.05


class SlowAsync(Worker):
    queue = QUEUE
    max_attempts = 1

    async def perform(self, job):
        await anyio.Event().wait()

    def timeout(self, job):
        return 0.05


class AsyncOk(Worker):
    queue = QUEUE

    async def perform(self, job):
        return None


def db_now(sql) -> datetime:
    return sql("SELECT now() AS now")[0]["now"]


def test_insert_is_available_or_scheduled(flowstone):
    now = flowstone.insert(Ok.new({}))
    later = flowstone.insert(Ok.new({}, scheduled_in=60))
    at = flowstone.insert(Ok.new({}, scheduled_at=datetime.now().astimezone() + timedelta(hours=1)))
    past = flowstone.insert(Ok.new({}, scheduled_at=datetime.now().astimezone() - timedelta(hours=1)))
    assert [j.state for j in (now, later, at, past)] == ["available", "scheduled", "scheduled", "available"]
    stored = flowstone.get_job(later.id)
    assert stored.state == "scheduled" and stored.attempt == 0
    assert (stored.scheduled_at - stored.inserted_at).total_seconds() == pytest.approx(60, abs=1)


def test_stager_makes_due_scheduled_and_retryable_available(flowstone, engine, sql):
    due = flowstone.insert(Ok.new({}, scheduled_in=60))
    not_due = flowstone.insert(Ok.new({}, scheduled_in=3600))
    retry = flowstone.insert(Ok.new({}))
    sql("UPDATE flowstone.jobs SET state = 'retryable' WHERE id = %s", [retry.id])
    sql("UPDATE flowstone.jobs SET scheduled_at = now() - interval '1 s' WHERE id = %s", [due.id])
    assert engine.stage() == {QUEUE: 2}
    states = {j: flowstone.get_job(j).state for j in (due.id, not_due.id, retry.id)}
    assert states == {due.id: "available", not_due.id: "scheduled", retry.id: "available"}
    assert engine.stage(until="infinity") == {QUEUE: 1}
    assert flowstone.get_job(not_due.id).state == "available"


def test_claim_sets_attempt_attempted_at_and_by(flowstone, engine, sql):
    job = flowstone.insert(Ok.new({}))
    [claimed] = engine.claim(QUEUE, node="node-a")
    assert claimed.id == job.id
    row = flowstone.get_job(job.id)
    assert row.state == "executing" and row.attempt == 1 and row.attempted_by == ["node-a"]
    assert abs((row.attempted_at - db_now(sql)).total_seconds()) < 5
    assert engine.claim(QUEUE) == []


def test_claim_order_and_limit(flowstone, engine):
    low = flowstone.insert(Ok.new({}, priority=5))
    first = flowstone.insert(Ok.new({}, priority=0))
    second = flowstone.insert(Ok.new({}, priority=0))
    other = flowstone.insert(Ok.new({}, queue="elsewhere"))
    assert [j.id for j in engine.claim(QUEUE, limit=2)] == [first.id, second.id]
    assert [j.id for j in engine.claim(QUEUE, limit=5)] == [low.id]
    assert flowstone.get_job(other.id).state == "available"


def test_claim_skips_locked_jobs(flowstone):
    """Two claims at once take disjoint jobs; the second waits for no lock the first holds
    (lock_timeout: a claim that waits fails in seconds instead of hanging the test)."""
    jobs = flowstone.insert_all([Ok.new({"n": n}) for n in range(4)])
    with flowstone.connect() as held, flowstone.connect(options="-c lock_timeout=5s") as other:
        mine = run(held, claim_plan(flowstone.database.statements.jobs, QUEUE, 2, "holder"))
        theirs = run(other, claim_plan(flowstone.database.statements.jobs, QUEUE, 10, "other"))
        assert {j.id for j in mine}.isdisjoint({j.id for j in theirs})
        assert {j.id for j in mine} | {j.id for j in theirs} == {j.id for j in jobs}
        held.rollback()
        other.rollback()


def test_returns_normally_completes(flowstone, engine):
    job = flowstone.insert(Ok.new({}))
    [outcome] = engine.round(QUEUE)
    assert outcome.state == "completed"
    row = flowstone.get_job(job.id)
    assert row.state == "completed" and row.completed_at is not None and row.errors == []


def test_async_perform_completes(flowstone, engine):
    job = flowstone.insert(AsyncOk.new({}))
    engine.round(QUEUE)
    assert flowstone.get_job(job.id).state == "completed"


def test_raise_with_attempts_left_is_retryable_with_backoff(flowstone, engine, sql):
    job = flowstone.insert(Boom.new({"n": 7}))
    engine.round(QUEUE)
    row = flowstone.get_job(job.id)
    assert row.state == "retryable" and row.attempt == 1
    delay = (row.scheduled_at - db_now(sql)).total_seconds()
    assert 98 < delay <= 100
    [error] = row.errors
    assert error["attempt"] == 1 and error["error"] == "RuntimeError: boom 7"
    assert "Traceback" in error["traceback"] and "boom 7" in error["traceback"]
    assert datetime.fromisoformat(error["at"]) <= db_now(sql)


def test_default_backoff_mirrors_oban(flowstone, engine, sql):
    job = flowstone.insert(DefaultBackoff.new({}))
    engine.round(QUEUE)
    row = flowstone.get_job(job.id)
    delay = (row.scheduled_at - db_now(sql)).total_seconds()
    assert 17 * 0.9 - 1 <= delay <= 17 * 1.1


def test_raise_without_attempts_left_is_discarded(flowstone, engine):
    job = flowstone.insert(Boom.new({"n": 1}))
    for attempt in (1, 2, 3):
        engine.stage(until="infinity")
        [outcome] = engine.round(QUEUE)
        assert outcome.job.attempt == attempt
    row = flowstone.get_job(job.id)
    assert row.state == "discarded" and row.discarded_at is not None and row.attempt == 3
    assert [e["attempt"] for e in row.errors] == [1, 2, 3]
    assert engine.stage(until="infinity") == {}


def test_snooze_reschedules_without_consuming_the_attempt(flowstone, engine, sql):
    job = flowstone.insert(Snoozer.new({}, max_attempts=1))
    for snoozes in (1, 2):
        [claimed] = engine.claim(QUEUE)
        assert claimed.attempt == 1
        [outcome] = engine.run_jobs([claimed])
        assert engine.ack([outcome]) == {job.id}
        row = flowstone.get_job(job.id)
        assert row.state == "scheduled" and row.attempt == 0 and row.meta["snoozed"] == snoozes
        assert 28 < (row.scheduled_at - db_now(sql)).total_seconds() <= 30
        assert row.errors == []
        engine.stage(until="infinity")


@pytest.mark.parametrize(
    ("worker", "state", "message"),
    [(Discarder, "discarded", "discarded: bad data"), (Canceller, "cancelled", "cancelled: not needed")],
)
def test_discard_and_cancel_record_the_reason(flowstone, engine, worker, state, message):
    job = flowstone.insert(worker.new({}))
    engine.round(QUEUE)
    row = flowstone.get_job(job.id)
    assert row.state == state
    assert (row.discarded_at if state == "discarded" else row.cancelled_at) is not None
    [error] = row.errors
    assert error["error"] == message and error["attempt"] == 1


def test_sync_timeout_is_an_error(flowstone, engine):
    RELEASE.clear()
    job = flowstone.insert(SlowSync.new({}))
    try:
        engine.round(QUEUE)
        row = flowstone.get_job(job.id)
        assert row.state == "retryable"
        assert "JobTimeoutError" in row.errors[0]["error"] and "0.05" in row.errors[0]["error"]
    finally:
        RELEASE.set()


def test_async_timeout_without_attempts_left_is_discarded(flowstone, engine):
    job = flowstone.insert(SlowAsync.new({}))
    engine.round(QUEUE)
    row = flowstone.get_job(job.id)
    assert row.state == "discarded" and "timeout" in row.errors[0]["error"]


def test_stale_ack_twice_applies_once(flowstone, engine):
    job = flowstone.insert(Boom.new({}))
    [outcome] = engine.run_jobs(engine.claim(QUEUE))
    assert engine.ack([outcome]) == {job.id}
    assert engine.ack([outcome]) == set()
    row = flowstone.get_job(job.id)
    assert row.state == "retryable" and len(row.errors) == 1


def test_stale_ack_after_reclaim_is_ignored(flowstone, engine, sql):
    job = flowstone.insert(Ok.new({}))
    [first] = engine.claim(QUEUE)
    sql("UPDATE flowstone.jobs SET state = 'available' WHERE id = %s", [job.id])  # a rescue
    [second] = engine.claim(QUEUE)
    assert second.attempt == 2
    [stale] = engine.run_jobs([first])
    assert engine.ack([stale]) == set()
    assert flowstone.get_job(job.id).state == "executing"
    [fresh] = engine.run_jobs([second])
    assert engine.ack([fresh]) == {job.id}
    assert flowstone.get_job(job.id).state == "completed"


def test_stale_ack_after_snooze_and_reclaim_same_attempt_is_ignored(flowstone, engine):
    job = flowstone.insert(Snoozer.new({}))
    [first] = engine.claim(QUEUE)
    engine.ack(engine.run_jobs([first]))
    engine.stage(until="infinity")
    [second] = engine.claim(QUEUE)
    assert second.attempt == first.attempt and second.attempted_at != first.attempted_at
    [stale] = engine.run_jobs([first])
    assert engine.ack([stale]) == set()
    row = flowstone.get_job(job.id)
    assert row.state == "executing" and row.meta["snoozed"] == 1


def test_ack_batch_applies_each_outcome(flowstone, engine):
    ok, boom, snooze = flowstone.insert_all([Ok.new({}), Boom.new({}), Snoozer.new({})])
    outcomes = engine.round(QUEUE)
    assert sorted(o.kind for o in outcomes) == ["completed", "retryable", "snoozed"]
    assert [flowstone.get_job(j.id).state for j in (ok, boom, snooze)] == [
        JobState.COMPLETED,
        JobState.RETRYABLE,
        JobState.SCHEDULED,
    ]
