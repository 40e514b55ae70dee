"""The plugins: lifeline, pruner, cron and the leader lease that decides who runs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import psycopg
import psycopg.sql
import pytest
import runtime_workers as w
import structlog
from support import MakeFs, rows, wait_for, wait_for_job

from flowstone import FlowStone, Job, QueueConfig, ValidationError, Worker, WorkerRegistry
from flowstone.queue import telemetry
from flowstone.queue.control import queue_counts_plan
from flowstone.queue.plan import single
from flowstone.queue.plugins import Cron, CronEntry, PluginRuntime
from flowstone.queue.runtime import Node

AGE = (
    "UPDATE flowstone.jobs SET state = %(state)s::flowstone.job_state, completed_at = %(at)s,"
    " discarded_at = %(at)s, cancelled_at = %(at)s, inserted_at = %(at)s, scheduled_at = %(at)s"
    " WHERE id = %(id)s"
)
PARKED = "parked"  # a queue no node runs, so rescued jobs stay where the lifeline put them
CRON_REGISTRY = WorkerRegistry()


@CRON_REGISTRY.register
class Tick(Worker):
    queue = w.QUEUE
    register = False
    cron = "* * * * *"

    async def perform(self, job: Job) -> None:
        return None


async def orphan(fs: FlowStone, node: str, attempt: int, max_attempts: int) -> int:
    """A job left executing by `node` five seconds ago."""
    job = await fs.ainsert(w.Echo.new(queue=PARKED, max_attempts=max_attempts))
    await rows(
        fs,
        "UPDATE flowstone.jobs SET state = 'executing', attempt = %s, attempted_by = ARRAY[%s],"
        " attempted_at = now() - interval '5 seconds' WHERE id = %s",
        [attempt, node, job.id],
    )
    return job.id


@pytest.mark.anyio
async def test_the_lifeline_rescues_jobs_of_dead_nodes_only(make_fs: MakeFs) -> None:
    fs = make_fs("n1")
    node = await fs.start({w.QUEUE: 1})
    await wait_for(lambda: node.is_leader, message="leadership")
    again = await orphan(fs, "dead", attempt=1, max_attempts=3)
    spent = await orphan(fs, "dead", attempt=3, max_attempts=3)
    alive = await orphan(fs, "n1", attempt=1, max_attempts=3)
    rescued = await wait_for_job(fs, again, "available", timeout=3)
    discarded = await wait_for_job(fs, spent, "discarded")
    for job in (rescued, discarded):
        assert "rescued by the lifeline: node dead" in job.errors[-1]["error"]
    assert (await fs.aget_job(alive)).state == "executing"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_crashed_leader_is_replaced_and_its_job_rescued(make_fs: MakeFs) -> None:
    crashed_fs, survivor_fs = make_fs("crashed"), make_fs("survivor")
    async with anyio.create_task_group() as crash:
        crashed = crashed_fs.node({w.QUEUE: 1})
        crash.start_soon(crashed.run)
        await wait_for(lambda: crashed.is_leader, message="the first leader")
        job = await crashed_fs.ainsert(w.Hang.new())
        await wait_for_job(crashed_fs, job.id, "executing")
        survivor = await survivor_fs.start({w.QUEUE: 1})
        assert not survivor.is_leader
        crash.cancel_scope.cancel()  # no graceful stop: heartbeat and lease just stop
    await wait_for(lambda: survivor.is_leader, timeout=3, message="the survivor to lead")

    async def rerun() -> Job | None:
        found = await survivor_fs.aget_job(job.id)
        return found if found is not None and (found.attempted_by or [""])[0] == "survivor" else None

    rescued = await wait_for(rerun, timeout=3, message="the rescued job to run again")
    assert (rescued.state, rescued.attempt) == ("executing", 2)
    assert "rescued by the lifeline: node crashed" in rescued.errors[0]["error"]


@pytest.mark.anyio
async def test_two_nodes_elect_one_leader_and_a_stopped_leader_hands_over(make_fs: MakeFs) -> None:
    one, two = make_fs("n1"), make_fs("n2")
    nodes = {"n1": await one.start({w.QUEUE: 1}), "n2": await two.start({w.QUEUE: 1})}

    def leaders() -> list[str]:
        return [name for name, node in nodes.items() if node.is_leader]

    first = (await wait_for(leaders, message="a leader"))[0]
    assert leaders() == [first] and await one.aleader() == first
    await (one if first == "n1" else two).stop()
    other = "n2" if first == "n1" else "n1"
    await wait_for(lambda: nodes[other].is_leader, timeout=3, message="the other node to lead")


@pytest.mark.anyio
async def test_the_pruner_deletes_old_finished_jobs_only(make_fs: MakeFs) -> None:
    fs = make_fs(prune_interval=0.05, prune_max_age=60)
    now, old = datetime.now(UTC), datetime.now(UTC) - timedelta(minutes=2)
    setup = [("completed", old), ("discarded", old), ("cancelled", old)]
    setup += [("completed", now), ("available", old), ("retryable", old)]
    jobs = await fs.ainsert_all([w.Echo.new({"n": n}, queue=PARKED) for n in range(len(setup))])
    for job, (state, at) in zip(jobs, setup, strict=True):
        await rows(fs, AGE, {"id": job.id, "state": state, "at": at})
    await fs.start({w.QUEUE: 1})

    async def remaining() -> list[int] | None:
        found = [r["id"] for r in await rows(fs, "SELECT id FROM flowstone.jobs ORDER BY id")]
        return found if len(found) < len(jobs) - 2 else None

    assert await wait_for(remaining, message="the pruner") == [job.id for job in jobs[3:]]


@pytest.mark.anyio
async def test_the_pruner_works_through_a_backlog_in_one_tick(make_fs: MakeFs) -> None:
    """Batches of prune_limit rows per state, repeated while they come back full: a
    backlog larger than one batch is gone after one tick, not one batch per interval."""
    fs = make_fs(prune_interval=3600, prune_max_age=60, prune_limit=10)
    jobs = await fs.ainsert_all([w.Echo.new({"n": n}, queue=PARKED) for n in range(35)])
    old = datetime.now(UTC) - timedelta(minutes=2)
    await rows(
        fs,
        "UPDATE flowstone.jobs SET state = 'completed', completed_at = %s WHERE id = ANY(%s)",
        [old, [job.id for job in jobs]],
    )
    pruned: list[float] = []
    detach = telemetry.attach("pruner.prune", lambda _e, m, _md: pruned.append(m["count"]))
    try:
        await fs.start({w.QUEUE: 1})
        await wait_for(lambda: pruned, message="the pruner's first tick")
    finally:
        detach()
    assert pruned == [35]
    assert await rows(fs, "SELECT count(*) FROM flowstone.jobs") == [{"count": 0}]


@pytest.mark.anyio
async def test_the_leader_inserts_cron_jobs(make_fs: MakeFs) -> None:
    fs = make_fs(registry=CRON_REGISTRY)
    await fs.start({w.QUEUE: 1})

    async def ticked() -> list[Job]:
        return await fs.alist_jobs(worker=Tick.name)

    [job] = await wait_for(ticked, message="a cron job")
    assert job.meta["cron"] == "* * * * *" and "cron_tick" in job.meta


@pytest.mark.anyio
async def test_two_cron_plugins_insert_a_tick_once(make_fs: MakeFs) -> None:
    fs = make_fs()
    node = Node(fs, {})
    entry = CronEntry("*/5 * * * *", Tick, {"x": 1})
    at = datetime(2025, 1, 15, 10, 5, 30, tzinfo=UTC)
    for plugin in (Cron([entry]), Cron([entry])):
        await plugin.insert_due(node, at)
    await Cron([entry]).insert_due(node, datetime(2025, 1, 15, 10, 10, tzinfo=UTC))
    found = await fs.alist_jobs(worker=Tick.name)
    assert [j.meta["cron_tick"] for j in found] == ["2025-01-15T10:05:00+00:00", "2025-01-15T10:10:00+00:00"]


def test_cron_entries_match_their_minutes_in_their_time_zone() -> None:
    every_five = CronEntry("*/5 * * * *", Tick)
    assert every_five.matches(datetime(2025, 1, 15, 10, 5, tzinfo=UTC))
    assert not every_five.matches(datetime(2025, 1, 15, 10, 6, tzinfo=UTC))
    nine_in_paris = CronEntry("0 9 * * *", Tick, timezone="Europe/Paris")
    assert nine_in_paris.matches(datetime(2025, 1, 15, 8, 0, tzinfo=UTC))  # CET, UTC+1
    assert nine_in_paris.matches(datetime(2025, 7, 15, 7, 0, tzinfo=UTC))  # CEST, UTC+2
    assert not nine_in_paris.matches(datetime(2025, 1, 15, 9, 0, tzinfo=UTC))


def test_cron_due_handles_each_minute_once() -> None:
    cron = Cron([CronEntry("*/5 * * * *", Tick), CronEntry("0 * * * *", Tick, {"hourly": True})])
    minute, jobs = cron.due(datetime(2025, 1, 15, 10, 0, 42, tzinfo=UTC)) or (None, [])
    assert minute == datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    assert [job.args for job in jobs] == [{}, {"hourly": True}]
    cron.last_minute = minute
    assert cron.due(datetime(2025, 1, 15, 10, 0, 59, tzinfo=UTC)) is None
    assert cron.due(datetime(2025, 1, 15, 10, 1, tzinfo=UTC)) == (
        datetime(2025, 1, 15, 10, 1, tzinfo=UTC),
        [],
    )


@pytest.mark.parametrize(
    ("expression", "timezone", "named"),
    [
        ("61 * * * *", "UTC", "'61 * * * *'"),
        ("* * * * * *", "UTC", "'* * * * * *'"),
        ("every minute", "UTC", "'every minute'"),
        ("* * * * *", "Mars/Olympus", "'Mars/Olympus'"),
    ],
)
def test_invalid_cron_entries_are_refused_by_name(expression: str, timezone: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("*", r"\*")):
        CronEntry(expression, Tick, timezone=timezone)


@pytest.mark.anyio
async def test_fs_schedule_adds_a_cron_entry_the_leader_inserts(make_fs: MakeFs) -> None:
    fs = make_fs()
    entry = fs.schedule("*/5 * * * *", Tick, {"report": "daily"}, timezone="Europe/Paris")
    node = fs.node({})
    [cron] = [plugin for plugin in node.plugins if isinstance(plugin, Cron)]
    assert entry in cron.entries
    await cron.insert_due(node, datetime(2025, 1, 15, 10, 5, tzinfo=UTC))
    [job] = await fs.alist_jobs(worker=Tick.name)
    assert job.args == {"report": "daily"} and job.meta["cron"] == "*/5 * * * *"
    with pytest.raises(ValueError, match="not a valid"):
        fs.schedule("every day", Tick)


class Counting:
    """A user's own plugin: counts its ticks and sees only the node's PluginRuntime."""

    name = "counting"
    leader_only = False
    interval = 0.01

    def __init__(self) -> None:
        self.ticks = 0
        self.queues: dict[str, int] = {}

    async def tick(self, runtime: PluginRuntime) -> None:
        self.ticks += 1
        self.queues = await runtime.execute(queue_counts_plan(runtime.jobs))


@pytest.mark.anyio
async def test_users_add_their_own_plugins(make_fs: MakeFs) -> None:
    plugin = Counting()
    fs = make_fs("n1", plugins=[plugin])
    await fs.ainsert(w.Echo.new(queue=PARKED))
    await fs.start({w.QUEUE: 1})
    await wait_for(lambda: plugin.ticks >= 3 and plugin.queues, message="the plugin's ticks")
    assert plugin.queues == {PARKED: {"available": 1}}


@pytest.mark.anyio
async def test_queue_configs_start_paused_and_refuse_unknown_options(make_fs: MakeFs) -> None:
    fs = make_fs("n1", queues={w.QUEUE: {"limit": 2, "paused": True}})
    node = await fs.start()
    job = await fs.ainsert(w.Echo.new())
    assert (node.producers[w.QUEUE].limit, node.producers[w.QUEUE].paused) == (2, True)
    await fs.aresume_queue(w.QUEUE)
    await wait_for_job(fs, job.id, "completed")
    with pytest.raises(ValidationError, match="queues: queue 'rt': rate: Extra inputs are not permitted"):
        make_fs("n2", queues={w.QUEUE: {"limit": 2, "rate": 5}})
    with pytest.raises(ValidationError, match="limit must be a positive integer"):
        make_fs("n2", queues={w.QUEUE: 0})
    assert QueueConfig.of("q", 3) == QueueConfig(limit=3)


@pytest.fixture
async def database_statement_timeout(flowstone_url: str) -> AsyncIterator[str]:
    """The test database's own default statement_timeout set to 50 ms (new connections
    get it), as a cautious DBA might; reset afterwards."""
    async with await psycopg.AsyncConnection.connect(flowstone_url, autocommit=True) as conn:
        name = (await (await conn.execute("SELECT current_database()")).fetchone())[0]  # type: ignore[index]
        database = psycopg.sql.Identifier(name)
        await conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET statement_timeout = '50ms'").format(database)
        )
        yield name
        await conn.execute(psycopg.sql.SQL("ALTER DATABASE {} RESET statement_timeout").format(database))


@pytest.mark.anyio
async def test_plugins_run_with_flowstones_statement_timeout_not_the_databases(
    make_fs: MakeFs, flowstone_url: str, database_statement_timeout: str
) -> None:
    """Under a database default of 50 ms, the pruner's statement waits on a row lock for
    longer and still prunes: plugins get FlowStone's statement_timeout (30 s)."""
    fs = make_fs(prune_interval=0.05, prune_max_age=60)
    jobs = await fs.ainsert_all([w.Echo.new({"n": n}, queue=PARKED) for n in range(3)])
    old = datetime.now(UTC) - timedelta(minutes=2)
    ids = [job.id for job in jobs]
    await rows(
        fs, "UPDATE flowstone.jobs SET state = 'completed', completed_at = %s WHERE id = ANY(%s)", [old, ids]
    )
    async with await psycopg.AsyncConnection.connect(flowstone_url) as holder:
        await holder.execute("SET statement_timeout = 0")
        await holder.execute("SELECT id FROM flowstone.jobs WHERE id = %s FOR UPDATE", [ids[0]])
        await fs.start({w.QUEUE: 1})

        async def pruner_waited() -> bool:
            found = await rows(fs, WAITING_ON_A_LOCK, {"pid": holder.info.backend_pid})
            return bool(found)

        await wait_for(pruner_waited, 10, "the pruner to wait on the lock for over 200 ms")
        await holder.rollback()
    await wait_for(lambda: remaining(fs, ids), 10, "the pruner to delete the jobs")


WAITING_ON_A_LOCK = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND %(pid)s = ANY(pg_blocking_pids(pid))
  AND query LIKE '%%DELETE%%' AND clock_timestamp() - query_start > interval '200 ms'
"""


async def remaining(fs: FlowStone, ids: list[int]) -> bool:
    return await rows(fs, "SELECT id FROM flowstone.jobs WHERE id = ANY(%s)", [ids]) == []


class Sleepy:
    """A plugin whose statement always outlasts the statement timeout."""

    name = "sleepy"
    leader_only = False
    interval = 0.05

    async def tick(self, runtime: PluginRuntime) -> None:
        await runtime.execute(single("SELECT pg_sleep(5)", {}))


@pytest.mark.anyio
async def test_a_plugin_that_keeps_failing_names_the_setting_to_change(make_fs: MakeFs) -> None:
    fs = make_fs("n1", plugins=[Sleepy()], statement_timeout=0.3)
    with structlog.testing.capture_logs() as captured:
        await fs.start({w.QUEUE: 1})

        def advice() -> list[dict[str, Any]]:
            return [line for line in captured if line.get("plugin") == "sleepy" and "fix" in line]

        [line, *_] = await wait_for(advice, 15, "a failure with advice")
    assert line["failures"] >= 3 and "canceling statement due to statement timeout" in line["error"]
    assert "raise statement_timeout (0.3 s)" in line["fix"]
    first = next(line for line in captured if line.get("plugin") == "sleepy")
    assert first["failures"] == 1 and "fix" not in first, "one failure gives no advice yet"
