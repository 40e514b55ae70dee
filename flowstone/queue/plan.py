"""Sans-IO database plans: the logic is written once, sync and async drivers run it.

A plan is a generator that yields steps and receives rows (dicts) for each; its return
value is the plan's result. A step is a statement `(query, params)`, answered with the
rows it returned, or one of the waits and boundaries a flow needs between statements:

- `WaitNotice(timeout)`: wait for notifications (of the channels the connection LISTENs
  on, through an ordinary `LISTEN` statement) — the first, and those already queued
  behind it — or `timeout` seconds; answered with `{"channel", "payload"}` rows. Only
  outside a transaction, where notifications are delivered.
- `Atomic(plan)`: run `plan` in a transaction of its own (a savepoint within one), so one
  plan outside a transaction can commit step by step (`atomic` unwraps its result).
- `Report(value)`: hand `value` to the caller on the way (`stream` / `astream` yield it).

`run` drives a plan on a psycopg `Connection`, `arun` on an `AsyncConnection`, `stream`
and `astream` a plan that reports — the only places that touch I/O or sleep.
`arun_together` sends several one-statement plans in one round trip.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import dict_row

T = TypeVar("T")
Row = dict[str, Any]
Statement = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class WaitNotice:
    """Wait at most `timeout` seconds (None: without limit) for notifications."""

    timeout: float | None


@dataclass(frozen=True, slots=True)
class Atomic:
    """Run `plan` in a transaction of its own; its result comes back as the row `{"result": …}`."""

    plan: Generator[Any, list[Row], Any]


@dataclass(frozen=True, slots=True)
class Report:
    """A value for the caller of `stream` / `astream`, handed over before the plan goes on."""

    value: Any


Step = Statement | WaitNotice | Atomic | Report
Plan = Generator[Step, list[Row], T]


class WaitInTransactionError(RuntimeError):
    """A plan waited for notifications inside a transaction, where none are delivered."""


def atomic(plan: Plan[T]) -> Plan[T]:
    """`plan` in a transaction of its own, within a plan that runs outside one."""
    rows = yield Atomic(plan)
    result: T = rows[0]["result"]
    return result


def notice_plan(wanted: Callable[[str], bool], timeout: float | None) -> Plan[bool]:
    """Wait until a notification whose payload is `wanted` arrives (True) or `timeout`
    seconds passed (False); the other notifications are consumed on the way."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        rows = yield WaitNotice(left)
        if any(wanted(row["payload"]) for row in rows):
            return True


def run(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run `plan` on a sync connection (inside whatever transaction the caller has)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return run_on(cursor, plan)


def run_on(cursor: psycopg.Cursor[Row], plan: Plan[T]) -> T:
    """Run `plan` through `cursor` (one whose rows are dicts)."""
    try:
        step = next(plan)
        while True:
            step = plan.send(_perform(cursor, step))
    except StopIteration as done:
        result: T = done.value
        return result


def stream(conn: psycopg.Connection[Any], plan: Plan[None]) -> Iterator[Any]:
    """Run a plan that reports values on the way on a sync connection, yielding them."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows: list[Row] | None = None
        while (step := _advance(plan, rows)) is not None:
            if isinstance(step, Report):
                yield step.value
            rows = [] if isinstance(step, Report) else _perform(cursor, step)


def _advance(plan: Plan[None], rows: list[Row] | None) -> Step | None:
    """The plan's next step once it has `rows` (None: its first step); None when it ended."""
    try:
        return next(plan) if rows is None else plan.send(rows)
    except StopIteration:
        return None


def _perform(cursor: psycopg.Cursor[Row], step: Step) -> list[Row]:
    """Carry out one step; the rows that answer it."""
    if isinstance(step, WaitNotice):
        return _notices(cursor.connection, step.timeout)
    if isinstance(step, Atomic):
        with cursor.connection.transaction():
            return [{"result": run_on(cursor, step.plan)}]
    query, params = _statement(step)
    cursor.execute(query, params)
    return cursor.fetchall() if _has_rows(cursor) else []


def _notices(conn: psycopg.Connection[Any], timeout: float | None) -> list[Row]:
    """The first notification within `timeout` and those queued behind it."""
    _check_idle(conn)
    found = [_notice(notify) for notify in conn.notifies(timeout=timeout, stop_after=1)]
    if found:
        found += [_notice(notify) for notify in conn.notifies(timeout=0)]
    return found


async def arun(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run `plan` on an async connection (inside whatever transaction the caller has)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        return await arun_on(cursor, plan)


async def arun_on(cursor: psycopg.AsyncCursor[Row], plan: Plan[T]) -> T:
    """Async twin of `run_on`."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await _aperform(cursor, step))
    except StopIteration as done:
        result: T = done.value
        return result


async def astream(conn: psycopg.AsyncConnection[Any], plan: Plan[None]) -> AsyncIterator[Any]:
    """Async twin of `stream`."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        rows: list[Row] | None = None
        while (step := _advance(plan, rows)) is not None:
            if isinstance(step, Report):
                yield step.value
            rows = [] if isinstance(step, Report) else await _aperform(cursor, step)


async def _aperform(cursor: psycopg.AsyncCursor[Row], step: Step) -> list[Row]:
    """Async twin of `_perform`."""
    if isinstance(step, WaitNotice):
        return await _anotices(cursor.connection, step.timeout)
    if isinstance(step, Atomic):
        async with cursor.connection.transaction():
            return [{"result": await arun_on(cursor, step.plan)}]
    query, params = _statement(step)
    await cursor.execute(query, params)
    return await cursor.fetchall() if _has_rows(cursor) else []


async def _anotices(conn: psycopg.AsyncConnection[Any], timeout: float | None) -> list[Row]:
    """Async twin of `_notices`."""
    _check_idle(conn)
    found = [_notice(notify) async for notify in conn.notifies(timeout=timeout, stop_after=1)]
    if found:
        found += [_notice(notify) async for notify in conn.notifies(timeout=0)]
    return found


def _check_idle(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Refuse to wait inside a transaction: its notifications would come only after it."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise WaitInTransactionError(
            "a plan waits for notifications inside a transaction, where none are delivered: "
            "run it outside one (atomic=False, on an autocommit connection)"
        )


def _notice(notify: psycopg.Notify) -> Row:
    return {"channel": notify.channel, "payload": notify.payload}


def _statement(step: Step) -> Statement:
    """`step` as a statement; any other step is a plan run by the wrong driver."""
    if isinstance(step, Report):
        raise TypeError("a plan that reports values runs through stream / astream")
    if not isinstance(step, tuple):
        raise TypeError(f"{type(step).__name__} is not a statement: this driver runs statements only")
    return step


async def arun_together(conn: psycopg.AsyncConnection[Any], plans: Sequence[Plan[Any]]) -> list[Any]:
    """Run one-statement plans in a single round trip (a psycopg pipeline) and return their
    results in order. The statements share one transaction: on an autocommit connection
    they commit together, once, and an error in one rolls back all of them."""
    steps = [_statement(next(plan)) for plan in plans]
    cursors = [conn.cursor(row_factory=dict_row) for _ in steps]
    async with conn.pipeline():
        for cursor, (query, params) in zip(cursors, steps, strict=True):
            await cursor.execute(query, params)
    return [
        _finish(plan, await cursor.fetchall() if _has_rows(cursor) else [])
        for plan, cursor in zip(plans, cursors, strict=True)
    ]


_ROW_STATUSES = frozenset({ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK})


def _has_rows(cursor: psycopg.Cursor[Row] | psycopg.AsyncCursor[Row]) -> bool:
    """Whether the cursor's result has rows to fetch: `cursor.description is not None`
    without building a `Column` per field, which cost more than the test on the hot path."""
    result = cursor.pgresult
    return result is not None and (result.nfields > 0 or result.status in _ROW_STATUSES)


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
