"""Cron entries managed at run time: stored with `fs.cron` or `flowstone cron`, run by the
leader once per tick across nodes, paused ones not, code entries winning on a name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import runtime_workers as w
from support import MakeFs

from flowstone import FlowStone, Job, ValidationError, Worker
from flowstone.queue.plugins import Cron, CronEntry
from flowstone.queue.runtime import Node

TICK = datetime(2025, 1, 15, 10, 5, 30, tzinfo=UTC)
NEXT = datetime(2025, 1, 15, 10, 10, 5, tzinfo=UTC)


class Nightly(Worker):
    queue = w.QUEUE

    async def perform(self, job: Job) -> None:
        return None


async def fire(fs: FlowStone, at: datetime, code: list[CronEntry] | None = None, nodes: int = 2) -> None:
    """Each of `nodes` leaders (two that both believe they lead) handles the minute of `at`."""
    for _ in range(nodes):
        await Cron(code or [], registry=fs.registry).insert_due(Node(fs, {}), at)


async def ticks(fs: FlowStone) -> list[tuple[str, str]]:
    jobs = await fs.alist_jobs(worker=Nightly.name)
    return sorted((job.meta["cron_name"], job.meta["cron_tick"]) for job in jobs)


@pytest.mark.anyio
async def test_a_stored_entry_fires_once_per_tick_across_two_nodes_and_a_paused_one_not(
    make_fs: MakeFs,
) -> None:
    fs = make_fs()
    await fs.cron.aadd("report", "*/5 * * * *", Nightly, args={"kind": "daily"})
    await fs.cron.aadd("quiet", "*/5 * * * *", Nightly, paused=True)
    await fire(fs, TICK)
    assert await ticks(fs) == [("report", "2025-01-15T10:05:00+00:00")]
    [job] = await fs.alist_jobs(worker=Nightly.name)
    assert job.args == {"kind": "daily"}
    await fs.cron.apause("report")
    await fs.cron.aresume("quiet")
    await fire(fs, NEXT)
    assert await ticks(fs) == [
        ("quiet", "2025-01-15T10:10:00+00:00"),
        ("report", "2025-01-15T10:05:00+00:00"),
    ]


@pytest.mark.anyio
async def test_an_entry_in_code_wins_over_a_stored_one_of_its_name(make_fs: MakeFs) -> None:
    fs = make_fs()
    await fs.cron.aadd(Nightly.name, "*/5 * * * *", Nightly, args={"from": "database"})
    code = [CronEntry("*/5 * * * *", Nightly, {"from": "code"})]
    await fire(fs, TICK, code)
    jobs = await fs.alist_jobs(worker=Nightly.name)
    assert [job.args for job in jobs] == [{"from": "code"}]


def test_the_api_validates_and_updates(flowstone: FlowStone) -> None:
    entry = flowstone.cron.add("every-hour", "0 * * * *", Nightly, timezone="Europe/Paris")
    assert (entry.worker, entry.timezone, entry.paused, entry.args) == (
        Nightly.name,
        "Europe/Paris",
        False,
        {},
    )
    changed = flowstone.cron.update("every-hour", expression="30 * * * *", args={"n": 1})
    assert (changed.expression, changed.args, changed.timezone) == ("30 * * * *", {"n": 1}, "Europe/Paris")
    assert flowstone.cron.pause("every-hour").paused and not flowstone.cron.resume("every-hour").paused
    assert [e.name for e in flowstone.cron.list()] == ["every-hour"]
    cases = [
        (lambda: flowstone.cron.add("every-hour", "0 * * * *", Nightly), "exists already"),
        (lambda: flowstone.cron.add("bad", "61 * * * *", Nightly), "not a valid 5-field expression"),
        (
            lambda: flowstone.cron.add("tz", "0 * * * *", Nightly, timezone="Mars/Base"),
            "not a known time zone",
        ),
        (lambda: flowstone.cron.add("who", "0 * * * *", "no.such.Worker"), "is not registered"),
        (lambda: flowstone.cron.update("missing", paused=True), "no cron entry named 'missing'"),
        (lambda: flowstone.cron.update("every-hour", expression="nope"), "not a valid"),
    ]
    for call, message in cases:
        with pytest.raises(ValidationError, match=message):
            call()
    with pytest.raises(TypeError, match="unknown cron entry field"):
        flowstone.cron.update("every-hour", schedule="0 * * * *")
    assert flowstone.cron.delete("every-hour") and not flowstone.cron.delete("every-hour")
