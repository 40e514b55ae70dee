"""The claim floor (flowstone.queue.floor): its bookkeeping, the notifications that lower
it, and a property: whatever the interleaving of claims and jobs becoming available, no
available job is left below the floor once its notification is in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import given, settings, strategies as st

from flowstone import FlowStone, Worker
from flowstone.queue import floor as floor_module
from flowstone.queue.engine import claim_plan
from flowstone.queue.floor import BOTTOM, Floor, Key, parse_notification

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Plain(Worker):
    queue = "floor"

    def perform(self, job: object) -> None:
        return None


def key(priority: int, second: int, job_id: int) -> Key:
    return (priority, T0 + timedelta(seconds=second), job_id)


def test_a_claim_moves_the_floor_up_to_the_last_key_it_claimed() -> None:
    floor = Floor(enabled=True)
    assert floor.claiming() == BOTTOM
    floor.claimed(key(3, 5, 10))
    assert floor.claiming() == key(3, 5, 10)
    floor.claimed(None)
    assert floor.key == key(3, 5, 10), "a claim of nothing keeps the floor"


def test_a_lowering_during_a_claim_survives_the_claim() -> None:
    floor = Floor(enabled=True)
    floor.claimed(key(3, 5, 10))
    floor.claiming()
    floor.lower(key(0, 1, 11))  # committed after the claim's snapshot
    floor.claimed(key(4, 0, 12))
    assert floor.key == key(0, 1, 11)


def test_without_notifications_there_is_no_floor() -> None:
    floor = Floor(enabled=False)
    floor.claimed(key(3, 5, 10))
    assert floor.claiming() == BOTTOM


def test_an_audit_looks_below_the_floor_and_claims_keep_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(floor_module, "AUDIT", 0.0)
    floor = Floor(enabled=True)
    floor.claimed(key(3, 5, 10))
    assert floor.claiming() == key(3, 5, 10), "the claim is never sent to the head by the clock"
    assert floor.audit_due() == (key(3, 5, 10), BOTTOM), "the audit looks below the floor, off the claim"


def test_an_audit_looks_down_to_where_the_claims_of_the_last_margin_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claim skips a locked job at or above the key it started at: the audit looks down
    to the lowest start of at least the last AUDIT_MARGIN seconds, and to the head only
    every AUDIT_FULL_EVERY seconds."""
    clock = [1000.0]
    monkeypatch.setattr(floor_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(floor_module, "AUDIT", 0.0)
    floor = Floor(enabled=True)
    for second, at in ((10, 0.0), (20, 30.0), (30, 70.0), (40, 100.0), (50, 140.0)):
        clock[0] = 1000.0 + at
        floor.claimed(key(0, second, second))
        floor.claiming()
    # periods of at least 60 s: from 1000 claims started at BOTTOM, 10, 20; from 1070 at 30
    # and 40; from 1140 at 50
    clock[0] = 1145.0
    assert floor.audit_due() == (key(0, 50, 50), key(0, 30, 30)), "the starts since 1070 count"
    clock[0] = 1000.0 + floor_module.AUDIT_FULL_EVERY
    assert floor.audit_due() == (key(0, 50, 50), BOTTOM), "a full audit looks down to the head"
    clock[0] += 1
    assert floor.audit_due() == (key(0, 50, 50), key(0, 30, 30)), "and the next is bounded again"


def test_no_audit_before_its_time_at_the_bottom_or_without_a_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    floor = Floor(enabled=True)
    floor.claimed(key(3, 5, 10))
    assert floor.audit_due() is None, "not due yet"
    monkeypatch.setattr(floor_module, "AUDIT", 0.0)
    floor.drop()
    assert floor.audit_due() is None, "nothing lies below the bottom"
    assert Floor(enabled=False).audit_due() is None


@pytest.mark.parametrize(
    "payload",
    [
        "floor",  # a bare queue name: an older trigger, or a NOTIFY by hand
        '{"queue": "floor", "priority": 1, "at": "infinity", "id": 3}',
        '{"queue": "floor", "priority": 1, "at": "2026-01-01T00:00:00", "id": 3}',  # no offset
        '{"queue": "floor"}',
    ],
)
def test_a_payload_without_a_readable_key_drops_the_floor(payload: str) -> None:
    assert parse_notification(payload) == ("floor", BOTTOM)


def test_a_payload_with_a_key() -> None:
    payload = '{"queue": "floor", "priority": 1, "at": "2026-01-01T01:00:00.5+01:00", "id": 3}'
    assert parse_notification(payload) == ("floor", (1, T0 + timedelta(seconds=0.5), 3))


@pytest.fixture
def listener(flowstone: FlowStone, flowstone_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute('LISTEN "flowstone.jobs"')
        yield conn


def notified(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, Key]]:
    return [parse_notification(n.payload) for n in conn.notifies(timeout=1.0, stop_after=1)] + [
        parse_notification(n.payload) for n in conn.notifies(timeout=0.2)
    ]


def test_an_insert_notifies_the_lowest_key_it_made_available(
    flowstone: FlowStone, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    jobs = flowstone.insert_all(
        [Plain.new(priority=5), Plain.new(priority=2, scheduled_at=past), Plain.new(priority=2)]
    )
    assert notified(listener) == [("floor", (2, past, jobs[1].id))]


def test_an_update_that_leaves_a_job_available_notifies_its_key_rounded_down(
    flowstone: FlowStone, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    job = flowstone.insert(Plain.new(priority=4, scheduled_in=3600))
    assert notified(listener) == []  # scheduled: nothing to claim
    flowstone.retry_job(job.id)
    [(queue, (priority, at, job_id))] = notified(listener)
    current = flowstone.get_job(job.id)
    assert current is not None
    assert (queue, priority, job_id) == ("floor", 4, 0)
    assert at == current.scheduled_at.replace(microsecond=0)
    with flowstone.connection() as conn:  # an available job locked (and updated) by another statement
        conn.execute("UPDATE flowstone.jobs SET meta = meta || '{\"x\": 1}' WHERE id = %s", (job.id,))
    assert [queue for queue, _ in notified(listener)] == ["floor"]


def test_a_claim_starts_at_its_floor(flowstone: FlowStone) -> None:
    jobs = flowstone.insert_all([Plain.new(priority=p) for p in (1, 2, 3)])
    at = (jobs[1].priority, jobs[1].scheduled_at, jobs[1].id)
    claimed = flowstone.database.execute(
        claim_plan(flowstone.database.statements.jobs, "floor", 10, "n", floor=at)
    )
    assert [job.id for job in claimed] == [jobs[1].id, jobs[2].id], "inclusive of the floor's key"


keys = st.tuples(st.integers(0, 9), st.integers(0, 50))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), keys),  # committed and notified
        st.tuples(st.just("quiet"), keys),  # committed, its notification still on the way
        st.tuples(st.just("deliver")),
        st.tuples(st.just("claim"), st.integers(1, 4), st.lists(keys, max_size=3)),  # + inserts meanwhile
    ),
    max_size=40,
)


@given(operations)
@settings(max_examples=300, deadline=None)
def test_no_available_job_is_left_below_the_floor(ops: list[tuple[object, ...]]) -> None:
    floor = Floor(enabled=True)
    available: set[Key] = set()
    pending: list[Key] = []
    ids = iter(range(1, 10_000))

    def new(priority_second: object) -> Key:
        priority, second = priority_second  # type: ignore[misc]
        made = key(priority, second, next(ids))
        available.add(made)
        return made

    for op in ops:
        if op[0] == "insert":
            floor.lower(new(op[1]))
        elif op[0] == "quiet":
            pending.append(new(op[1]))
        elif op[0] == "deliver":
            for made in pending:
                floor.lower(made)
            pending.clear()
        else:
            start = floor.claiming()
            picked = sorted(k for k in available if k >= start)[: op[1]]  # type: ignore[misc]
            for meanwhile in op[2]:  # type: ignore[attr-defined]
                floor.lower(new(meanwhile))
            available.difference_update(picked)
            floor.claimed(picked[-1] if picked else None)
        assert all(k >= floor.key for k in available if k not in pending)


def test_the_payload_is_json(flowstone: FlowStone, listener: psycopg.Connection[tuple[object, ...]]) -> None:
    flowstone.insert(Plain.new(priority=1))
    [n] = list(listener.notifies(timeout=1.0, stop_after=1))
    assert set(json.loads(n.payload)) == {"queue", "priority", "at", "id"}
