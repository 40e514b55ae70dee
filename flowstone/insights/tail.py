"""Following jobs as they are inserted and end (`flowstone jobs tail`).

Woken by `<schema>.tail` (per insert statement and queue, carrying the queue; per
statement setting jobs' state, carrying nothing, so that acks stay cheap), the follower
reads what changed since its cursor: rows inserted after an id, rows that ended after a
time (of the database's clock), through indexes; no loop polls the table. A transaction
that commits after a later one has been read is caught by reading again
`OVERLAP` seconds back; what was already shown is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from flowstone.errors import ValidationError
from flowstone.queue.instance import FlowStone
from flowstone.queue.job import Job
from flowstone.queue.plan import Plan, Row

OVERLAP = timedelta(seconds=2)
"""How far back each read looks again for rows of transactions that committed late."""
PAGE = 1000
"""Inserted rows read per statement (a burst is read in pages)."""
EVENTS = ("available", "scheduled", "completed", "discarded", "cancelled")
"""What `state` may filter on: the state a job was inserted in, or the state it ended in."""


@dataclass(frozen=True)
class TailFilter:
    """Which jobs to follow: by queue, worker, and the state the event put them in."""

    queue: str | None = None
    worker: str | None = None
    state: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in EVENTS:
            raise ValidationError(f"tail state must be one of {', '.join(EVENTS)}; got {self.state!r}")

    def params(self) -> dict[str, Any]:
        return {"queue": self.queue, "worker": self.worker, "state": self.state}


@dataclass(frozen=True)
class TailEvent:
    """A job inserted (`event` is the state it was inserted in) or ended (its end state)."""

    kind: str
    event: str
    at: datetime
    job: Job

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "event": self.event, "at": self.at, "job": self.job.to_dict()}


@dataclass
class Cursor:
    """Where the follower is: ids and end times already shown, and how far back to read."""

    after_id: int
    since: datetime
    shown: dict[tuple[int, str], datetime] = field(default_factory=dict)
    marks: list[tuple[datetime, int]] = field(default_factory=list)

    def fresh(self, row: Row, kind: str) -> bool:
        """Whether the row's event was not shown yet (and remember it)."""
        key = (row["id"], kind)
        if key in self.shown:
            return False
        self.shown[key] = row["at"]
        return True

    def advance(self, now: datetime, max_id: int) -> None:
        """Move the cursor to `now` less the overlap, forgetting what it no longer reads."""
        self.marks.append((now, max_id))
        floor = now - OVERLAP
        while len(self.marks) > 1 and self.marks[1][0] <= floor:
            self.marks.pop(0)
        if self.marks[0][0] <= floor:
            self.after_id = max(self.after_id, self.marks[0][1])
        self.since = max(self.since, floor)
        self.shown = {key: at for key, at in self.shown.items() if at >= floor - OVERLAP}


def start_plan(fs: FlowStone) -> Plan[Cursor]:
    """A cursor at the newest job and the database's now: only what happens next shows."""
    rows = yield fs.queries.tail_start, {}
    return Cursor(rows[0]["max_id"], rows[0]["at"], marks=[(rows[0]["at"], rows[0]["max_id"])])


def changes_plan(fs: FlowStone, cursor: Cursor, where: TailFilter) -> Plan[list[TailEvent]]:
    """The events since the cursor (inserts first, then ends, each in order); moves it on.
    One transaction: its now() is the time the cursor moves to."""
    clock = yield fs.queries.tail_start, {}
    now, after, max_id = clock[0]["at"], cursor.after_id, cursor.after_id
    events: list[TailEvent] = []
    while True:
        rows = yield fs.queries.tail_inserted, {**where.params(), "after": after, "limit": PAGE}
        for row in rows:
            after, max_id = row["id"], max(max_id, row["id"])
            if (where.state is None or row["event"] == where.state) and cursor.fresh(row, "inserted"):
                events.append(_event("inserted", row))
        if len(rows) < PAGE:
            break
    ended = yield fs.queries.tail_ended, {**where.params(), "since": cursor.since}
    for row in sorted(ended, key=lambda r: (r[f"{r['event']}_at"], r["id"])):
        if cursor.fresh(row, row["event"]):
            events.append(_event("ended", row))
    cursor.advance(now, max_id)
    return events


def _event(kind: str, row: Row) -> TailEvent:
    job = Job.from_row({key: value for key, value in row.items() if key not in ("at", "event")})
    at: datetime = row["inserted_at"] if kind == "inserted" else row[f"{row['event']}_at"]
    return TailEvent(kind, row["event"], at, job)


def follow(fs: FlowStone, where: TailFilter, ready: Callable[[], None] = lambda: None) -> Iterator[TailEvent]:
    """Events as they happen, woken by notifications (or every `poll_interval` where none
    can come: behind a transaction pooler without `direct_url`), until the caller stops;
    `ready` is called once listening (what happens from then on shows)."""
    with fs.connect(direct=True, autocommit=True) as conn:
        if fs.sessions:
            conn.execute(fs.queries.listen_tail)
        cursor = fs.execute(start_plan(fs), conn)
        ready()
        while True:
            _wait(conn, where.queue, fs.poll_notices)
            yield from fs.execute(changes_plan(fs, cursor, where), conn)


def _wait(conn: psycopg.Connection[Any], queue: str | None, poll: float | None) -> None:
    """Return after a notification about `queue` (any queue when None) or a change of
    state (an empty payload: any queue), having consumed those already queued, so that
    one read covers them all."""
    for notify in conn.notifies(timeout=poll):
        if queue is None or notify.payload in (queue, ""):
            break
    for _ in conn.notifies(timeout=0):
        pass


__all__ = ["EVENTS", "TailEvent", "TailFilter", "follow"]
