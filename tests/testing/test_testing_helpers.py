"""flowstone.testing: perform_job, enqueued assertions, drain_queue and chaos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flowstone import Cancel, Discard, Snooze, Worker
from flowstone.queue.executor import ChaosError
from flowstone.testing import (
    all_enqueued,
    aperform_job,
    assert_enqueued,
    drain_queue,
    perform_job,
    refute_enqueued,
    with_chaos,
)

QUEUE = "helpers"


class Steer(Worker):
    queue = QUEUE

    def perform(self, job):
        return {"snooze": Snooze(5), "discard": Discard("x"), "cancel": Cancel("y")}.get(job.args.get("do"))


class Raises(Worker):
    queue = QUEUE
    max_attempts = 2

    def perform(self, job):
        raise KeyError(job.args["key"])


class Inspect(Worker):
    queue = QUEUE

    async def perform(self, job):
        return (job.args, job.attempt, job.queue, job.state)


class Parent(Worker):
    queue = QUEUE

    def perform(self, job):
        if job.args["depth"] > 0:
            Parent.enqueue({"depth": job.args["depth"] - 1})


class Chaotic(Worker):
    queue = "chaos"
    max_attempts = 3

    def perform(self, job):
        return None


def test_perform_job_returns_what_perform_returns():
    assert perform_job(Steer, {}) is None
    assert perform_job(Steer, {"do": "snooze"}) == Snooze(5)
    assert perform_job(Steer, {"do": "discard"}) == Discard("x")
    assert perform_job(Steer, {"do": "cancel"}) == Cancel("y")


def test_perform_job_raises_what_perform_raises():
    with pytest.raises(KeyError, match="k1"):
        perform_job(Raises, {"key": "k1"})


def test_perform_job_round_trips_args_and_runs_async_perform():
    args, attempt, queue, state = perform_job(Inspect, {"t": (1, 2)}, attempt=3, queue="q")
    assert args == {"t": [1, 2]} and attempt == 3 and queue == "q" and state == "executing"


def test_perform_job_rejects_what_insert_would():
    with pytest.raises(TypeError, match=r"args\.when"):
        perform_job(Steer, {"when": datetime.now()})


@pytest.mark.anyio
async def test_aperform_job():
    args, *_ = await aperform_job(Inspect, {"a": 1})
    assert args == {"a": 1}


def test_assert_refute_and_all_enqueued(flowstone):
    a = Steer.enqueue({"to": "a", "body": {"lang": "en", "text": "hi"}}, tags=["t1", "t2"])
    b = Steer.enqueue({"to": "b"}, scheduled_in=60, priority=4, meta={"m": 1})
    assert assert_enqueued(worker=Steer, args={"to": "a"}).id == a.id
    assert assert_enqueued(args={"body": {"lang": "en"}}).id == a.id
    assert assert_enqueued(worker=Steer.name, queue=QUEUE, tags=["t2"]).id == a.id
    assert assert_enqueued(priority=4, meta={"m": 1}).id == b.id
    assert [j.id for j in all_enqueued(worker=Steer)] == [a.id, b.id]
    assert all_enqueued(queue="nope") == []
    refute_enqueued(args={"to": "c"})
    refute_enqueued(worker=Raises)
    with pytest.raises(AssertionError, match="'to': 'c'"):
        assert_enqueued(args={"to": "c"})
    with pytest.raises(AssertionError, match=str(a.id)):
        refute_enqueued(args={"to": "a"})


def test_finished_jobs_are_not_enqueued(flowstone):
    Steer.enqueue({"to": "a"})
    drain_queue(QUEUE)
    refute_enqueued(worker=Steer)


def test_drain_counts_outcomes(flowstone):
    flowstone.insert_all(
        [
            Steer.new({}),
            Steer.new({"do": "snooze"}),
            Steer.new({"do": "discard"}),
            Steer.new({"do": "cancel"}),
            Raises.new({"key": "k"}),
        ]
    )
    result = drain_queue(QUEUE)
    assert result.as_dict() == {
        "completed": 1,
        "retryable": 1,
        "discarded": 1,
        "cancelled": 1,
        "snoozed": 1,
    }
    assert result["completed"] == 1


def test_drain_with_scheduled(flowstone):
    soon = Steer.enqueue({}, scheduled_in=60)
    later = Steer.enqueue({}, scheduled_in=3600)
    assert drain_queue(QUEUE).completed == 0
    cutoff = datetime.now(UTC) + timedelta(minutes=5)
    assert drain_queue(QUEUE, with_scheduled=cutoff).completed == 1
    assert flowstone.get_job(soon.id).state == "completed"
    assert flowstone.get_job(later.id).state == "scheduled"
    assert drain_queue(QUEUE, with_scheduled=True).completed == 1


def test_drain_with_scheduled_runs_retries_to_the_end(flowstone):
    job = Raises.enqueue({"key": "k"})
    result = drain_queue(QUEUE, with_scheduled=True)
    assert (result.retryable, result.discarded) == (1, 1)
    assert flowstone.get_job(job.id).state == "discarded"


def test_drain_with_recursion(flowstone):
    Parent.enqueue({"depth": 2})
    assert drain_queue(QUEUE).completed == 1
    assert_enqueued(worker=Parent, args={"depth": 1})
    assert drain_queue(QUEUE, with_recursion=True).completed == 2
    refute_enqueued(worker=Parent)


def test_drain_with_safety(flowstone):
    Raises.enqueue({"key": "k"})
    assert drain_queue(QUEUE).retryable == 1
    flowstone.retry_job(flowstone.list_jobs(worker=Raises.name)[0].id)
    with pytest.raises(KeyError, match="k"):
        drain_queue(QUEUE, with_safety=False)
    assert flowstone.list_jobs(worker=Raises.name)[0].state == "discarded"


def test_with_chaos_injects_failures_reproducibly(flowstone):
    with with_chaos(failure_rate=1.0), pytest.raises(ChaosError):
        Chaotic.enqueue({})
        drain_queue("chaos", with_safety=False)
    with with_chaos(failure_rate=0.0):
        assert drain_queue("chaos", with_scheduled=True).completed == 1
    with pytest.raises(ValueError, match="failure_rate"), with_chaos(failure_rate=1.5):
        pass


def chaos_run(flowstone, seed: int) -> tuple[dict[str, int], dict[str, int]]:
    flowstone.insert_all([Chaotic.new({"n": n}) for n in range(100)])
    with with_chaos(failure_rate=0.3, seed=seed):
        result = drain_queue("chaos", with_scheduled=True)
    rows = flowstone.list_jobs(queue="chaos", limit=1000)
    states = {s: sum(1 for r in rows if r.state == s) for s in {r.state.value for r in rows}}
    return result.as_dict(), states


def test_chaos_drain_loses_no_job(flowstone, sql):
    counts, states = chaos_run(flowstone, seed=7)
    assert sum(states.values()) == 100
    assert set(states) <= {"completed", "discarded"}
    assert states.get("completed", 0) >= 90
    assert counts["completed"] == states["completed"]
    assert counts["discarded"] == states.get("discarded", 0)
    attempts = sql("SELECT sum(attempt) AS n FROM flowstone.jobs")[0]["n"]
    assert attempts == counts["completed"] + counts["retryable"] + counts["discarded"]
    sql("DELETE FROM flowstone.jobs")
    assert chaos_run(flowstone, seed=7)[0] == counts
