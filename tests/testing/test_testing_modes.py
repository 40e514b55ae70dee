"""Testing modes (Oban.Testing's): `inline` runs jobs at insert without a database or a
node; `manual` only inserts them, for the drain helpers; switchable per test."""

from __future__ import annotations

from typing import Any

import pytest

from flowstone import Batch, FlowStone, Job, JobFailedError, Worker, Workflow
from flowstone.testing import adrain_queue, with_testing_mode

QUEUE = "modes"
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"  # inline mode never connects
ran: list[str] = []


class Double(Worker):
    queue = QUEUE
    record_result = True

    def perform(self, job: Job) -> Any:
        ran.append(job.args.get("name", "double"))
        job.progress(1.0, message="done")
        return job.args.get("n", 0) * 2


class Boom(Worker):
    queue = QUEUE
    max_attempts = 1

    async def perform(self, job: Job) -> None:
        ran.append("boom")
        raise RuntimeError("boom")


class Spawn(Worker):
    queue = QUEUE

    def perform(self, job: Job) -> None:
        ran.append("spawn")
        job.fs.insert(Double.new({"name": "spawned"}))


class Tally(Worker):
    queue = QUEUE

    def perform(self, job: Job) -> None:
        ran.append(f"tally {job.meta['batch']['counts']}")


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ran.clear()


def test_inline_runs_each_job_at_insert_without_a_database():
    fs = FlowStone(NOWHERE, testing="inline")
    done, failed, spawner = fs.insert_all([Double.new({"n": 21}), Boom.new(), Spawn.new()])
    assert (done.state, done.result, done.progress_report) == (
        "completed",
        42,
        {"fraction": 1.0, "message": "done"},
    )
    assert failed.state == "discarded" and "RuntimeError: boom" in failed.errors[0]["error"]
    assert spawner.state == "completed"
    assert ran == ["double", "boom", "spawn", "spawned"]
    assert fs.await_job(done.id) == 42
    with pytest.raises(JobFailedError, match="was discarded: RuntimeError: boom"):
        fs.await_job(failed.id)


def test_inline_runs_a_workflow_in_order_and_cancels_after_a_failure():
    fs = FlowStone(NOWHERE, testing="inline")
    wf = Workflow()
    wf.add("a", Double.new({"name": "a"}))
    wf.add("bad", Boom.new())
    wf.add("b", Double.new({"name": "b"}), deps=["a"])
    wf.add("c", Double.new({"name": "c"}), deps=["b", "bad"])
    jobs = fs.insert_workflow(wf)
    assert {name: job.state.value for name, job in jobs.items()} == {
        "a": "completed",
        "bad": "discarded",
        "b": "completed",
        "c": "cancelled",
    }
    assert ran == ["a", "boom", "b"]
    appended = fs.insert_workflow(Workflow(wf.id).add("d", Double.new({"name": "d"}), deps=["a"]))
    assert appended["d"].state == "completed"


def test_inline_runs_a_batch_callback_last_with_the_counts():
    fs = FlowStone(NOWHERE, testing="inline")
    batch = Batch(callback=Tally.new())
    batch.add(Double.new()).add(Boom.new())
    fs.insert_batch(batch)
    assert ran == ["double", "boom", "tally {'completed': 1, 'discarded': 1}"]


@pytest.mark.anyio
async def test_inline_has_async_twins():
    fs = FlowStone(NOWHERE, testing="inline")
    job = await fs.ainsert(Double.new({"n": 2}))
    assert await fs.aawait_job(job.id) == 4
    jobs = await fs.ainsert_workflow(Workflow().add("x", Double.new()))
    assert jobs["x"].state == "completed"


def test_the_mode_switches_per_test(flowstone):
    with with_testing_mode("inline") as fs:
        assert fs is flowstone
        assert fs.insert(Double.new({"n": 1})).state == "completed"
    assert flowstone.list_jobs() == [], "inline jobs never reach the database"
    assert flowstone.insert(Double.new()).state == "available"
    with pytest.raises(ValueError, match="testing mode must be"), with_testing_mode("eager"):  # type: ignore[arg-type]
        pass


@pytest.mark.anyio
async def test_manual_mode_nodes_run_nothing_until_drained(flowstone):
    with with_testing_mode("manual"):
        node = await flowstone.start({QUEUE: 5})
        assert node.producers == {} and node.plugins == []
        await flowstone.stop()
    wf = (
        Workflow()
        .add("first", Double.new({"name": "first"}))
        .add("then", Double.new({"name": "then"}), deps=["first"])
    )
    jobs = await flowstone.ainsert_workflow(wf)
    assert ran == []
    assert (await adrain_queue(QUEUE, with_scheduled=True, with_recursion=True)).completed == 2
    assert ran == ["first", "then"], "the held job waits for its dependency, then runs"
    assert (await flowstone.aget_job(jobs["then"].id)).state == "completed"
