"""The tail's reads (insights/tail.py): what a notice brings, the filters, and a
transaction that commits after a later one was read."""

from __future__ import annotations

import psycopg
import pytest

from flowstone import FlowStone, Worker
from flowstone.insights.tail import TailFilter, changes_plan, start_plan

QUEUE = "tail"


class Ok(Worker):
    queue = QUEUE

    def perform(self, job):
        return None


def changes(fs: FlowStone, cursor, where: TailFilter | None = None) -> list[tuple[str, str, int]]:
    events = fs.execute(changes_plan(fs, cursor, where or TailFilter()))
    return [(event.kind, event.event, event.job.id) for event in events]


def test_inserts_and_ends_show_once(flowstone):
    old = flowstone.insert(Ok.new())
    cursor = flowstone.execute(start_plan(flowstone))
    now = flowstone.insert(Ok.new())
    later = flowstone.insert(Ok.new(scheduled_in=60))
    assert changes(flowstone, cursor) == [
        ("inserted", "available", now.id),
        ("inserted", "scheduled", later.id),
    ]
    flowstone.cancel_job(old.id)
    assert changes(flowstone, cursor) == [("ended", "cancelled", old.id)]
    assert changes(flowstone, cursor) == [], "nothing is shown twice"


def test_filters(flowstone):
    cursor = flowstone.execute(start_plan(flowstone))
    here = flowstone.insert(Ok.new())
    flowstone.insert(Ok.new(queue="other"))
    flowstone.cancel_job(here.id)
    assert changes(flowstone, cursor, TailFilter(queue=QUEUE, state="cancelled")) == [
        ("ended", "cancelled", here.id)
    ]
    with pytest.raises(ValueError, match="tail state must be one of"):
        TailFilter(state="executing")


def test_a_transaction_committing_late_is_still_shown(flowstone, flowstone_url):
    cursor = flowstone.execute(start_plan(flowstone))
    with psycopg.connect(flowstone_url) as slow:
        early = flowstone.insert(Ok.new(), conn=slow)  # its id comes first, its commit last
        late = flowstone.insert(Ok.new())
        assert changes(flowstone, cursor) == [("inserted", "available", late.id)]
        slow.commit()
    assert changes(flowstone, cursor) == [("inserted", "available", early.id)]
