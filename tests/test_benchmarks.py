"""The benchmarks' own checks: a job run twice, or a chain that never finished, is reported
as a failure, never as a result (the benchmarks themselves run by hand: docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The `benchmarks` package (it lives beside the library, not in it)."""
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks

    yield benchmarks


def test_runs_keep_each_id_once_and_name_the_ones_run_again(bench: ModuleType) -> None:
    from benchmarks.noop import Runs

    one, two = Runs(), Runs()
    for job_id in (1, 2, 3, 2_000_000):
        one.add(job_id)
    one.add(3)
    two.add(4)
    two.add(2_000_000)
    assert (len(one), one.twice) == (4, [3])
    both = Runs.union([Runs.from_json(one.to_json()), Runs.from_json(two.to_json())])
    assert (len(both), sorted(both.twice)) == (5, [3, 2_000_000])
    inserted = Runs()
    for job_id in (1, 2, 3, 4, 2_000_000):
        inserted.add(job_id)
    assert both.number() == inserted.number()
    assert len(inserted.bits) <= 2 * (2_000_000 // 8 + 1), "one bit per id"


def test_a_chain_run_not_announced_in_time_is_a_failure(bench: ModuleType, flowstone_url: str) -> None:
    from benchmarks.assets_bench import announced

    with psycopg.connect(flowstone_url, autocommit=True) as listener:
        listener.execute('LISTEN "flowstone.materializations"')
        with psycopg.connect(flowstone_url, autocommit=True) as other:
            other.execute("SELECT pg_notify('flowstone.materializations', 'run-1 chain_8')")
        assert announced(listener, ("run-1", "chain_9"), timeout=0.5) is False
        with psycopg.connect(flowstone_url, autocommit=True) as other:
            other.execute("SELECT pg_notify('flowstone.materializations', 'run-1 chain_9')")
        assert announced(listener, ("run-1", "chain_9"), timeout=10) is True


def test_the_mvcc_summary_compares_each_phase_with_the_baseline(bench: ModuleType) -> None:
    from benchmarks.mvcc import PinnedLoad
    from benchmarks.noop import Runs

    load = PinnedLoad.__new__(PinnedLoad)  # the summary only: no server, no worker
    load.inserted, load.inserted_ids, load.drained = 4, Runs(), True
    for job_id in range(1, 5):
        load.inserted_ids.add(job_id)
    load.stats = {"runs": load.inserted_ids.to_json()}
    load.samples, load.lat_by_sample = [], []
    for phase, p99, dead in (
        ("baseline", 10.0, 5),
        ("pinned", 12.0, 50),
        ("pinned", 30.0, 90),
        ("released", 11.0, 7),
    ):
        load.samples.append(
            {
                "phase": phase,
                "processed": 300,
                "window_s": 1.0,
                "p99_ms": p99,
                "dead_rows": dead,
                "total_mb": 1.0,
                "pending": 0,
            }
        )
        load.lat_by_sample.append([1.0] * 98 + [p99] * 2)
    summary = load.phases()
    assert summary["count_ok"] is True
    assert (summary["pinned"]["p99_ms_max_sample"], summary["pinned"]["dead_rows_max"]) == (30.0, 90)
    assert summary["pinned_worst_sample_p99_ratio"] == 3.0
    assert summary["pinned_throughput_ratio"] == 1.0


def test_the_bounded_statements_read_less_than_full_passes_under_a_pin(
    bench: ModuleType, flowstone_server_url: str
) -> None:
    """`mvcc-leader` on a small pinned history: each cursor's pass reads fewer buffers
    than its full pass, and the orphan search goes through the claimer index."""
    import argparse

    from benchmarks.mvcc_leader import mvcc_leader

    db = "flowstone_test_mvcc_leader"
    args = argparse.Namespace(dsn=flowstone_server_url, db=db, jobs=19_000, pin_minutes=30.0)
    try:
        result = mvcc_leader(args)
    finally:
        with psycopg.connect(flowstone_server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    for statement in ("stager", "pruner"):
        for plan in ("custom", "generic"):
            cursor, full = result[f"{statement}_cursor_{plan}"], result[f"{statement}_full_{plan}"]
            assert cursor["buffers"] * 3 < full["buffers"], (statement, plan, cursor, full)
    assert any("attempted_by[2]" in cond for cond in result["lifeline_generic"]["index_conds"])
