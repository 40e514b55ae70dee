"""Sans-IO database plans: the logic is written once, sync and async drivers run it.

A plan is a generator that yields `(query, params)` and receives the rows (dicts) each
statement returned; its return value is the plan's result. `run` drives a plan on a
psycopg `Connection`, `arun` on an `AsyncConnection` — the only places that touch I/O.
`run_together` sends several one-statement plans in one round trip.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

T = TypeVar("T")
Row = dict[str, Any]
Step = tuple[str, Mapping[str, Any]]
Plan = Generator[Step, list[Row], T]


def run(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run `plan` on a sync connection (inside whatever transaction the caller has)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        try:
            query, params = next(plan)
            while True:
                cursor.execute(query, params)
                rows = cursor.fetchall() if cursor.description is not None else []
                query, params = plan.send(rows)
        except StopIteration as done:
            result: T = done.value
            return result


async def arun(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run `plan` on an async connection (inside whatever transaction the caller has)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        try:
            query, params = next(plan)
            while True:
                await cursor.execute(query, params)
                rows = await cursor.fetchall() if cursor.description is not None else []
                query, params = plan.send(rows)
        except StopIteration as done:
            result: T = done.value
            return result


def run_together(
    conn: psycopg.Connection[Any], plans: Sequence[Plan[Any]], *, relaxed: Sequence[Plan[Any]] = ()
) -> list[Any]:
    """Run one-statement plans in a single round trip (a psycopg pipeline) and return their
    results in order, `plans`' then `relaxed`'s.

    `plans` commit together, durably, and an error in one rolls back all of them. The
    `relaxed` plans then run in a second transaction whose commit does not wait for the
    WAL flush: for what a server crash may lose — a notification, a lock release, or a
    write that a later durable commit flushes (the WAL is flushed in order). It also keeps
    a transaction that NOTIFYs from holding Postgres's queue-wide notify lock during a
    flush, which would serialize every notifying commit."""
    together = _Together(plans, relaxed)
    cursors = [conn.cursor(row_factory=dict_row) for _ in together.script]
    try:
        with conn.pipeline():
            for cursor, (query, params) in zip(cursors, together.script, strict=True):
                cursor.execute(query, params)
    except BaseException:
        if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()  # the explicit transaction failed: leave the connection usable
        raise
    return together.results(
        [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
    )


async def arun_together(
    conn: psycopg.AsyncConnection[Any], plans: Sequence[Plan[Any]], *, relaxed: Sequence[Plan[Any]] = ()
) -> list[Any]:
    """Async twin of `run_together`."""
    together = _Together(plans, relaxed)
    cursors = [conn.cursor(row_factory=dict_row) for _ in together.script]
    try:
        async with conn.pipeline():
            for cursor, (query, params) in zip(cursors, together.script, strict=True):
                await cursor.execute(query, params)
    except BaseException:
        if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        raise
    return together.results(
        [await cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
    )


_NO_FLUSH_WAIT = "SELECT set_config('synchronous_commit', 'off', true)"


class _Together:
    """The statements `run_together` sends, and how their results go back to the plans."""

    def __init__(self, plans: Sequence[Plan[Any]], relaxed: Sequence[Plan[Any]]) -> None:
        self.plans = [*plans, *relaxed]
        durable = [next(plan) for plan in plans]
        loose = [next(plan) for plan in relaxed]
        self.script: list[tuple[str, Mapping[str, Any] | None]] = [*durable]
        self.answering = list(range(len(durable)))
        if durable and loose:
            self.script = [("BEGIN", None), *durable, ("COMMIT", None)]
            self.answering = [i + 1 for i in self.answering]
        if loose:
            self.script.append((_NO_FLUSH_WAIT, None))
            self.answering += range(len(self.script), len(self.script) + len(loose))
            self.script += loose

    def results(self, rows: Sequence[list[Row]]) -> list[Any]:
        """Each plan's result, given the rows of every statement sent."""
        return [_finish(plan, rows[i]) for plan, i in zip(self.plans, self.answering, strict=True)]


def _finish(plan: Plan[T], rows: list[Row]) -> T:
    """Send a one-statement plan its rows and return its result."""
    try:
        plan.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result
    raise RuntimeError("a plan run together with others must be one statement")


def single(query: str, params: Mapping[str, Any]) -> Plan[list[Row]]:
    """A plan of one statement returning its rows."""
    rows = yield query, params
    return rows
