"""Bulk operations by filter: cancel, retry and delete in bounded batches, with a dry run."""

from __future__ import annotations

import re

import pytest
from test_manage import QUEUE, Fail, Ok

from flowstone import FlowStone, Workflow


def states(fs: FlowStone) -> dict[int, str]:
    return {job.id: job.state.value for job in fs.list_jobs(limit=1000)}


def test_cancel_by_filter_counts_first_on_a_dry_run(flowstone, engine):
    tenant_a = flowstone.insert_all([Ok.new({"tenant": "a", "n": n}, tags=["t"]) for n in range(5)])
    tenant_b = flowstone.insert_all([Ok.new({"tenant": "b"}, tags=["t"]) for _ in range(2)])
    other = flowstone.insert(Ok.new({"tenant": "a"}, queue="elsewhere"))
    before = states(flowstone)
    assert flowstone.cancel_all_jobs(queue=QUEUE, args={"tenant": "a"}, dry_run=True) == 5
    assert states(flowstone) == before, "a dry run changes nothing"
    assert (
        flowstone.cancel_all_jobs(queue=QUEUE, args={"tenant": "a"}, batch_size=2, reason="tenant left") == 5
    )
    after = states(flowstone)
    assert {after[job.id] for job in tenant_a} == {"cancelled"}
    assert {after[job.id] for job in [*tenant_b, other]} == {"available"}
    assert "cancelled: tenant left" in flowstone.get_job(tenant_a[0].id).errors[-1]["error"]
    assert flowstone.cancel_all_jobs(tag="t", worker=Ok.name) == 2


def test_retry_by_state_and_delete_leave_other_states_alone(flowstone, engine):
    failed = flowstone.insert_all([Fail.new({"n": n}) for n in range(3)])
    done = flowstone.insert(Ok.new())
    engine.round(QUEUE)
    assert flowstone.retry_all_jobs(state="discarded", dry_run=True) == 3
    assert flowstone.retry_all_jobs(state="discarded", batch_size=1) == 3
    assert {flowstone.get_job(job.id).state for job in failed} == {"available"}
    assert flowstone.get_job(done.id).state == "completed"
    assert flowstone.delete_all_jobs(state="completed") == 1
    assert flowstone.get_job(done.id) is None


def test_bulk_operations_never_touch_executing_jobs(flowstone, engine):
    flowstone.insert(Ok.new())
    running = engine.claim(QUEUE)
    waiting = flowstone.insert(Ok.new())
    assert flowstone.delete_all_jobs(queue=QUEUE) == 1
    assert flowstone.retry_all_jobs(queue=QUEUE) == 0
    assert flowstone.get_job(running[0].id).state == "executing"
    assert flowstone.get_job(waiting.id) is None


def test_bulk_cancel_cancels_the_jobs_waiting_on_them(flowstone):
    jobs = flowstone.insert_workflow(Workflow().add("a", Ok.new()).add("b", Ok.new(), deps=["a"]))
    assert flowstone.cancel_all_jobs(queue=QUEUE, state="available") == 1
    assert flowstone.get_job(jobs["b"].id).state == "cancelled"
    assert f"(job {jobs['a'].id}) was cancelled" in flowstone.get_job(jobs["b"].id).errors[-1]["error"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda fs: fs.cancel_all_jobs(queues="x"), "unknown filter(s) queues"),
        (lambda fs: fs.retry_all_jobs(state="nope"), "unknown job state 'nope'"),
        (
            lambda fs: fs.delete_all_jobs(batch_size=0, all=True),
            "batch_size must be an integer from 1 to 10000",
        ),
    ],
)
def test_bulk_operations_name_bad_input(flowstone, call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(flowstone)


@pytest.mark.anyio
async def test_bulk_operations_have_async_twins(flowstone):
    await flowstone.ainsert_all([Ok.new() for _ in range(3)])
    assert await flowstone.acancel_all_jobs(queue=QUEUE, dry_run=True) == 3
    assert await flowstone.acancel_all_jobs(queue=QUEUE) == 3
    assert await flowstone.aretry_all_jobs(queue=QUEUE) == 3
    assert await flowstone.adelete_all_jobs(queue=QUEUE) == 3


EMPTY_FILTERS = [
    ({"queue": ""}, "queue must not be empty"),
    ({"queue": "  "}, "queue must not be empty"),
    ({"worker": ""}, "worker filter must not be empty"),
    ({"tag": " "}, "tag filter must not be empty"),
    ({"args": {}}, "args filter must name at least one key"),
    ({"state": ""}, "unknown job state ''"),
    ({}, "with no filter would act on every job: give a filter, or all=True"),
    ({"queue": QUEUE, "all": True}, "give filters or all=True, not both"),
]


@pytest.mark.parametrize(("where", "message"), EMPTY_FILTERS)
@pytest.mark.parametrize("operation", ["cancel_all_jobs", "retry_all_jobs", "delete_all_jobs"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_an_empty_filter_never_widens_to_every_job(flowstone, operation, where, message, dry_run):
    jobs = flowstone.insert_all([Ok.new({"n": n}) for n in range(3)])
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(flowstone, operation)(dry_run=dry_run, **where)
    assert [flowstone.get_job(job.id).state for job in jobs] == ["available"] * 3


def test_all_true_acts_on_every_job(flowstone):
    flowstone.insert_all([Ok.new({"n": n}, queue=queue) for n, queue in enumerate(("a", "b", "c"))])
    assert flowstone.cancel_all_jobs(all=True, dry_run=True) == 3
    assert flowstone.delete_all_jobs(all=True) == 3
    assert flowstone.list_jobs() == []


@pytest.mark.anyio
async def test_the_async_twins_refuse_empty_filters_too(flowstone):
    job = await flowstone.ainsert(Ok.new())
    for operation in (flowstone.acancel_all_jobs, flowstone.aretry_all_jobs, flowstone.adelete_all_jobs):
        with pytest.raises(ValueError, match="with no filter"):
            await operation()
        with pytest.raises(ValueError, match="args filter must name at least one key"):
            await operation(args={})
    assert (await flowstone.aget_job(job.id)).state == "available"
