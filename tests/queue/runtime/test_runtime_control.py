"""Steering running nodes: pause, resume, scale (all nodes or one), reset, and cancel."""

from __future__ import annotations

import anyio
import pytest
import runtime_workers as w
import structlog
from support import MakeFs, rows, wait_for, wait_for_job

from flowstone import FlowStone
from flowstone.insights import Insights, NodeInfo
from flowstone.queue.runtime import Node

pytestmark = pytest.mark.anyio
OTHER = "other"


async def proves_idle(fs: FlowStone, job_id: int) -> None:
    """Run a job on the unpaused queue: by then the paused queue had its chance to claim."""
    probe = await fs.ainsert(w.Echo.new(queue=OTHER))
    await wait_for_job(fs, probe.id, "completed")
    assert (await fs.aget_job(job_id)).state == "available"  # type: ignore[union-attr]


async def test_pause_stops_claiming_and_resume_restarts_it(make_fs: MakeFs) -> None:
    fs = make_fs()
    node = await fs.start({w.QUEUE: 2, OTHER: 1})
    await fs.apause_queue(w.QUEUE)
    await wait_for(lambda: node.producers[w.QUEUE].paused, message="the pause signal")
    job = await fs.ainsert(w.Echo.new())
    await proves_idle(fs, job.id)
    await fs.aresume_queue(w.QUEUE)
    await wait_for_job(fs, job.id, "completed")


async def test_a_pause_that_comes_while_a_cycle_connects_stops_its_claim(make_fs: MakeFs) -> None:
    """The pause signal may land while a cycle awaits its connection (a node's first cycle
    connects): the claim that follows must see it."""
    fs = make_fs()
    await fs.apause_queue(w.QUEUE)
    node = await fs.start({w.QUEUE: 2, OTHER: 1})
    producer = node.producers[w.QUEUE]
    job = await fs.ainsert(w.Echo.new())
    connect, connected = producer._connection, anyio.Event()

    async def paused_meanwhile() -> object:
        producer.pause(True)
        connected.set()
        return await connect()

    producer._connection = paused_meanwhile  # type: ignore[method-assign]
    producer.pause(False)  # a cycle starts, demanding jobs
    with anyio.fail_after(10):
        await connected.wait()
    await proves_idle(fs, job.id)


@pytest.mark.anyio
async def test_the_facade_reads_nodes_as_insights_does_typed(make_fs: MakeFs) -> None:
    fs = make_fs()
    node = await fs.start({w.QUEUE: 2})
    [info] = await fs.anodes()
    assert isinstance(info, NodeInfo) and (info.name, info.alive) == (node.name, True)
    assert info.queues[w.QUEUE]["limit"] == 2
    assert [n.name for n in await Insights(fs).anodes()] == [node.name]
    await wait_for(lambda: node.is_leader, message="the node's election")
    assert [n.leader for n in await fs.anodes()] == [True] and await fs.aleader() == node.name


async def test_scale_changes_how_many_jobs_run_at_once(make_fs: MakeFs) -> None:
    fs = make_fs()
    node = await fs.start({w.QUEUE: 1})
    await fs.ascale_queue(w.QUEUE, 4)
    await wait_for(lambda: node.producers[w.QUEUE].limit == 4, message="the scale signal")
    jobs = await fs.ainsert_all([w.SyncNap.new({"seconds": 0.1}) for _ in range(8)])
    for job in jobs:
        await wait_for_job(fs, job.id, "completed")
    assert w.GAUGE.peak == 4


async def test_a_pause_for_one_node_leaves_the_others_working(make_fs: MakeFs) -> None:
    one, two = make_fs("n1"), make_fs("n2")
    paused = await one.start({w.QUEUE: 2, OTHER: 1})
    await two.start({w.QUEUE: 2})
    await one.apause_queue(w.QUEUE, node="n1")
    await wait_for(lambda: paused.producers[w.QUEUE].paused, message="the pause signal")
    jobs = await one.ainsert_all([w.Nap.new({"seconds": 0.02}) for _ in range(6)])
    for job in jobs:
        await wait_for_job(one, job.id, "completed")
    found = await rows(one, "SELECT DISTINCT attempted_by[1] AS node FROM flowstone.jobs")
    assert found == [{"node": "n2"}]


async def test_a_node_started_after_a_pause_obeys_it(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.apause_queue(w.QUEUE)
    await fs.ascale_queue(OTHER, 3)
    node = await fs.start({w.QUEUE: 2, OTHER: 1})
    assert (node.producers[w.QUEUE].paused, node.producers[OTHER].limit) == (True, 3)
    job = await fs.ainsert(w.Echo.new())
    await proves_idle(fs, job.id)


async def test_a_cluster_wide_resume_overrides_an_earlier_node_pause(make_fs: MakeFs) -> None:
    """As for running nodes, which apply the resume signal whatever they were told before."""
    fs = make_fs()
    await fs.apause_queue(w.QUEUE, node="n1")
    await fs.aresume_queue(w.QUEUE)
    node = await fs.start({w.QUEUE: 2})
    assert not node.producers[w.QUEUE].paused


def running(node: Node) -> int:
    return len(node.producers[w.QUEUE].running)


async def test_cancelling_an_executing_async_job_stops_it(make_fs: MakeFs) -> None:
    fs = make_fs()
    node = await fs.start({w.QUEUE: 1})
    job = await fs.ainsert(w.Hang.new())
    await wait_for_job(fs, job.id, "executing")
    await fs.acancel_job(job.id)
    await wait_for(lambda: w.reports == [f"cancelled {job.id}"], timeout=2, message="the job's cancellation")
    await wait_for(lambda: running(node) == 0, message="the slot to free")
    cancelled = await wait_for_job(fs, job.id, "cancelled")
    assert cancelled.cancelled_at is not None
    after = await fs.ainsert(w.Echo.new())
    await wait_for_job(fs, after.id, "completed")


async def test_cancelling_an_executing_sync_job_records_it_and_holds_the_slot_until_the_thread_ends(
    make_fs: MakeFs,
) -> None:
    """A thread cannot be killed: the job is cancelled at once, its thread finishes on its
    own (its outcome ignored), and its slot stays taken until then: the queue's limit
    counts threads really running."""
    fs = make_fs()
    node = await fs.start({w.QUEUE: 1})
    job = await fs.ainsert(w.SyncHang.new())
    await wait_for_job(fs, job.id, "executing")
    await fs.acancel_job(job.id)
    await wait_for(lambda: running(node) == 0, message="the job to stop waiting")
    assert node.producers[w.QUEUE].busy == 1, "the thread still runs and holds the slot"
    after = await fs.ainsert(w.Echo.new())
    assert (await fs.aget_job(after.id)).state == "available"  # type: ignore[union-attr]
    w.RELEASE.set()
    await wait_for_job(fs, after.id, "completed")
    assert w.reports == [f"thread done {job.id}"]
    final = await fs.aget_job(job.id)
    assert final is not None and (final.state, final.completed_at) == ("cancelled", None)


async def test_a_stored_scale_overrides_a_later_nodes_limit_visibly_until_reset(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.ascale_queue(w.QUEUE, 2)
    with structlog.testing.capture_logs() as logs:
        node = await fs.start({w.QUEUE: 10, OTHER: 1})
    assert node.producers[w.QUEUE].limit == 2
    [said] = [entry for entry in logs if "stored queue setting replaces" in entry["event"]]
    assert said["log_level"] == "warning" and "flowstone queues reset QUEUE" in said["event"]
    assert (said["queue"], said["limit"]) == (w.QUEUE, "2 (configured 10; stored for all nodes)")
    await wait_for(
        lambda: _limits(fs, (2, 10)), message="the heartbeat to publish the limit and the configured one"
    )

    cleared = await fs.areset_queue(w.QUEUE)
    assert [(c.queue, c.node, c.limit, c.paused) for c in cleared] == [(w.QUEUE, "*", 2, None)]
    await wait_for(lambda: node.producers[w.QUEUE].limit == 10, message="the reset signal")
    assert await fs.areset_queue(w.QUEUE) == [], "nothing is stored any more"
    assert (await Insights(fs).aoverview()).controls == []


async def _limits(fs: FlowStone, expected: tuple[int, int]) -> bool:
    """Whether the overview shows the queue's limit and configured limit as `expected`."""
    found = next(q for q in (await Insights(fs).aoverview()).queues if q.queue == w.QUEUE)
    return (found.limit, found.configured_limit) == expected


async def test_resetting_one_node_keeps_what_is_stored_for_all_nodes(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.ascale_queue(w.QUEUE, 3)
    await fs.apause_queue(w.QUEUE, node="n1")
    node = await fs.start({w.QUEUE: 10})
    producer = node.producers[w.QUEUE]
    assert (producer.paused, producer.limit) == (True, 3)
    cleared = await fs.areset_queue(w.QUEUE, node="n1")
    assert [(c.node, c.paused) for c in cleared] == [("n1", True)]
    await wait_for(lambda: not producer.paused and producer.limit == 3, message="n1's own setting cleared")
    assert [(c.node, c.limit) for c in (await Insights(fs).aoverview()).controls] == [("*", 3)]
