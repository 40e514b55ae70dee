"""Sans-IO database plans: the logic is written once, sync and async drivers run it.

A plan is a generator that yields `(query, params)` and receives the rows (dicts) each
statement returned; its return value is the plan's result. `run` drives a plan on a
psycopg `Connection`, `arun` on an `AsyncConnection` — the only places that touch I/O.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
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


def single(query: str, params: Mapping[str, Any]) -> Plan[list[Row]]:
    """A plan of one statement returning its rows."""
    rows = yield query, params
    return rows
