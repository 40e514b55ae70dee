"""A running producer claims from its floor, and no way a job becomes available below
the floor leaves it unclaimed: every test raises the floor above every job first, with
polling and the audit out of reach, so only the notification that lowers it can help."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import runtime_workers as w
from support import MakeFs, rows, wait_for, wait_for_job

from flowstone import FlowStone, Job, Snooze, Worker
from flowstone.queue import floor as floor_module
from flowstone.queue.floor import BOTTOM, Key
from flowstone.queue.runtime.node import Node
from flowstone.queue.runtime.producer import Producer

pytestmark = pytest.mark.anyio

TOP: Key = (10, datetime(9999, 1, 1, tzinfo=UTC), 2**63 - 1)
"""Above every job (priorities are 0 … 9)."""

QUIET = {"poll_interval": 3600.0}
"""No polling: a job below the floor runs only if something lowers the floor."""


@pytest.fixture(autouse=True)
def no_audit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The periodic audit out of reach (a test that wants it sets its own)."""
    monkeypatch.setattr(floor_module, "AUDIT", 3600.0)
    yield


class SnoozeLong(Worker):
    queue = w.QUEUE

    async def perform(self, job: Job) -> Snooze | None:
        return Snooze(1.0) if not job.meta.get("snoozed") else None


async def started(fs: FlowStone, **options: object) -> tuple[Node, Producer]:
    node = await fs.start({w.QUEUE: {"limit": 2, **options}})
    return node, node.producers[w.QUEUE]


async def raised(producer: Producer) -> None:
    """Raise the floor above every job once the producer is idle."""
    await wait_for(lambda: not producer.busy, 5, "an idle producer")
    producer.floor.key = TOP


async def test_the_floor_follows_the_claims(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs)
    job = await fs.ainsert(w.Echo.new(priority=7))
    await wait_for_job(fs, job.id, "completed")
    assert producer.floor.key == (7, job.scheduled_at, job.id)


async def test_an_insert_below_the_floor_is_claimed(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs)
    await raised(producer)
    job = await fs.ainsert(w.Echo.new(priority=0))
    await wait_for_job(fs, job.id, "completed")


async def test_a_job_scheduled_in_the_past_is_claimed_below_the_floor(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs)
    first = await fs.ainsert(w.Echo.new(priority=0))
    await wait_for_job(fs, first.id, "completed")
    assert producer.floor.key[1] == first.scheduled_at
    job = await fs.ainsert(w.Echo.new(priority=0, scheduled_at=first.scheduled_at - timedelta(hours=1)))
    await wait_for_job(fs, job.id, "completed")


async def test_a_staged_scheduled_job_is_claimed_below_the_floor(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs)
    job = await fs.ainsert(w.Echo.new(scheduled_in=0.5))
    await raised(producer)
    await wait_for_job(fs, job.id, "completed")


async def test_a_snoozed_job_is_claimed_below_the_floor(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs)
    job = await fs.ainsert(SnoozeLong.new())
    await wait_for_job(fs, job.id, "scheduled")
    await raised(producer)
    done = await wait_for_job(fs, job.id, "completed")
    assert done.meta["snoozed"] == 1


async def test_a_retried_job_is_claimed_below_the_floor(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs)
    job = await fs.ainsert(w.Echo.new(scheduled_in=3600))
    await raised(producer)
    await fs.aretry_job(job.id)
    await wait_for_job(fs, job.id, "completed")


async def test_a_rescued_orphan_is_claimed_below_the_floor(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs)
    await raised(producer)
    [orphan] = await rows(
        fs,
        """INSERT INTO flowstone.jobs (state, queue, worker, attempt, attempted_at, attempted_by)
           VALUES ('executing', %s, %s, 1, now() - interval '1 hour', ARRAY['gone', 'x']) RETURNING id""",
        (w.QUEUE, w.Echo.name),
    )
    done = await wait_for_job(fs, orphan["id"], "completed")
    assert "rescued by the lifeline" in done.errors[0]["error"]


async def test_a_job_a_claim_skipped_while_another_transaction_locked_it_is_claimed(
    make_fs: MakeFs,
) -> None:
    fs = make_fs(**QUIET)
    _, producer = await started(fs, paused=True)
    locked = await fs.ainsert(w.Echo.new(priority=0))
    later = await fs.ainsert(w.Echo.new(priority=5))
    async with fs.aconnection() as holder:
        await holder.execute("SELECT 1 FROM flowstone.jobs WHERE id = %s FOR UPDATE", (locked.id,))
        await holder.execute(
            "UPDATE flowstone.jobs SET meta = meta || '{\"seen\": 1}' WHERE id = %s", (locked.id,)
        )
        producer.pause(False)
        await wait_for_job(fs, later.id, "completed")
        assert producer.floor.key == (5, later.scheduled_at, later.id), "the claim skipped the locked job"
    # committed: the update of an available job announces it
    await wait_for_job(fs, locked.id, "completed")


async def test_a_job_locked_by_a_transaction_that_rolled_back_is_claimed_at_the_audit(
    make_fs: MakeFs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the margin: a bounded audit (down to where the recent claims started) finds
    it, locked or not (the audit takes no lock)."""
    monkeypatch.setattr(floor_module, "AUDIT", 0.5)
    monkeypatch.setattr(floor_module, "AUDIT_FULL_EVERY", 3600.0)
    fs = make_fs(poll_interval=0.2)
    _, producer = await started(fs, paused=True)
    locked = await skipped_while_locked(fs, producer)
    await wait_for_job(fs, locked.id, "completed")


async def test_a_lock_released_past_the_audit_margin_is_found_by_a_full_audit(
    make_fs: MakeFs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No audit ran while the lock was held and the claims of the margin all start above
    the job (an audit held up, say): the bounded audits look above it; the full audit,
    down to the head, finds it."""
    monkeypatch.setattr(floor_module, "AUDIT_MARGIN", 0.1)
    monkeypatch.setattr(floor_module, "AUDIT_FULL_EVERY", 3600.0)
    fs = make_fs(poll_interval=0.2)
    _, producer = await started(fs, paused=True)
    locked = await skipped_while_locked(fs, producer, past_margin=True)
    monkeypatch.setattr(floor_module, "AUDIT", 0.2)
    monkeypatch.setattr(floor_module, "AUDIT_FULL_EVERY", 1.0)
    await wait_for_job(fs, locked.id, "completed")


async def skipped_while_locked(fs: FlowStone, producer: Producer, past_margin: bool = False) -> Job:
    """A job locked by a transaction that rolls back once the producer has claimed past
    it (`past_margin`: once the claims of the audit's margin all started above it)."""
    locked = await fs.ainsert(w.Echo.new(priority=0))
    later = await fs.ainsert(w.Echo.new(priority=5))
    async with fs.asession() as holder, holder.transaction(force_rollback=True):
        await holder.execute("SELECT 1 FROM flowstone.jobs WHERE id = %s FOR UPDATE", (locked.id,))
        producer.pause(False)
        await wait_for_job(fs, later.id, "completed")
        if past_margin:
            mark = (locked.priority, locked.scheduled_at, locked.id)
            await wait_for(lambda: producer.floor.recent_start > mark, 5, "the margin past the lock")
    return locked


async def test_the_floor_drops_when_the_listener_reconnects(make_fs: MakeFs) -> None:
    fs = make_fs(**QUIET)
    node, producer = await started(fs)
    await raised(producer)
    node._on_connect()
    assert producer.floor.key == BOTTOM
