"""Job management: get, list with filters, retry, cancel, delete."""

from __future__ import annotations

import pytest

from flowstone import Worker

QUEUE = "manage"


class Ok(Worker):
    queue = QUEUE

    def perform(self, job):
        return None


class Fail(Worker):
    queue = QUEUE
    max_attempts = 1

    def perform(self, job):
        raise RuntimeError("always")


def test_get_job(flowstone):
    job = flowstone.insert(Ok.new({"a": 1}))
    assert flowstone.get_job(job.id).args == {"a": 1}
    assert flowstone.get_job(job.id + 1000) is None


def test_list_jobs_filters(flowstone, engine):
    ok = flowstone.insert_all([Ok.new({"n": n}) for n in range(3)])
    other = flowstone.insert(Ok.new({}, queue="other"))
    fail = flowstone.insert(Fail.new({}))
    engine.round(QUEUE, limit=1)
    assert [j.id for j in flowstone.list_jobs()] == [*(j.id for j in ok), other.id, fail.id]
    assert [j.id for j in flowstone.list_jobs(queue="other")] == [other.id]
    assert [j.id for j in flowstone.list_jobs(state="completed")] == [ok[0].id]
    assert [j.id for j in flowstone.list_jobs(worker=Fail.name)] == [fail.id]
    assert [j.id for j in flowstone.list_jobs(queue=QUEUE, state="available", worker=Ok.name)] == [
        ok[1].id,
        ok[2].id,
    ]
    assert len(flowstone.list_jobs(limit=2)) == 2
    with pytest.raises(ValueError):
        flowstone.list_jobs(state="bogus")


def test_retry_a_discarded_job(flowstone, engine):
    job = flowstone.insert(Fail.new({}))
    engine.round(QUEUE)
    assert flowstone.get_job(job.id).state == "discarded"
    retried = flowstone.retry_job(job.id)
    assert retried.state == "available" and retried.discarded_at is None
    assert retried.max_attempts == 2 and retried.attempt == 1
    [outcome] = engine.round(QUEUE)
    assert outcome.job.attempt == 2
    row = flowstone.get_job(job.id)
    assert row.state == "discarded" and len(row.errors) == 2


def test_retry_of_an_available_or_executing_job_does_nothing(flowstone, engine):
    job = flowstone.insert(Ok.new({}))
    assert flowstone.retry_job(job.id) is None
    engine.claim(QUEUE)
    assert flowstone.retry_job(job.id) is None
    assert flowstone.retry_job(job.id + 1000) is None


def test_cancel_an_available_job(flowstone, engine):
    job = flowstone.insert(Ok.new({}))
    cancelled = flowstone.cancel_job(job.id)
    assert cancelled.state == "cancelled" and cancelled.cancelled_at is not None
    assert engine.claim(QUEUE) == []
    assert flowstone.cancel_job(job.id) is None


def test_cancel_of_an_executing_job_wins_over_its_late_ack(flowstone, engine):
    job = flowstone.insert(Ok.new({}))
    claimed = engine.claim(QUEUE)
    assert flowstone.cancel_job(job.id).state == "cancelled"
    assert engine.ack(engine.run_jobs(claimed)) == set()
    assert flowstone.get_job(job.id).state == "cancelled"


def test_a_cancel_records_why_and_by_whom(flowstone, engine):
    job = flowstone.insert(Ok.new({}))
    engine.claim(QUEUE)
    [entry] = flowstone.cancel_job(job.id, reason="customer left\x00").errors
    assert entry["attempt"] == 1 and entry["at"]
    assert (
        entry["error"].startswith("cancelled: customer left\\x00 (by ")
        and " from flowstone" in entry["error"]
    )
    assert entry["error"].endswith(", while executing)")
    [plain] = flowstone.cancel_job(flowstone.insert(Ok.new({"n": 2})).id).errors
    assert plain["error"].startswith("cancelled: by request (by ") and plain["attempt"] == 0


def test_delete(flowstone, engine):
    done, running = flowstone.insert_all([Ok.new({}), Ok.new({})])
    engine.round(QUEUE, limit=1)
    engine.claim(QUEUE)
    assert flowstone.delete_job(done.id) is True
    assert flowstone.get_job(done.id) is None
    assert flowstone.delete_job(running.id) is False
    assert flowstone.delete_job(done.id) is False


def test_queue_stats_view(flowstone, engine, sql):
    flowstone.insert_all([Ok.new({}), Ok.new({}), Ok.new({}, queue="other")])
    engine.round(QUEUE, limit=1)
    rows = sql("SELECT queue, state::text, count FROM flowstone.queue_stats ORDER BY 1, 2")
    assert [tuple(r.values()) for r in rows] == [
        (QUEUE, "available", 1),
        (QUEUE, "completed", 1),
        ("other", "available", 1),
    ]
