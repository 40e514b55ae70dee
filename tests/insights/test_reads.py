"""The read layer's dashboard reads: counts without a scan (exact, then estimated),
throughput, cron ticks, windowed job pages, partition history and record lineage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowstone import AssetRegistry, DailyPartitions, FlowStone, Worker, asset, materialize_all
from flowstone.insights import Insights, queues as reads
from flowstone.queue.job import JobState
from flowstone.queue.plugins.cron import floor_minute
from flowstone.queue.queries.jobs import _SAMPLE_ORDER
from flowstone.testing import drain_queue

QUEUE = "reads"


class Task(Worker):
    queue = QUEUE

    def perform(self, job: Any) -> None:
        return None


class EveryMinute(Worker):
    queue = QUEUE
    cron = "* * * * *"
    register = False

    def perform(self, job: Any) -> None:
        return None


Sql = Callable[..., list[dict[str, Any]]]  # the `sql` fixture (tests/conftest.py)


def finish(sql: Sql, ids: list[int], state: str, at: datetime | None = None) -> None:
    """Move jobs to a finished state as the engine would have (timestamps included)."""
    sql(
        f"UPDATE flowstone.jobs SET state = %(state)s::flowstone.job_state, attempt = 1, "  # noqa: S608
        f"{state}_at = coalesce(%(at)s, now()) WHERE id = ANY(%(ids)s)",
        {"state": state, "ids": ids, "at": at},
    )


def test_the_sample_reads_every_state_through_its_index() -> None:
    assert set(_SAMPLE_ORDER) == {state.value for state in JobState}


def test_counts_below_the_cap_are_exact(flowstone: FlowStone, sql: Sql) -> None:
    jobs = flowstone.insert_all([Task.new({"n": n}) for n in range(5)] + [Task.new({}, queue="other")])
    finish(sql, [jobs[0].id, jobs[1].id], "completed")
    finish(sql, [jobs[2].id], "discarded")
    fs = FlowStone(flowstone.settings.database_url, queues={"configured": 2})
    try:
        overview = Insights(fs).overview()
    finally:
        fs.close()
    counts = {q.queue: {s: n for s, n in q.counts.items() if n} for q in overview.queues}
    assert counts == {
        "configured": {},
        "other": {"available": 1},
        QUEUE: {"available": 2, "completed": 2, "discarded": 1},
    }
    assert overview.estimated == frozenset()


def test_counts_above_the_cap_are_the_planners_estimates(flowstone: FlowStone, sql: Sql) -> None:
    many = flowstone.insert_all([Task.new({"n": n}) for n in range(300)])
    few = flowstone.insert_all([Task.new({"n": n}, queue="rare") for n in range(40)])
    finish(sql, [job.id for job in many[:240] + few[:30]], "completed")
    sql("ANALYZE flowstone.jobs")
    counts, estimated = flowstone.database.execute(
        reads.job_counts_plan(flowstone.database.statements.jobs, (), cap=50)
    )
    assert estimated == {"completed", "available"}
    for queue, state, truth in (
        (QUEUE, "completed", 240),
        ("rare", "completed", 30),
        (QUEUE, "available", 60),
    ):
        assert abs(counts[queue][state] - truth) <= truth * 0.1, (queue, state, counts)
    assert counts["rare"]["available"] == 10  # estimated too, but the sample saw them all


def test_throughput_counts_finished_jobs_per_minute(flowstone: FlowStone, sql: Sql) -> None:
    jobs = flowstone.insert_all([Task.new({"n": n}) for n in range(9)])
    minute = floor_minute(datetime.now(UTC))
    finish(sql, [job.id for job in jobs[:5]], "completed", minute - timedelta(seconds=30))
    finish(sql, [jobs[5].id], "discarded", minute - timedelta(seconds=30))
    finish(sql, [job.id for job in jobs[6:]], "completed", minute - timedelta(minutes=10))
    found = Insights(flowstone).throughput(5)
    counted = {m.minute: (m.completed, m.discarded) for m in found}  # a new minute may have begun
    assert len(found) == 5 and counted.pop(minute - timedelta(minutes=1)) == (5, 1)
    assert set(counted.values()) == {(0, 0)}
    capped = flowstone.database.execute(reads.throughput_plan(flowstone.database.statements.jobs, 2, cap=3))
    busy = next(m for m in capped if m.minute == minute - timedelta(minutes=1))
    assert busy.estimated and busy.completed >= 4 and busy.discarded == 1
    with pytest.raises(ValueError, match="minutes must be"):
        Insights(flowstone).throughput(0)


def test_cron_shows_the_next_tick_and_the_job_of_the_last(flowstone: FlowStone) -> None:
    flowstone.schedule("* * * * *", EveryMinute, {"report": "daily"})
    now = datetime.now(UTC)
    [before] = [status for status in Insights(flowstone).cron() if status.entry.worker is EveryMinute]
    assert before.last_job is None and before.last_at is None
    assert now < before.next_at <= floor_minute(now) + timedelta(minutes=2)
    tick = floor_minute(now)
    inserted = flowstone.insert(before.entry.job(tick))
    [after] = [status for status in Insights(flowstone).cron() if status.entry.worker is EveryMinute]
    assert after.last_at == tick and after.last_job is not None and after.last_job.id == inserted.id


def test_a_filter_without_an_index_searches_a_window_per_page(
    flowstone: FlowStone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "SCAN_WINDOW", 4)
    needle = flowstone.insert(Task.new({"needle": True}))
    flowstone.insert_all([Task.new({"n": n}) for n in range(9)])
    insights, pages, cursor = Insights(flowstone), [], None
    while True:
        page = insights.jobs(args={"needle": True}, cursor=cursor, limit=5)
        pages.append(([job.id for job in page.jobs], page.searched))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    top = needle.id + 9
    assert pages == [
        ([], (top, top - 3)),
        ([], (top - 4, top - 7)),
        ([needle.id], (top - 8, needle.id)),
    ]
    unwindowed = insights.jobs(state="available", limit=20)
    assert unwindowed.searched is None and len(unwindowed.jobs) == 10


def test_partition_history_and_a_records_lineage(flowstone_url: str) -> None:
    registry = AssetRegistry()
    days = DailyPartitions("2025-01-01")

    @asset(partitions=days, registry=registry)
    def raw(ctx: Any, deps: dict[str, Any]) -> int:
        return 1

    @asset(depends_on=[raw], partitions=days, registry=registry)
    def clean(ctx: Any, deps: dict[str, Any]) -> int:
        return deps["raw"] + 1

    with FlowStone(flowstone_url, assets=registry) as fs:
        first = materialize_all("clean", "2025-01-02", fs=fs)
        drain_queue("assets", with_scheduled=True, fs=fs)
        second = materialize_all("clean", "2025-01-02", fs=fs, force=True)
        drain_queue("assets", with_scheduled=True, fs=fs)
        insights = Insights(fs)
        history = insights.history("clean", "2025-01-02")
        assert [r.run_id for r in history] == [second.run_id, first.run_id]
        assert [r.status for r in history] == ["success", "success"]
        lineage = insights.record(history[1].id)
        assert lineage is not None and [r.asset for r in lineage.upstream] == ["raw"]
        assert lineage.upstream[0].run_id == first.run_id
        upstream = insights.record(lineage.upstream[0].id)
        assert upstream is not None and history[1].id in [r.id for r in upstream.downstream]
        assert {r.asset for r in insights.history(run_id=first.run_id)} == {"raw", "clean"}
        assert insights.record(10**9) is None
        with pytest.raises(ValueError, match="asset or a run_id"):
            insights.history()
