"""Unique jobs: enforced by the unique index, under concurrency and inside insert_all."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from flowstone import Unique, Worker

QUEUE = "unique"


class Once(Worker):
    queue = QUEUE
    unique = Unique(period=None)

    def perform(self, job):
        return None


class Hourly(Worker):
    queue = QUEUE
    unique = Unique(period=3600, keys=["to"], states="incomplete")

    def perform(self, job):
        return None


class Boom(Worker):
    queue = QUEUE
    max_attempts = 1
    unique = Unique(period=None)

    def perform(self, job):
        raise RuntimeError("boom")


def count(sql, worker: type[Worker]) -> int:
    return sql("SELECT count(*) AS n FROM flowstone.jobs WHERE worker = %s", [worker.name])[0]["n"]


def test_conflict_returns_the_existing_job(flowstone, sql):
    first = flowstone.insert(Once.new({"a": 1}))
    second = flowstone.insert(Once.new({"a": 1}))
    other = flowstone.insert(Once.new({"a": 2}))
    assert not first.conflict and second.conflict and not other.conflict
    assert second.id == first.id and second.args == {"a": 1} and second.state == "available"
    assert count(sql, Once) == 2


def insert_concurrently(flowstone, url: str, jobs: list) -> list:
    """Insert each job on its own connection, all released at once by a barrier."""
    barrier = threading.Barrier(len(jobs))

    def insert(new):
        with psycopg.connect(url) as conn:
            barrier.wait(timeout=30)
            job = flowstone.insert(new, conn=conn)
            conn.commit()
            return job

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(insert, jobs))


def test_fifty_concurrent_inserters_make_one_row(flowstone, flowstone_url, sql):
    jobs = insert_concurrently(flowstone, flowstone_url, [Once.new({"race": True}) for _ in range(50)])
    assert count(sql, Once) == 1
    assert sum(not job.conflict for job in jobs) == 1
    assert len({job.id for job in jobs}) == 1


def test_period_expiry_frees_the_key(flowstone, sql):
    first = flowstone.insert(Hourly.new({"to": "a"}))
    assert flowstone.insert(Hourly.new({"to": "a"})).conflict
    sql("UPDATE flowstone.jobs SET inserted_at = now() - interval '61 minutes' WHERE id = %s", [first.id])
    second = flowstone.insert(Hourly.new({"to": "a"}))
    assert not second.conflict and second.id != first.id
    assert flowstone.get_job(first.id).unique_key is None
    assert flowstone.insert(Hourly.new({"to": "a"})).id == second.id


def test_within_period_still_conflicts(flowstone, sql):
    first = flowstone.insert(Hourly.new({"to": "a"}))
    sql("UPDATE flowstone.jobs SET inserted_at = now() - interval '59 minutes' WHERE id = %s", [first.id])
    assert flowstone.insert(Hourly.new({"to": "a"})).id == first.id


def test_incomplete_states_free_the_key_on_completion(flowstone, engine):
    first = flowstone.insert(Hourly.new({"to": "a"}))
    engine.round(QUEUE)
    assert flowstone.get_job(first.id).state == "completed"
    second = flowstone.insert(Hourly.new({"to": "a"}))
    assert not second.conflict and second.id != first.id


def test_successful_states_keep_the_key_after_completion(flowstone, engine):
    first = flowstone.insert(Once.new({}))
    engine.round(QUEUE)
    again = flowstone.insert(Once.new({}))
    assert again.conflict and again.id == first.id and again.state == "completed"


def test_discarded_job_frees_the_key(flowstone, engine):
    first = flowstone.insert(Boom.new({}))
    engine.round(QUEUE)
    assert flowstone.get_job(first.id).state == "discarded"
    assert not flowstone.insert(Boom.new({})).conflict


def test_cancelled_job_frees_the_key(flowstone):
    first = flowstone.insert(Once.new({}))
    flowstone.cancel_job(first.id)
    assert not flowstone.insert(Once.new({})).conflict


def test_keys_narrow_the_args(flowstone):
    first = flowstone.insert(Hourly.new({"to": "a", "body": "x"}))
    same = flowstone.insert(Hourly.new({"to": "a", "body": "y"}))
    other = flowstone.insert(Hourly.new({"to": "b", "body": "x"}))
    assert same.conflict and same.id == first.id and same.args == {"to": "a", "body": "x"}
    assert not other.conflict


def test_fields_select_what_is_compared(flowstone):
    by_worker = Unique(period=None, fields=["worker"])
    first = flowstone.insert(Once.new({"a": 1}, unique=by_worker))
    assert flowstone.insert(Once.new({"a": 2}, queue="elsewhere", unique=by_worker)).id == first.id
    by_queue = Unique(period=None, fields=["worker", "queue"])
    a = flowstone.insert(Once.new({}, queue="q1", unique=by_queue))
    b = flowstone.insert(Once.new({}, queue="q2", unique=by_queue))
    assert a.id != b.id


def test_insert_all_honours_uniqueness(flowstone, sql):
    existing = flowstone.insert(Once.new({"n": 0}))
    jobs = flowstone.insert_all(
        [
            Once.new({"n": 1}),
            Once.new({"n": 0}),
            Once.new({"n": 1}),
            Hourly.new({"to": "x"}),
            Once.new({"n": 2}),
        ]
    )
    assert [j.conflict for j in jobs] == [False, True, True, False, False]
    assert jobs[1].id == existing.id and jobs[2].id == jobs[0].id
    assert [j.args for j in jobs] == [{"n": 1}, {"n": 0}, {"n": 1}, {"to": "x"}, {"n": 2}]
    assert count(sql, Once) == 3


def test_insert_all_mixes_plain_and_unique_jobs(flowstone):
    class Plain(Worker):
        queue = QUEUE

        def perform(self, job):
            return None

    jobs = flowstone.insert_all([Plain.new({}), Once.new({}), Plain.new({}), Once.new({}), Plain.new({})])
    assert [j.conflict for j in jobs] == [False, False, False, True, False]
    assert len({j.id for j in jobs}) == 4
    assert [j.worker for j in jobs] == [Plain.name, Once.name, Plain.name, Once.name, Plain.name]


@pytest.mark.parametrize("states", ["nonsense", [], ["available", "bogus"]])
def test_bad_states_are_rejected(states):
    with pytest.raises(ValueError, match="states"):
        Unique(states=states)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"period": 0}, "period"), ({"fields": ["nope"]}, "fields"), ({"keys": "to"}, "keys")],
)
def test_bad_options_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Unique(**kwargs)


def test_states_limit_which_existing_jobs_conflict(flowstone):
    only_scheduled = Unique(period=None, states="scheduled")
    waiting = flowstone.insert(Once.new({"s": 1}, scheduled_in=600, unique=only_scheduled))
    assert flowstone.insert(Once.new({"s": 1}, scheduled_in=600, unique=only_scheduled)).id == waiting.id
    available = flowstone.insert(Once.new({"s": 2}, unique=only_scheduled))
    again = flowstone.insert(Once.new({"s": 2}, unique=only_scheduled))
    assert not again.conflict and again.id != available.id
    assert flowstone.get_job(again.id).unique_key is None and again.unique_key is None
    pair = flowstone.insert_all([Once.new({"s": 3}, unique=only_scheduled)] * 2)
    assert [j.conflict for j in pair] == [False, False] and pair[0].id != pair[1].id


# -- replace (Oban's replace:) ------------------------------------------------------------


class Debounced(Worker):
    queue = QUEUE
    unique = Unique(period=None, keys=["doc"], states="incomplete", replace=("args", "scheduled_at"))

    def perform(self, job):
        return None


def test_replace_debounces_a_waiting_job(flowstone, sql):
    first = flowstone.insert(Debounced.new({"doc": 7, "rev": 1}, scheduled_in=10))
    second = flowstone.insert(Debounced.new({"doc": 7, "rev": 2}, scheduled_in=600))
    assert second.conflict and second.id == first.id
    assert second.args == {"doc": 7, "rev": 2} and second.state == "scheduled"
    assert second.scheduled_at > first.scheduled_at
    assert count(sql, Debounced) == 1
    stored = flowstone.get_job(first.id)
    assert stored.args == {"doc": 7, "rev": 2} and stored.scheduled_at == second.scheduled_at


def test_replace_makes_a_job_due_now_available(flowstone):
    first = flowstone.insert(Debounced.new({"doc": 1, "rev": 1}, scheduled_in=600))
    now = flowstone.insert(Debounced.new({"doc": 1, "rev": 2}))
    assert now.id == first.id and now.state == "available" and now.args["rev"] == 2


def test_replace_sets_only_the_named_fields(flowstone):
    options = Unique(period=None, keys=["doc"], replace=("priority", "tags", "max_attempts", "meta"))
    first = flowstone.insert(Debounced.new({"doc": 2, "rev": 1}, unique=options))
    again = flowstone.insert(
        Debounced.new(
            {"doc": 2, "rev": 2}, unique=options, priority=3, tags=["t"], max_attempts=9, meta={"m": 1}
        )
    )
    assert again.id == first.id and again.args == {"doc": 2, "rev": 1}
    assert (again.priority, again.tags, again.max_attempts, again.meta["m"]) == (3, ["t"], 9, 1)


def test_replace_never_changes_a_started_job(flowstone, engine):
    first = flowstone.insert(Debounced.new({"doc": 3, "rev": 1}))
    [claimed] = engine.claim(QUEUE)
    again = flowstone.insert(Debounced.new({"doc": 3, "rev": 2}, scheduled_in=600))
    assert again.conflict and again.id == first.id == claimed.id
    assert again.state == "executing" and again.args == {"doc": 3, "rev": 1}
    assert flowstone.get_job(first.id).scheduled_at == claimed.scheduled_at


def test_replace_in_insert_all_keeps_the_last(flowstone, sql):
    existing = flowstone.insert(Debounced.new({"doc": 4, "rev": 0}, scheduled_in=5))
    jobs = flowstone.insert_all(
        [
            Debounced.new({"doc": 4, "rev": 1}, scheduled_in=60),
            Debounced.new({"doc": 5, "rev": 1}),
            Debounced.new({"doc": 4, "rev": 2}, scheduled_in=120),
            Debounced.new({"doc": 5, "rev": 2}, scheduled_in=60),
        ]
    )
    assert [j.conflict for j in jobs] == [True, False, True, True]
    assert jobs[0].id == jobs[2].id == existing.id and jobs[3].id == jobs[1].id
    assert flowstone.get_job(existing.id).args == {"doc": 4, "rev": 2}
    latest = flowstone.get_job(jobs[1].id)
    assert latest.args == {"doc": 5, "rev": 2} and latest.state == "scheduled"
    assert count(sql, Debounced) == 2


def test_replace_under_concurrent_inserters_makes_one_job(flowstone, flowstone_url, sql):
    news = [Debounced.new({"doc": 9, "rev": n}, scheduled_in=60) for n in range(20)]
    jobs = insert_concurrently(flowstone, flowstone_url, news)
    assert count(sql, Debounced) == 1
    assert sum(not job.conflict for job in jobs) == 1 and len({job.id for job in jobs}) == 1
    assert flowstone.get_job(jobs[0].id).args["rev"] in range(20)


@pytest.mark.parametrize("replace", [("queue",), "args", ("args", "state")])
def test_bad_replace_fields_are_rejected(replace):
    with pytest.raises(ValueError, match="replace"):
        Unique(replace=replace)
