"""Retrying a workflow: a failed job's retry re-arms the dependents its failure cancelled;
`retry_workflow` retries every failed and cancelled job in dependency order."""

from __future__ import annotations

import anyio
from psycopg import sql
from test_manage import QUEUE, Ok

from flowstone import FlowStone, Worker, Workflow

DONE = "completed"


class FirstTryFails(Worker):
    queue = QUEUE
    max_attempts = 1

    def perform(self, job):
        if job.attempt == 1:
            raise RuntimeError("first try")


def states(fs: FlowStone, jobs: dict) -> dict[str, str]:
    return {name: fs.get_job(job.id).state.value for name, job in jobs.items()}


def run_until_idle(engine) -> None:
    while engine.round(QUEUE):
        pass


def failed_chain(flowstone, engine) -> dict:
    wf = Workflow().add("a", FirstTryFails.new()).add("b", Ok.new(), deps=["a"])
    wf.add("c", Ok.new(), deps=["b"]).add("side", Ok.new())
    jobs = flowstone.insert_workflow(wf)
    run_until_idle(engine)
    assert states(flowstone, jobs) == {
        "a": "discarded",
        "b": "cancelled",
        "c": "cancelled",
        "side": "completed",
    }
    return jobs


def test_retrying_a_failed_job_completes_its_cancelled_dependents(flowstone, engine):
    jobs = failed_chain(flowstone, engine)
    retried = flowstone.retry_job(jobs["a"].id)
    assert retried is not None and retried.state == "available"
    assert states(flowstone, jobs) == {
        "a": "available",
        "b": "scheduled",
        "c": "scheduled",
        "side": "completed",
    }
    assert engine.stage(until="9000-01-01") == {}, "re-armed dependents are held, not staged"
    run_until_idle(engine)
    assert set(states(flowstone, jobs).values()) == {"completed"}


def test_retry_workflow_retries_in_dependency_order(flowstone, engine):
    jobs = failed_chain(flowstone, engine)
    wf_id = jobs["a"].meta["workflow"]["id"]
    changed = flowstone.retry_workflow(wf_id)
    assert [job.id for job in changed] == [jobs[name].id for name in ("a", "b", "c")]
    assert [job.state.value for job in changed] == ["available", "scheduled", "scheduled"]
    run_until_idle(engine)
    assert set(states(flowstone, jobs).values()) == {"completed"}
    assert flowstone.retry_workflow(wf_id) == [], "nothing failed: nothing to retry"
    assert flowstone.retry_workflow("no-such-workflow") == []


def test_a_dependent_cancelled_by_hand_is_not_re_armed_by_retry_job(flowstone, engine):
    wf = Workflow().add("a", FirstTryFails.new()).add("b", Ok.new(), deps=["a"]).add("own", Ok.new())
    jobs = flowstone.insert_workflow(wf)
    flowstone.cancel_job(jobs["own"].id)
    run_until_idle(engine)
    flowstone.retry_job(jobs["a"].id)
    run_until_idle(engine)
    assert states(flowstone, jobs) == {"a": "completed", "b": "completed", "own": "cancelled"}


def test_a_dependent_of_a_still_failed_job_stays_cancelled(flowstone, engine):
    wf = Workflow().add("a", FirstTryFails.new()).add("x", FirstTryFails.new())
    wf.add("both", Ok.new(), deps=["a", "x"])
    jobs = flowstone.insert_workflow(wf)
    run_until_idle(engine)
    flowstone.retry_job(jobs["a"].id)
    assert states(flowstone, jobs)["both"] == "cancelled", "x still failed: both would be cancelled again"
    flowstone.retry_job(jobs["x"].id)
    assert states(flowstone, jobs)["both"] == "scheduled"
    run_until_idle(engine)
    assert set(states(flowstone, jobs).values()) == {"completed"}


def test_async_retry_workflow(flowstone, engine):
    jobs = failed_chain(flowstone, engine)
    wf_id = jobs["a"].meta["workflow"]["id"]
    changed = anyio.run(flowstone.aretry_workflow, wf_id)
    assert len(changed) == 3
    run_until_idle(engine)
    assert set(states(flowstone, jobs).values()) == {"completed"}


def test_a_dependency_cancel_is_known_by_its_kind_not_its_wording(flowstone, engine):
    """Dependents cancelled by a failure (at its end, or at insert after it) are re-armed
    whatever their messages say; a job cancelled by hand in the same words is not."""
    jobs = failed_chain(flowstone, engine)
    wf_id = jobs["a"].meta["workflow"]["id"]
    late = flowstone.insert_workflow(Workflow(wf_id).add("late", Ok.new(), deps=["a"]))["late"]
    mimic = flowstone.insert_workflow(Workflow(wf_id).add("mimic", Ok.new(), deps=["side"]))["mimic"]
    flowstone.cancel_job(mimic.id, reason=f"its dependency (job {jobs['a'].id}) was discarded")
    with flowstone.connect() as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {}.jobs SET errors = jsonb_set(errors, '{{-1,error}}', '\"reworded\"')"
                " WHERE id = ANY(%s)"
            ).format(sql.Identifier(flowstone.schema)),
            [[jobs["b"].id, jobs["c"].id, late.id]],
        )
    for job in (jobs["b"], jobs["c"], late):
        assert flowstone.get_job(job.id).errors[-1]["error"] == "reworded"
    flowstone.retry_job(jobs["a"].id)
    run_until_idle(engine)
    everything = {**jobs, "late": late, "mimic": mimic}
    assert states(flowstone, everything) == {**dict.fromkeys(jobs, DONE), "late": DONE, "mimic": "cancelled"}
