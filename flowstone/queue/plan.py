"""Sans-IO database plans: the logic is written once, sync and async drivers run it.

A plan is a generator that yields `(query, params)` and receives the rows (dicts) each
statement returned; its return value is the plan's result. `run` drives a plan on a
psycopg `Connection`, `arun` on an `AsyncConnection` — the only places that touch I/O.
`arun_together` sends several one-statement plans in one round trip.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

T = TypeVar("T")
Row = dict[str, Any]
Step = tuple[str, Mapping[str, Any]]
Plan = Generator[Step, list[Row], T]


def run(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run `plan` on a sync connection (inside whatever transaction the caller has)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return run_on(cursor, plan)


def run_on(cursor: psycopg.Cursor[Row], plan: Plan[T]) -> T:
    """Run `plan` through `cursor` (one whose rows are dicts)."""
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
        return await arun_on(cursor, plan)


async def arun_on(cursor: psycopg.AsyncCursor[Row], plan: Plan[T]) -> T:
    """Async twin of `run_on`."""
    try:
        query, params = next(plan)
        while True:
            await cursor.execute(query, params)
            rows = await cursor.fetchall() if cursor.description is not None else []
            query, params = plan.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result


async def arun_together(conn: psycopg.AsyncConnection[Any], plans: Sequence[Plan[Any]]) -> list[Any]:
    """Run one-statement plans in a single round trip (a psycopg pipeline) and return their
    results in order. The statements share one transaction: on an autocommit connection
    they commit together, once, and an error in one rolls back all of them."""
    steps = [next(plan) for plan in plans]
    cursors = [conn.cursor(row_factory=dict_row) for _ in steps]
    async with conn.pipeline():
        for cursor, (query, params) in zip(cursors, steps, strict=True):
            await cursor.execute(query, params)
    return [
        _finish(plan, await cursor.fetchall() if cursor.description is not None else [])
        for plan, cursor in zip(plans, cursors, strict=True)
    ]


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
