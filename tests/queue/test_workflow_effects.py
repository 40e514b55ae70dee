"""Workflows without a node: what inserting one checks, and the effects every way of
ending a job has on the jobs waiting on it (ack, cancel, delete, the lifeline)."""

from __future__ import annotations

import pytest
from test_manage import QUEUE, Fail, Ok

from flowstone import Batch, FlowStone, Unique, Workflow
from flowstone.queue.engine import rescue_plan


def states(fs: FlowStone, jobs: dict) -> dict[str, str]:
    return {name: fs.get_job(job.id).state.value for name, job in jobs.items()}


def test_a_job_waits_until_its_last_dependency_completes(flowstone, engine):
    jobs = flowstone.insert_workflow(
        Workflow().add("a", Ok.new()).add("b", Ok.new(), deps=["a"]).add("c", Ok.new(), deps=["a", "b"])
    )
    assert states(flowstone, jobs) == {"a": "available", "b": "scheduled", "c": "scheduled"}
    engine.round(QUEUE)
    assert states(flowstone, jobs) == {"a": "completed", "b": "available", "c": "scheduled"}
    engine.round(QUEUE)
    assert states(flowstone, jobs)["c"] == "available"
    assert engine.stage(until="9000-01-01") == {}, "a held job is never staged"


def test_the_lifeline_discarding_a_dependency_cancels_its_dependents(flowstone, engine):
    jobs = flowstone.insert_workflow(
        Workflow().add("a", Ok.new(max_attempts=1)).add("b", Ok.new(), deps=["a"])
    )
    engine.claim(QUEUE, node="ghost")
    rescued = flowstone.database.execute(
        rescue_plan(flowstone.database.statements.jobs, alive=[], grace=0, limit=10)
    )
    assert [row["state"] for row in rescued] == ["discarded"]
    assert states(flowstone, jobs) == {"a": "discarded", "b": "cancelled"}


def test_deleting_a_dependency_cancels_its_dependents_unless_they_ignore_it(flowstone):
    wf = Workflow().add("a", Ok.new()).add("strict", Ok.new(), deps=["a"])
    wf.add("lenient", Ok.new(), deps=["a"], ignore_cancelled=True)
    jobs = flowstone.insert_workflow(wf)
    assert flowstone.delete_job(jobs["a"].id)
    del jobs["a"]
    assert states(flowstone, jobs) == {"strict": "cancelled", "lenient": "available"}


def test_a_job_waiting_on_dependencies_is_not_retried(flowstone):
    jobs = flowstone.insert_workflow(Workflow().add("a", Ok.new()).add("b", Ok.new(), deps=["a"]))
    assert flowstone.retry_job(jobs["b"].id) is None
    assert flowstone.get_job(jobs["b"].id).state == "scheduled"


def test_appending_after_a_dependency_failed_cancels_at_once(flowstone, engine):
    jobs = flowstone.insert_workflow(Workflow().add("bad", Fail.new()))
    engine.round(QUEUE)
    wf_id = jobs["bad"].meta["workflow"]["id"]
    appended = flowstone.insert_workflow(
        Workflow(wf_id)
        .add("after", Ok.new(), deps=["bad"])
        .add("tolerant", Ok.new(), deps=["bad"], ignore_discarded=True)
    )
    assert appended["after"].state == "cancelled"
    assert "already been discarded or cancelled" in appended["after"].errors[-1]["error"]
    assert appended["tolerant"].state == "available"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Workflow().add("a", Ok.new(), deps=["b"]), "depends on 'b', not added yet"),
        (lambda: Workflow().add("a", Ok.new()).add("a", Ok.new()), "name 'a' is used twice"),
        (lambda: Workflow().add("a", Ok.new(unique=Unique(period=60))), "cannot be unique jobs"),
        (lambda: Workflow().add("a", Ok.new()).add("b", Ok.new(scheduled_in=5), deps=["a"]), "a schedule"),
        (lambda: Workflow().add("a", Ok.new(), deps="b"), "deps must be a list of job names"),
        (lambda: Workflow().add("a", {"not": "a job"}), "expected a job built with Worker.new"),
        (lambda: Batch(on="sometimes"), "on must be 'finished' or 'completed'"),
    ],
)
def test_bad_workflows_are_refused_by_name(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build()


def test_an_append_names_unknown_dependencies(flowstone):
    jobs = flowstone.insert_workflow(Workflow().add("a", Ok.new()))
    with pytest.raises(ValueError, match="depends on unknown job\\(s\\) 'nope'"):
        flowstone.insert_workflow(
            Workflow(jobs["a"].meta["workflow"]["id"]).add("b", Ok.new(), deps=["nope"])
        )
