"""Assets over time through real `flowstone worker` processes (`--app proc_assets:app`):
cross-run wake-ups, bounded waits, skipped against completed, exactly the stale part
recomputed, schedules, eager automation after a storm, roll-ups, blocking checks, and
the partition lock surviving a lost connection."""

from __future__ import annotations

import time
from datetime import date, timedelta

import psycopg
import pytest
from process_support import StartWorkers, rows, scalar, settled
from support import wait_until

from flowstone import AssetWorker, FlowStone, materialize, materialize_all
from flowstone.insights import Insights

pytestmark = pytest.mark.process

DAY = "2025-03-05"
RUNS = "SELECT asset, partition, count(*) FROM public.asset_runs GROUP BY 1, 2 ORDER BY 1, 2"
RECORD = (
    "SELECT status::text, error_type, error_message, finished_at FROM flowstone.materializations"
    " WHERE asset = %s AND run_id = %s"
)
OVERLAPS = """
SELECT count(*) FROM public.asset_runs AS x JOIN public.asset_runs AS y
    ON x.ctid < y.ctid AND (x.asset, x.partition) = (y.asset, y.partition)
   AND x.started_at < y.finished_at AND y.started_at < x.finished_at
"""
LOCK_KEY = f"flowstone.materialize/proc_a/{DAY}"
LOCK_HOLDER = """
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0)
"""


def record(url: str, asset: str, run_id: str) -> tuple[object, ...] | None:
    found = rows(url, RECORD, (asset, run_id))
    return found[0] if found else None


def status(url: str, asset: str, run_id: str) -> object:
    found = record(url, asset, run_id)
    return None if found is None else found[0]


def test_a_success_wakes_a_dependent_of_another_run_within_a_second(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2, PROC_SLOW="2")
    materialize("proc_a", DAY, run_id="upstream")
    wait_until(lambda: status(flowstone_url, "proc_a", "upstream") == "running", 20, "proc_a to run")
    materialize("proc_b", DAY, run_id="dependent")
    wait_until(
        lambda: (record(flowstone_url, "proc_b", "dependent") or (None, None, ""))[2] == "waiting for proc_a",
        20,
        "proc_b to wait for proc_a",
    )
    wait_until(lambda: status(flowstone_url, "proc_b", "dependent") == "success", 40, "proc_b to succeed")
    upstream, dependent = (
        record(flowstone_url, "proc_a", "upstream"),
        record(flowstone_url, "proc_b", "dependent"),
    )
    assert upstream is not None and dependent is not None
    gap = (dependent[3] - upstream[3]).total_seconds()  # type: ignore[operator]
    assert 0 < gap < 1, f"proc_b finished {gap:.1f} s after proc_a: it sat out its snooze"


def test_a_wait_for_a_dependency_nothing_materializes_fails_with_dependency_not_ready(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(1, PROC_DEP_TIMEOUT="2")
    began = time.monotonic()
    job = flowstone.insert(AssetWorker.new({"asset_name": "proc_b", "partition": DAY, "run_id": "cron"}))
    wait_until(lambda: flowstone.get_job(job.id).state == "discarded", 20, "the job to give up")  # type: ignore[union-attr]
    assert 2 <= time.monotonic() - began < 10, "it waited its bound, no longer"
    found = record(flowstone_url, "proc_b", "cron")
    assert found is not None and found[:3] == (
        "failed",
        "dependency_not_ready",
        "waited 2 s for proc_a, which nothing is materializing (never materialized, not queued): "
        "materialize it, or use materialize_all to queue the upstream too",
    )


def test_skipped_is_reported_apart_from_completed_and_keeps_lineage(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(1)
    materialize_all("proc_b", DAY)
    wait_until(lambda: settled(flowstone_url, 2), 20, "the chain")
    again = materialize("proc_b", DAY, wait=True, timeout=20)
    assert again.status == "skipped"
    forced = materialize("proc_a", DAY, force=True, wait=True, timeout=20)
    assert forced.status == "completed"
    stale = materialize("proc_b", DAY, wait=True, timeout=20)
    assert stale.status == "completed", "its upstream changed: recomputed"
    fresh = materialize("proc_b", DAY, wait=True, timeout=20)
    assert fresh.status == "skipped" and fresh.materialization is not None
    lineage = Insights(flowstone).lineage("proc_b", DAY)
    assert (
        lineage is not None and lineage.source is not None and lineage.source.id == stale.materialization.id
    )  # type: ignore[union-attr]
    assert [(r.asset, r.run_id) for r in lineage.upstream] == [("proc_a", forced.run_id)]


def test_a_changed_source_recomputes_exactly_the_stale_partitions_downstream(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2)
    days = [(date(2025, 3, 1) + timedelta(days=n)).isoformat() for n in range(3)]
    for day in days:
        materialize_all("proc_c", day)
    wait_until(lambda: settled(flowstone_url, 9), 30, "the 3 chains")
    materialize("proc_a", days[1], force=True, wait=True, timeout=20)  # a fix to one day's source
    insights = Insights(flowstone)
    assert [p.status for p in insights.partitions("proc_c", days)] == ["fresh", "stale", "fresh"]

    for day in days:
        materialize_all("proc_c", day)  # one command per day: the whole closure, queued
    wait_until(lambda: settled(flowstone_url, 19), 30, "the second pass")
    runs = {(a, p): n for a, p, n in rows(flowstone_url, RUNS)}
    assert runs == {
        **{(asset, day): 1 for asset in ("proc_a", "proc_b", "proc_c") for day in days},
        ("proc_a", days[1]): 2,
        ("proc_b", days[1]): 2,
        ("proc_c", days[1]): 2,
    }, "only the stale day was computed again"
    assert {p.status for p in insights.partitions("proc_c", days)} == {"fresh"}


def test_an_asset_schedule_fires_once_per_tick_across_two_nodes(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2, PROC_SCHEDULE="1")
    succeeded = (
        "SELECT run_id FROM flowstone.materializations WHERE asset = 'proc_clock' AND status = 'success'"
        " ORDER BY id LIMIT 1"
    )
    run_id = wait_until(lambda: scalar(flowstone_url, succeeded), 75, "a tick of proc_clock's schedule")
    assert str(run_id).startswith("schedule/proc_clock/")
    ticks = rows(
        flowstone_url,
        "SELECT meta->>'cron_tick', count(*) FROM flowstone.jobs WHERE args->>'asset_name' = 'proc_clock'"
        " GROUP BY 1",
    )
    assert ticks and all(count == 1 for _, count in ticks), "one job per tick cluster-wide"


CRON_JOBS = """
SELECT worker, (meta->>'cron_tick')::timestamptz AS tick,
       extract(epoch FROM inserted_at - (meta->>'cron_tick')::timestamptz) AS late
FROM flowstone.jobs WHERE meta ? 'cron_tick' ORDER BY tick, worker
"""


def test_cron_ticks_follow_the_database_clock_on_a_node_an_hour_off(
    flowstone: FlowStone, flowstone_url: str, workers, asset_workers: StartWorkers
) -> None:
    """The leader's wall clock is 1 h 30 s ahead: a worker's cron entry and an asset's
    schedule still tick on the database's minutes, on time, each inserted once."""
    node = workers(
        "skewed",
        queues="work=5,assets=5",
        app="proc_skewed:app",
        FS_CRON="1",
        PROC_SCHEDULE="1",
        FS_CLOCK_SKEW="3630",
    )
    node.wait_started()
    minutes = "SELECT count(DISTINCT meta->>'cron_tick') FROM flowstone.jobs WHERE meta ? 'cron_tick'"
    wait_until(lambda: scalar(flowstone_url, minutes) >= 2, 90, "two ticks of the cron entries")
    found = rows(flowstone_url, CRON_JOBS)
    ticks = sorted({tick for _, tick, _ in found})
    assert [(worker, tick) for worker, tick, _ in found] == [
        (worker, tick) for tick in ticks for worker in sorted((AssetWorker.name, "proc_app.Tick"))
    ], "each entry inserted once per tick"
    assert all(0 <= late < 60 for _, _, late in found), f"ticks of the database's minutes: {found}"
    assert all(late < 5 for _, tick, late in found if tick != ticks[0]), f"on time: {found}"
    done = "SELECT count(*) FROM flowstone.materializations WHERE asset = 'proc_clock' AND status = 'success'"
    wait_until(lambda: scalar(flowstone_url, done) >= 1, 30, "the scheduled asset to be materialized")


def test_eager_automation_materializes_a_dependent_once_after_a_storm_of_50_updates(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2, PROC_EAGER="1")
    for _ in range(50):
        materialize("proc_a", DAY, force=True)
    wait_until(
        lambda: scalar(flowstone_url, "SELECT count(*) FROM public.asset_runs WHERE asset = 'proc_eager'"),
        60,
        "the eager dependent to run",
    )
    wait_until(
        lambda: (
            scalar(
                flowstone_url,
                "SELECT count(*) FROM flowstone.jobs WHERE state NOT IN"
                " ('completed', 'discarded', 'cancelled')",
            )
            == 0
        ),
        60,
        "every job to finish",
    )
    runs = {a: n for a, _, n in rows(flowstone_url, RUNS)}
    retried = rows(flowstone_url, "SELECT id, errors FROM flowstone.jobs WHERE errors <> '[]'")
    assert runs["proc_eager"] == 1, retried
    # at least once: a job whose node looked dead under load may run again elsewhere
    assert runs["proc_a"] == 50 + len(retried), retried
    assert scalar(flowstone_url, OVERLAPS) == 0


def test_a_week_rolls_up_its_7_days_with_lineage(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2)
    materialize_all("proc_week", "2025-01-13")
    wait_until(lambda: settled(flowstone_url, 8), 30, "7 days and their week")
    edges = rows(
        flowstone_url,
        "SELECT u.partition FROM flowstone.materialization_lineage AS l"
        " JOIN flowstone.materializations AS m ON m.id = l.materialization_id"
        " JOIN flowstone.materializations AS u ON u.id = l.upstream_id"
        " WHERE m.asset = 'proc_week' ORDER BY 1",
    )
    assert [p for (p,) in edges] == [f"2025-01-{d}" for d in range(13, 20)]
    assert scalar(flowstone_url, "SELECT value->>'rows' FROM flowstone_assets.proc_week") == str(
        sum(range(13, 20))
    )


def test_a_failed_blocking_check_stops_the_downstream(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2, PROC_BAD_DATA=DAY)
    materialize_all("proc_c", DAY, run_id="checked")
    wait_until(lambda: settled(flowstone_url, 3), 30, "the chain")
    outcome = {a: s[:2] for a in ("proc_a", "proc_b", "proc_c") if (s := record(flowstone_url, a, "checked"))}
    assert outcome == {
        "proc_a": ("failed", "check_failed"),
        "proc_b": ("failed", "dependency_failed"),
        "proc_c": ("failed", "dependency_failed"),
    }
    assert rows(flowstone_url, RUNS) == [("proc_a", DAY, 1)], "only proc_a ran"
    assert rows(flowstone_url, "SELECT check_name, passed FROM flowstone.asset_check_results") == [
        ("rows_are_plausible", False)
    ]


def test_the_partition_lock_is_taken_again_after_its_connection_is_killed(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2, PROC_SLOW="4")
    materialize("proc_a", DAY, run_id="first")
    old = wait_until(
        lambda: scalar(flowstone_url, LOCK_HOLDER, (LOCK_KEY,)), 20, "the first run to hold its lock"
    )
    scalar(flowstone_url, "SELECT pg_terminate_backend(%s, 5000)", (old,))
    new = wait_until(
        lambda: (pid := scalar(flowstone_url, LOCK_HOLDER, (LOCK_KEY,))) not in (None, old) and pid,
        10,
        "the lock taken again",
    )
    assert status(flowstone_url, "proc_a", "first") == "running", "still the first run"
    materialize("proc_a", DAY, run_id="second", force=True)
    wait_until(lambda: settled(flowstone_url, 2), 60, "both runs")
    assert scalar(flowstone_url, OVERLAPS) == 0, "never two runs of the partition at once"
    assert (status(flowstone_url, "proc_a", "first"), status(flowstone_url, "proc_a", "second")) == (
        "success",
        "success",
    )
    assert new != old


def test_a_run_that_lost_its_lock_does_not_record_success(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(1, PROC_SLOW="3")
    materialize("proc_a", DAY, run_id="first")
    holder = wait_until(
        lambda: scalar(flowstone_url, LOCK_HOLDER, (LOCK_KEY,)), 20, "the run to hold its lock"
    )
    # a concurrent run takes the lock (within lock_timeout, or the test fails)
    with psycopg.connect(flowstone_url, autocommit=True, options="-c lock_timeout=20s") as rival:
        rival.execute(
            "SELECT pg_terminate_backend(%s, 5000), pg_advisory_lock(hashtextextended(%s, 0))",
            (holder, LOCK_KEY),
        )
        wait_until(
            lambda: (record(flowstone_url, "proc_a", "first") or ("", "", ""))[1] == "connection_error",
            20,
            "the run to give its result up",
        )
        found = record(flowstone_url, "proc_a", "first")
        assert found is not None and found[0] == "pending" and "lost the partition's lock" in str(found[2])
        assert (
            scalar(flowstone_url, "SELECT count(*) FROM flowstone.materializations WHERE status = 'success'")
            == 0
        )
