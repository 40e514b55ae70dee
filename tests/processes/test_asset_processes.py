"""Asset guarantees through real `flowstone worker` processes (`--app proc_assets:app`):
chains move at queue speed with correct lineage, one materialization of a partition at a
time cluster-wide, and a failed upstream stops its downstream with the reason recorded."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from process_support import JOB_STATES, StartWorkers, rows, scalar, settled
from support import wait_until

from flowstone import FlowStone, materialize, materialize_all

pytestmark = pytest.mark.process

RECORDS = "SELECT asset, partition, status::text, error_type, error_message FROM flowstone.materializations"
EDGES = """
SELECT m.asset, m.partition, u.asset, u.partition
FROM flowstone.materialization_lineage AS l
JOIN flowstone.materializations AS m ON m.id = l.materialization_id
JOIN flowstone.materializations AS u ON u.id = l.upstream_id
"""
OVERLAPS = """
SELECT count(*) FROM public.asset_runs AS x JOIN public.asset_runs AS y
    ON x.ctid < y.ctid AND (x.asset, x.partition) = (y.asset, y.partition)
   AND x.started_at < y.finished_at AND y.started_at < x.finished_at
"""


def test_chain_of_3_assets_by_30_days_runs_at_queue_speed_with_lineage(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2)
    days = [(date(2025, 1, 1) + timedelta(days=n)).isoformat() for n in range(30)]

    began = time.monotonic()
    for day in days:
        materialize_all("proc_c", day, run_id="chain")
    wait_until(lambda: settled(flowstone_url, 90), 60, "90 jobs to finish")
    elapsed = time.monotonic() - began

    assert dict(rows(flowstone_url, JOB_STATES)) == {"completed": 90}, "nothing left executing"
    records = rows(flowstone_url, RECORDS)
    assert sorted((a, p, s) for a, p, s, _, _ in records) == sorted(
        (asset, day, "success") for asset in ("proc_a", "proc_b", "proc_c") for day in days
    )
    assert sorted(rows(flowstone_url, EDGES)) == sorted(
        [("proc_b", d, "proc_a", d) for d in days] + [("proc_c", d, "proc_b", d) for d in days]
    )
    assert scalar(flowstone_url, "SELECT sum((value->>'rows')::int) FROM flowstone_assets.proc_c") == sum(
        2 * n + 1 for n in range(1, 31)
    )
    assert elapsed < 20, f"the chain took {elapsed:.1f} s: dependents sat out 30 s snoozes"


def test_same_partition_materialized_twice_concurrently_runs_one_at_a_time(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2, PROC_HOLD="1")
    for run_id in ("first", "second"):
        materialize("proc_a", "2025-02-01", run_id=run_id, force=True)
    for run_id in ("third", "fourth"):
        materialize("proc_a", "2025-02-02", run_id=run_id)
    wait_until(lambda: settled(flowstone_url, 4), 20, "the 4 jobs to finish (woken, not after a 30 s snooze)")

    runs = rows(flowstone_url, "SELECT partition, count(*) FROM public.asset_runs GROUP BY 1 ORDER BY 1")
    assert runs == [("2025-02-01", 2), ("2025-02-02", 1)], "forced: twice; unforced: once"
    assert scalar(flowstone_url, OVERLAPS) == 0, "never two runs of one partition at once"
    waited = (
        "SELECT count(*) FROM flowstone.jobs WHERE meta ? 'snoozed' AND args->>'partition' = '2025-02-01'"
    )
    assert scalar(flowstone_url, waited) >= 1, "the forced pair met: one waited for the other's lock"
    statuses = sorted((p, s) for _, p, s, _, _ in rows(flowstone_url, RECORDS))
    assert statuses == [
        ("2025-02-01", "success"),
        ("2025-02-01", "success"),
        ("2025-02-02", "skipped"),
        ("2025-02-02", "success"),
    ]


def test_failing_upstream_leaves_downstream_not_run_and_says_why(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    asset_workers(2, PROC_FAIL="2025-03-02")
    for day in ("2025-03-01", "2025-03-02"):
        materialize_all("proc_c", day, run_id="mixed")
    wait_until(lambda: settled(flowstone_url, 6), 20, "the 6 jobs to finish")

    outcome = {(a, p): (s, t, m) for a, p, s, t, m in rows(flowstone_url, RECORDS)}
    assert {outcome[(a, "2025-03-01")][0] for a in ("proc_a", "proc_b", "proc_c")} == {"success"}
    assert outcome[("proc_a", "2025-03-02")] == (
        "failed",
        "execution_error",
        "source data of 2025-03-02 is corrupt",
    )
    assert outcome[("proc_b", "2025-03-02")] == (
        "failed",
        "dependency_failed",
        "upstream 'proc_a' (partition '2025-03-02') failed: "
        "execution_error: source data of 2025-03-02 is corrupt",
    )
    status, error_type, message = outcome[("proc_c", "2025-03-02")]
    assert (status, error_type) == ("failed", "dependency_failed")
    assert message.startswith("upstream 'proc_b' (partition '2025-03-02') failed: dependency_failed: ")
    ran = rows(flowstone_url, "SELECT asset FROM public.asset_runs WHERE partition = '2025-03-02'")
    assert ran == [], "neither proc_a's work nor anything downstream ran"
