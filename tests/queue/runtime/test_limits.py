"""Global and rate limits per queue, enforced in the claim, across nodes (in-process)."""

from __future__ import annotations

from datetime import datetime

import feature_workers as fw
import pytest
from support import MakeFs, rows, wait_for

from flowstone import FlowStone

pytestmark = pytest.mark.anyio


async def completed(fs: FlowStone, count: int) -> bool:
    found = await rows(fs, "SELECT count(*) AS n FROM flowstone.jobs WHERE state = 'completed'")
    return bool(found[0]["n"] == count)


async def test_a_global_limit_holds_across_nodes(make_fs: MakeFs) -> None:
    options = {"limit": 10, "global_limit": 3}
    nodes = [make_fs(f"n{i}") for i in range(2)]
    for fs in nodes:
        await fs.start({fw.QUEUE: options})
    await nodes[0].ainsert_all([fw.Timed.new({"seconds": 0.05}) for _ in range(30)])
    await wait_for(lambda: completed(nodes[0], 30), 30, "30 jobs completed")
    assert fw.LOG.peaks["*"] == 3, "3 at once, never more"


async def test_a_partitioned_global_limit_holds_per_tenant(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.start({fw.QUEUE: {"limit": 20, "global_limit": 2, "partition": {"args": ["tenant"]}}})
    jobs = [fw.Timed.new({"tenant": tenant, "seconds": 0.05}) for _ in range(8) for tenant in "abc"]
    await fs.ainsert_all(jobs)
    await wait_for(lambda: completed(fs, 24), 30, "24 jobs completed")
    assert {tenant: fw.LOG.peaks[tenant] for tenant in "abc"} == {"a": 2, "b": 2, "c": 2}
    assert fw.LOG.peaks["*"] >= 4, "tenants run side by side"


def starts_in_windows(starts: list[datetime], period: float) -> int:
    """The most starts within any window of `period` seconds."""
    ordered = sorted(starts)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while (at - ordered[first]).total_seconds() >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_a_rate_limit_holds_in_every_window_across_nodes(make_fs: MakeFs) -> None:
    options = {"limit": 10, "rate_limit": {"allowed": 20, "period": 2}}
    nodes = [make_fs(f"n{i}") for i in range(2)]
    for fs in nodes:
        await fs.start({fw.QUEUE: options})
    await nodes[0].ainsert_all([fw.Timed.new() for _ in range(100)])
    await wait_for(lambda: completed(nodes[0], 100), 40, "100 jobs completed")
    starts = [run["attempted_at"] for run in fw.LOG.runs]
    assert starts_in_windows(starts, 2.0) <= 20
    assert len(starts) == 100
    ledger = await rows(nodes[0], "SELECT sum(count) AS n FROM flowstone.rate_limits")
    assert 0 < ledger[0]["n"] <= 100, "the ledger counts starts and forgets old buckets"


async def test_a_partitioned_rate_limit_holds_per_tenant(make_fs: MakeFs) -> None:
    fs = make_fs()
    options = {"limit": 10, "rate_limit": {"allowed": 3, "period": 1}, "partition": {"args": ["tenant"]}}
    await fs.start({fw.QUEUE: options})
    await fs.ainsert_all([fw.Timed.new({"tenant": t}) for _ in range(6) for t in "ab"])
    await wait_for(lambda: completed(fs, 12), 30, "12 jobs completed")
    for tenant in "ab":
        starts = [run["attempted_at"] for run in fw.LOG.runs if run["args"]["tenant"] == tenant]
        assert starts_in_windows(starts, 1.0) <= 3
