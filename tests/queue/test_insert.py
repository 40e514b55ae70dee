"""Inserting: single, bulk, async twins, NOTIFY (transactional inserts: test_transactional.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from flowstone import JobState, Unique, Worker
from flowstone.queue.floor import parse_notification
from flowstone.queue.insert import insert_plan
from flowstone.testing import adrain_queue, drain_queue

QUEUE = "inserts"


class Plain(Worker):
    queue = QUEUE

    def perform(self, job):
        return None


class Tagged(Worker):
    queue = QUEUE
    tags = ("a", "b")
    priority = 3
    max_attempts = 7

    def perform(self, job):
        return None


def jobs_count(sql) -> int:
    return sql("SELECT count(*) AS n FROM flowstone.jobs")[0]["n"]


def test_insert_returns_the_stored_job(flowstone):
    job = flowstone.insert(Tagged.new({"x": 1}, meta={"m": True}))
    stored = flowstone.get_job(job.id)
    assert (job.state, job.queue, job.worker, job.args, job.tags) == (
        "available",
        QUEUE,
        Tagged.name,
        {"x": 1},
        ["a", "b"],
    )
    assert (stored.priority, stored.max_attempts, stored.attempt) == (3, 7, 0)
    assert stored.meta == {"m": True} and stored.errors == [] and stored.unique_key is None
    assert job.inserted_at == stored.inserted_at and job.scheduled_at == stored.scheduled_at


def test_overrides(flowstone):
    job = flowstone.insert(
        Tagged.new({}, queue="other", priority=9, max_attempts=1, tags=["z"], meta={"k": 1})
    )
    stored = flowstone.get_job(job.id)
    assert (stored.queue, stored.priority, stored.max_attempts, stored.tags, stored.meta) == (
        "other",
        9,
        1,
        ["z"],
        {"k": 1},
    )


def test_enqueue_uses_the_default_instance(flowstone):
    job = Plain.enqueue({"a": 1}, scheduled_in=30)
    assert job.state == "scheduled" and flowstone.get_job(job.id).args == {"a": 1}


def test_insert_all_of_ten_thousand_jobs_in_one_call(flowstone, sql):
    jobs = flowstone.insert_all([Plain.new({"n": n}) for n in range(10_000)])
    assert [job.args["n"] for job in jobs] == list(range(10_000))
    assert [job.id for job in jobs] == sorted(job.id for job in jobs)
    rows = sql("SELECT id, args, state FROM flowstone.jobs ORDER BY id")
    assert [(r["id"], r["args"]["n"]) for r in rows] == [(j.id, n) for n, j in enumerate(jobs)]
    assert {r["state"] for r in rows} == {"available"}


def traced(plan, seen: list[str]):
    """Run `plan` recording each statement it issues."""
    try:
        step = next(plan)
        while True:
            seen.append(step[0])
            step = plan.send((yield step))
    except StopIteration as done:
        return done.value


def test_insert_all_is_one_statement(flowstone, sql):
    seen: list[str] = []
    jobs = [Plain.new({"n": n}) for n in range(500)]
    flowstone.database.execute(traced(insert_plan(flowstone.database.statements.jobs, jobs), seen))
    assert seen == [flowstone.database.statements.jobs.insert]
    assert jobs_count(sql) == 500


def test_insert_all_empty(flowstone):
    assert flowstone.insert_all([]) == []


def test_insert_rejects_anything_but_a_new_job(flowstone):
    with pytest.raises(TypeError, match=r"Worker\.new"):
        flowstone.insert({"worker": "x"})


def test_a_bad_job_in_a_batch_is_named_and_nothing_is_inserted(flowstone, sql):
    with pytest.raises(TypeError, match=r"^jobs\[2\]: expected a job built with Worker\.new"):
        flowstone.insert_all([Plain.new({}), Plain.new({}), {"worker": "x"}, Plain.new({})])
    assert jobs_count(sql) == 0


def test_insert_all_returns_every_field_as_stored(flowstone):
    unique = Unique(period=None)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    news = [
        Plain.new({"n": 1}),
        Tagged.new({"n": 2}, meta={"m": [1]}, scheduled_in=60),
        Plain.new({"n": 3}, scheduled_at=at),
        Plain.new({"n": 4}, unique=unique),
    ]
    jobs = flowstone.insert_all(news)
    again = flowstone.insert_all([Plain.new({"n": 4}, unique=unique)])
    assert [job.to_dict() for job in jobs] == [flowstone.get_job(job.id).to_dict() for job in jobs]
    assert [job.state for job in jobs] == ["available", "scheduled", "scheduled", "available"]
    assert jobs[2].scheduled_at == at and jobs[0].inserted_at == jobs[0].scheduled_at
    assert again[0].conflict and again[0].id == jobs[3].id


def test_insert_all_returns_a_read_only_list_of_the_same_jobs(flowstone):
    jobs = flowstone.insert_all([Plain.new({"n": n}) for n in range(5)])
    as_list = list(jobs)
    assert len(jobs) == 5 and jobs == as_list and as_list == jobs and repr(jobs) == repr(as_list)
    assert jobs[-1] is as_list[4] and jobs[1:3] == as_list[1:3] and jobs[::-2] == as_list[::-2]
    assert [job.args["n"] for job in reversed(jobs)] == [4, 3, 2, 1, 0]
    assert jobs[0] in jobs and jobs.index(jobs[3]) == 3 and jobs != as_list[:4]
    assert jobs != tuple(as_list)
    jobs[0].state = JobState.CANCELLED
    assert next(iter(jobs)).state == JobState.CANCELLED
    with pytest.raises(IndexError):
        jobs[5]
    with pytest.raises(TypeError, match="unhashable"):
        hash(jobs)


@pytest.mark.anyio
async def test_async_twins_with_an_async_connection(flowstone, flowstone_url, sql):
    try:
        async with await psycopg.AsyncConnection.connect(flowstone_url) as conn:
            await flowstone.ainsert(Plain.new({"rolled": "back"}), conn=conn)
            await conn.rollback()
            jobs = await flowstone.ainsert_all([Plain.new({"n": n}) for n in range(3)], conn=conn)
            await conn.commit()
        assert [j.args for j in jobs] == [{"n": 0}, {"n": 1}, {"n": 2}]
        single = await flowstone.ainsert(Plain.new({"n": 3}))
        assert (await flowstone.aget_job(single.id)).state == "available"
        result = await adrain_queue(QUEUE)
        assert result.completed == 4
        done = await flowstone.alist_jobs(state="completed")
        assert sorted(j.args["n"] for j in done) == [0, 1, 2, 3]
    finally:
        await flowstone.aclose()


class Echo(Worker):
    queue = QUEUE

    def perform(self, job):
        Echo.seen.append(job.args)

    seen: list = []


def test_args_json_round_trip(flowstone):
    args = {
        "s": "héllo ✓",
        "i": -(2**62),
        "f": 1.5,
        "t": True,
        "n": None,
        "l": [1, "two", [3.25], {"four": 4}],
        "d": {"nested": {"deep": []}},
        "tuple": (1, 2),
    }
    job = flowstone.insert(Echo.new(args))
    expected = {**args, "tuple": [1, 2]}
    assert job.args == expected and flowstone.get_job(job.id).args == expected
    Echo.seen.clear()
    drain_queue(QUEUE)
    assert Echo.seen == [expected]


def listen(url: str, channel: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
    return conn


def received_until_sentinel(conn: psycopg.Connection, url: str, channel: str) -> list[str]:
    """The queues of the notifications delivered before a sentinel sent now (delivery
    follows commit order)."""
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_notify(%s, 'sentinel')", [channel])
    payloads = []
    for notify in conn.notifies(timeout=10):
        if notify.payload == "sentinel":
            return payloads
        payloads.append(parse_notification(notify.payload)[0])
    raise AssertionError(f"sentinel never arrived; got {payloads}")


def test_one_notification_per_statement_per_queue(flowstone, flowstone_url):
    channel = "flowstone.jobs"
    with listen(flowstone_url, channel) as conn:
        flowstone.insert_all(
            [Plain.new({}), Plain.new({}, queue="q2"), Plain.new({}), Plain.new({}, queue="q2")]
        )
        flowstone.insert_all([Plain.new({}) for _ in range(3)])
        flowstone.insert(Plain.new({}, scheduled_in=60))
        assert sorted(received_until_sentinel(conn, flowstone_url, channel)) == [QUEUE, QUEUE, "q2"]


def test_notification_is_sent_on_commit(flowstone, flowstone_url):
    channel = "flowstone.jobs"
    with listen(flowstone_url, channel) as conn, psycopg.connect(flowstone_url) as tx:
        flowstone.insert(Plain.new({}), conn=tx)
        assert received_until_sentinel(conn, flowstone_url, channel) == []
        tx.commit()
        assert received_until_sentinel(conn, flowstone_url, channel) == [QUEUE]
