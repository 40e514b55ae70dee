"""FlowStone behind a real PgBouncer in transaction pooling mode (`pooler="transaction"`):
no prepared statement or session option reaches the pooler, nodes hear of new jobs
through `direct_url` or poll without it, and the leader's plugins run through it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import runtime_workers as w
from psycopg.conninfo import conninfo_to_dict
from support import MakeFs, rows, wait_for, wait_for_job
from test_runtime_plugins import CRON_REGISTRY, PARKED, Tick, orphan

from flowstone import FlowStone, Unique
from flowstone.queue.runtime import Node
from flowstone.testing.pgbouncer import PgBouncer

MORE_THAN_PREPARED = 8  # psycopg prepares a statement once it ran 5 times


@pytest.fixture
def behind(make_fs: MakeFs, bouncer: PgBouncer, flowstone_url: str) -> MakeFs:
    """Build FlowStone instances (`make_fs`) on this test's database through the PgBouncer
    (`direct`: with `direct_url` set to the server itself)."""
    through = bouncer.url_for(str(conninfo_to_dict(flowstone_url)["dbname"]))

    def make(*, direct: bool, **settings: Any) -> FlowStone:
        given = {"direct_url": flowstone_url} if direct else {}
        return make_fs(url=through, pooler="transaction", **given, **settings)

    return make


async def started(fs: FlowStone, limit: int) -> Node:
    """A node running the test queue, or a failure after 10 s (not a hang: a node whose
    connections the pooler refuses would retry forever)."""
    with anyio.fail_after(10):
        return await fs.start({w.QUEUE: limit})


async def inserted_one_by_one(fs: FlowStone, count: int) -> list[int]:
    """Insert `count` jobs singly (each statement more often than psycopg would prepare it)."""
    return [(await fs.ainsert(w.Echo.new({"n": n}))).id for n in range(count)]


@pytest.mark.anyio
async def test_jobs_flow_through_pgbouncer_and_a_direct_listener_wakes_the_node(
    behind: MakeFs, bouncer: PgBouncer, flowstone_url: str
) -> None:
    """The poll interval is a minute: jobs inserted into the idle node start only because
    the LISTEN on `direct_url` wakes it."""
    fs = behind(direct=True, poll_interval=60)
    dbname = str(conninfo_to_dict(flowstone_url)["dbname"])
    before = bouncer.transactions(dbname)
    node = await started(fs, 5)
    await wait_for(lambda: node.is_leader, message="leadership through the pooler")
    ids = await inserted_one_by_one(fs, MORE_THAN_PREPARED)
    ids += [job.id for job in await fs.ainsert_all([w.Echo.new({"batch": n}) for n in range(20)])]
    for job_id in ids:
        await wait_for_job(fs, job_id, "completed")
    assert await fs.aawait_job(ids[-1], timeout=5) is None
    assert bouncer.transactions(dbname) - before > len(ids), "the jobs went through the pooler"


@pytest.mark.anyio
async def test_without_a_direct_url_the_node_polls_and_still_obeys_controls_and_cancels(
    behind: MakeFs, bouncer: PgBouncer
) -> None:
    fs = behind(direct=False, poll_interval=0.2)
    assert not fs.sessions
    node = await started(fs, 2)
    ids = await inserted_one_by_one(fs, MORE_THAN_PREPARED)
    for job_id in ids:
        await wait_for_job(fs, job_id, "completed")
    assert await fs.aawait_job(ids[0], timeout=5) is None
    hang = await fs.ainsert(w.Hang.new())
    await wait_for_job(fs, hang.id, "executing")
    await fs.acancel_job(hang.id)
    await wait_for(lambda: w.reports == [f"cancelled {hang.id}"], message="the poller to interrupt the job")
    await fs.apause_queue(w.QUEUE)
    await wait_for(lambda: node.producers[w.QUEUE].paused, message="the poller to read the pause")
    held = await fs.ainsert(w.Echo.new())
    await fs.aresume_queue(w.QUEUE)
    await wait_for_job(fs, held.id, "completed")


@pytest.mark.anyio
async def test_unique_inserts_conflict_through_pgbouncer(behind: MakeFs) -> None:
    """Two instances of one connection each take turns: their statements share the
    pooler's server connections, where a statement one of them had prepared would
    collide with the other's."""
    one, two = behind(direct=False, pool_size=1), behind(direct=False, pool_size=1)
    unique = Unique(period=60, keys=["to"])
    first = await one.ainsert(w.Echo.new({"to": "a"}, unique=unique))
    for n in range(2 * MORE_THAN_PREPARED):
        again = await (one, two)[n % 2].ainsert(w.Echo.new({"to": "a"}, unique=unique))
        assert again.conflict and again.id == first.id
    both = await two.ainsert_all([w.Echo.new({"to": to}, unique=unique) for to in ("a", "b")])
    assert [job.conflict for job in both] == [True, False]


@pytest.mark.anyio
async def test_the_leaders_plugins_run_through_pgbouncer(behind: MakeFs) -> None:
    """Leadership, the lifeline, the stager, cron and the pruner, none with a session."""
    fs = behind(
        direct=False, poll_interval=0.2, registry=CRON_REGISTRY, prune_interval=0.05, prune_max_age=60
    )
    dead = await orphan(fs, "dead", attempt=1, max_attempts=3)
    due = await fs.ainsert(Tick.new({"due": True}, queue=PARKED, scheduled_in=0.3))
    old = await fs.ainsert(Tick.new({"old": True}, queue=PARKED))
    await rows(
        fs,
        "UPDATE flowstone.jobs SET state = 'completed', completed_at = now() - interval '2 minutes'"
        " WHERE id = %s",
        [old.id],
    )
    node = await started(fs, 1)
    await wait_for(lambda: node.is_leader, message="leadership")
    await wait_for_job(fs, dead, "available", timeout=3)
    await wait_for_job(fs, due.id, "available", timeout=3)

    async def cron_ran() -> bool:
        return any(job.meta.get("cron") for job in await fs.alist_jobs(worker=Tick.name))

    await wait_for(cron_ran, message="a cron job")
    await wait_for(lambda: _gone(fs, old.id), message="the pruner")


async def _gone(fs: FlowStone, job_id: int) -> bool:
    return await fs.aget_job(job_id) is None


def test_migrations_run_through_pgbouncer(bouncer: PgBouncer, flowstone_url: str) -> None:
    """A whole migration into a new schema, through the pooler."""
    dbname = str(conninfo_to_dict(flowstone_url)["dbname"])
    fs = FlowStone(bouncer.url_for(dbname), schema="bounced", pooler="transaction")
    try:
        fs.migrate()
        assert fs.insert(w.Echo.new()).state == "available"
    finally:
        fs.close()
