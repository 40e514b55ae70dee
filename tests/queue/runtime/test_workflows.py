"""Workflows and batches on running nodes: dependents start when their last dependency
completes (woken, not polled), failures cancel down the graph, appends, batch callbacks."""

from __future__ import annotations

import feature_workers as fw
import pytest
from psycopg.types.json import Jsonb
from support import MakeFs, rows, wait_for, wait_for_job

from flowstone import Batch, FlowStone, Workflow
from flowstone.insights import Insights

pytestmark = pytest.mark.anyio


async def finished(fs: FlowStone, workflow: str) -> bool:
    state = await fs.aworkflow(workflow)
    return state is not None and state.done


async def test_a_dependent_starts_after_its_dependencies_and_at_once(make_fs: MakeFs) -> None:
    fs = make_fs(poll_interval=60)  # wake-ups only: no poll would rescue a missed one
    await fs.start({fw.QUEUE: 5})
    wf = Workflow()
    wf.add("a", fw.Timed.new({"seconds": 0.05}))
    wf.add("b", fw.Timed.new({"seconds": 0.1}))
    wf.add("c", fw.Timed.new(), deps=["a", "b"])
    jobs = await fs.ainsert_workflow(wf)
    assert jobs["c"].state == "scheduled"
    await wait_for(lambda: finished(fs, wf.id), 10, "the workflow to finish")
    a, b, c = (fw.LOG.of(jobs[name].id) for name in "abc")
    assert c["started"] >= max(a["ended"], b["ended"])
    assert c["started"] - max(a["ended"], b["ended"]) < 2, "woken by the dependency's end"
    state = await fs.aworkflow(wf.id)
    assert state is not None and state.counts == {"completed": 3}
    assert [(m.name, m.deps, m.waiting_on) for m in state.jobs] == [
        ("a", [], 0),
        ("b", [], 0),
        ("c", ["a", "b"], 0),
    ]


async def test_a_discarded_dependency_cancels_its_descendants_only(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 5})
    wf = Workflow()
    wf.add("bad", fw.Timed.new({"fail": True}))
    wf.add("good", fw.Timed.new())
    wf.add("child", fw.Timed.new(), deps=["bad", "good"])
    wf.add("grandchild", fw.Timed.new(), deps=["child"])
    wf.add("tolerant", fw.Timed.new(), deps=["child"], ignore_cancelled=True)
    wf.add("sibling", fw.Timed.new(), deps=["good"])
    jobs = await fs.ainsert_workflow(wf)
    await wait_for(lambda: finished(fs, wf.id), 10, "the workflow to finish")
    state = await fs.aworkflow(wf.id)
    assert state is not None
    got = {member.name: member.job.state for member in state.jobs}
    assert got == {
        "bad": "discarded",
        "good": "completed",
        "child": "cancelled",
        "grandchild": "cancelled",
        "tolerant": "completed",
        "sibling": "completed",
    }
    assert f"(job {jobs['bad'].id}) was discarded" in state["child"].errors[-1]["error"]
    assert await rows(fs, "SELECT * FROM flowstone.job_deps") == [], "no pending dependency is left behind"


async def test_cancelling_a_running_dependency_cancels_its_dependents(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 5})
    wf = Workflow().add("slow", fw.Held.new()).add("after", fw.Timed.new(), deps=["slow"])
    jobs = await fs.ainsert_workflow(wf)
    await wait_for(lambda: len(fw.LOG.runs) == 1, 10, "the dependency to run")
    await fs.acancel_job(jobs["slow"].id)
    after = await fs.aget_job(jobs["after"].id)
    assert after is not None and after.state == "cancelled"
    fw.GATE.set()


async def test_a_running_workflow_is_appended_to(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 5})
    first = await fs.ainsert_workflow(Workflow().add("gate", fw.Held.new()).add("done", fw.Timed.new()))
    wf_id = first["gate"].meta["workflow"]["id"]
    await wait_for_job(fs, first["done"].id, "completed")
    more = Workflow(wf_id)
    more.add("after_gate", fw.Timed.new(), deps=["gate"])
    more.add("after_done", fw.Timed.new(), deps=["done"])
    appended = await fs.ainsert_workflow(more)
    assert appended["after_gate"].state == "scheduled", "its dependency is still running"
    await wait_for_job(fs, appended["after_done"].id, "completed")
    fw.GATE.set()
    await wait_for_job(fs, appended["after_gate"].id, "completed")
    with pytest.raises(ValueError, match="already has jobs named 'gate'"):
        await fs.ainsert_workflow(Workflow(wf_id).add("gate", fw.Timed.new()))


async def test_a_batch_callback_runs_once_with_the_counts(make_fs: MakeFs) -> None:
    nodes = [make_fs(f"n{i}") for i in range(2)]
    for fs in nodes:
        await fs.start({fw.QUEUE: 10})
    batch = Batch(callback=fw.Report.new({"for": "batch"}))
    for n in range(40):
        batch.add(fw.Timed.new({"fail": n % 10 == 0, "seconds": 0}))
    jobs = await nodes[0].ainsert_batch(batch)
    await wait_for_job(nodes[0], jobs["callback"].id, "completed", timeout=20)
    callbacks = [run for run in fw.LOG.runs if "counts" in run]
    assert len(callbacks) == 1
    assert callbacks[0]["counts"] == {"completed": 36, "discarded": 4}
    state = await nodes[1].aworkflow(batch.id)
    assert state is not None and state.batch is not None
    assert await Insights(nodes[1]).abatch(batch.id) == state.batch
    assert (state.batch.total, state.batch.counts, state.batch.finished) == (
        40,
        {"completed": 36, "discarded": 4},
        True,
    )


async def test_a_batch_on_completed_cancels_its_callback_when_one_fails(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 5})
    batch = Batch(callback=fw.Report.new(), on="completed")
    batch.add(fw.Timed.new()).add(fw.Timed.new({"fail": True}))
    jobs = await fs.ainsert_batch(batch)
    callback = await wait_for_job(fs, jobs["callback"].id, "cancelled")
    assert "was discarded" in callback.errors[-1]["error"]


@pytest.mark.parametrize("flow", [{"deps": 3}, "not an object", {"id": 7, "name": ["x"]}])
async def test_a_hand_written_workflow_meta_does_not_wedge_its_job(make_fs: MakeFs, flow: object) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: 2})
    found = await rows(
        fs,
        "INSERT INTO flowstone.jobs (queue, worker, meta) VALUES (%s, %s, %s) RETURNING id",
        (fw.QUEUE, fw.Timed.name, Jsonb({"workflow": flow})),
    )
    await wait_for_job(fs, found[0]["id"], "completed")
