"""Batched bookkeeping of the materializations running on one event loop.

Each materialization makes two requests. `begin`: take its partition's lock, mark its
record running, read the partition's last finished record and its dependencies'
records. `end`: record what happened, wake the jobs waiting on it, announce it, release
the lock. Requests that arrive while a batch is in flight go together in the next one —
one round trip of a few statements however many materializations it serves, as the
queue's producer batches claims and acknowledgements. One connection holds the
partition locks of all of them: session advisory locks, which Postgres releases should
the process die.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg

from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import (
    Finish,
    Materialization,
    dependencies_plan,
    finish_and_wake_plan,
    lock_key,
    locked_start_plan,
    set_pending_plan,
    unlock_plan,
)
from flowstone.errors import FlowStoneError
from flowstone.queue.instance import FlowStone
from flowstone.queue.plan import Plan, Row, arun, arun_together
from flowstone.queue.pool import GENERIC_PLANS, IDLE_PING_AFTER


@dataclass(frozen=True)
class Begin:
    """A materialization about to start: its job's record and where its inputs are."""

    asset: str
    partition: str | None
    run_id: str
    job_id: int | None
    attempt: int
    upstream: list[tuple[str, str | None]]

    def key(self, schema: str) -> str:
        """Its partition's lock key."""
        return lock_key(schema, self.asset, self.partition)

    def start(self) -> dict[str, Any]:
        """The record fields `locked_start_plan` asks for."""
        return {
            "asset": self.asset,
            "partition": self.partition,
            "run_id": self.run_id,
            "job_id": self.job_id,
            "attempt": self.attempt,
        }


@dataclass(frozen=True)
class Begun:
    """The answer to `begin`: whether the lock was taken, the running record (None when
    the job already finished it), the status of the partition's last success or failure,
    the dependencies' rows."""

    locked: bool
    record: Materialization | None = None
    last_status: str | None = None
    upstream: list[Row] = field(default_factory=list)


BUSY = Begun(locked=False)


@dataclass
class End:
    """What a materialization leaves behind: a finished record or a pending one (or
    neither), the args patterns of the jobs to wake, and the lock to release."""

    key: str
    finish: Finish | None = None
    pending: tuple[int, FlowStoneError] | None = None
    wake: list[dict[str, Any]] = field(default_factory=list)


class Bookkeeper:
    """Runs the begin/end requests of one event loop's materializations in batches."""

    def __init__(self, fs: FlowStone, worker: str) -> None:
        self.fs = fs
        self.worker = worker
        self.q = MaterializationQueries.for_schema(fs.schema)
        self.held: set[str] = set()
        self._queue: list[tuple[Begin | End, asyncio.Future[Any]]] = []
        self._ready = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._used = 0.0
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="flowstone asset bookkeeping")

    async def begin(self, request: Begin) -> Begun:
        """Lock, start and read for one materialization (BUSY if its partition is locked)."""
        begun: Begun = await self._submit(request)
        return begun

    async def end(self, request: End) -> None:
        """Record, wake, announce and unlock for one materialization."""
        await self._submit(request)

    async def _submit(self, request: Begin | End) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._ready.set()
        with anyio.CancelScope(shield=True):  # a batch in flight is answered, not dropped
            return await future

    async def _run(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                batch, self._queue = self._queue, []
                await self._settle(batch)
        finally:  # the loop is closing
            if self._conn is not None:
                await self._conn.close()

    async def _settle(self, batch: list[tuple[Begin | End, asyncio.Future[Any]]]) -> None:
        try:
            conn = await self._connection()
        except Exception as error:  # the server is unreachable: so are the locks
            for _, future in batch:
                _fail(future, error)
            return
        ends = [(request, future) for request, future in batch if isinstance(request, End)]
        released = [request.key for request, _ in ends]
        self.held.difference_update(released)
        asked: list[tuple[Begin, asyncio.Future[Any]]] = []
        for request, future in batch:
            if not isinstance(request, Begin):
                continue
            key = request.key(self.fs.schema)
            if key in self.held:  # another materialization of this process has it
                _answer(future, BUSY)
                continue
            self.held.add(key)
            asked.append((request, future))
        try:
            begun = await self._execute(conn, [end for end, _ in ends], [begin for begin, _ in asked])
        except Exception as error:
            await self._recover([*released, *(begin.key(self.fs.schema) for begin, _ in asked)])
            for _, future in [*ends, *asked]:
                _fail(future, error)
            return
        for _, future in ends:
            _answer(future, None)
        for (request, future), answer in zip(asked, begun, strict=True):
            if not answer.locked:
                self.held.discard(request.key(self.fs.schema))
            _answer(future, answer)

    async def _execute(
        self, conn: psycopg.AsyncConnection[Any], ends: list[End], begins: list[Begin]
    ) -> list[Begun]:
        """One round trip, one transaction: the ends' records, wake-ups, pending marks and
        unlocks, then the begins' locks, running marks and reads."""
        finishes = [end.finish for end in ends if end.finish is not None]
        pending = [end.pending for end in ends if end.pending is not None]
        wake = [pattern for end in ends for pattern in end.wake]
        plans: list[Plan[Any]] = []
        if finishes or wake:
            plans.append(finish_and_wake_plan(self.q, finishes, self.worker, wake))
        if pending:
            plans.append(set_pending_plan(self.q, pending))
        if ends:
            plans.append(unlock_plan(self.q, [end.key for end in ends]))
        deps = [(n, *where) for n, begin in enumerate(begins) for where in begin.upstream]
        if begins:
            plans.append(locked_start_plan(self.q, [begin.start() for begin in begins]))
        if deps:  # source assets have none to read
            plans.append(dependencies_plan(self.q, deps))
        results = await arun_together(conn, plans)
        if not begins:
            return []
        rows = results.pop() if deps else []
        started = results[-1]
        upstream: list[list[Row]] = [[] for _ in begins]
        for row in rows:
            upstream[row["request"]].append(row)
        return [
            Begun(locked, record, last_status, deps_rows)
            for (locked, record, last_status), deps_rows in zip(started, upstream, strict=True)
        ]

    async def _recover(self, keys: list[str]) -> None:
        """After a failed batch, release the locks it may have taken or kept; a lost
        connection has released every lock already."""
        self.held.difference_update(keys)
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            self.held.clear()
            return
        with suppress(psycopg.Error):
            await arun(conn, unlock_plan(self.q, keys))

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """The lock-holding connection; checked after a rest, replaced when broken (its
        locks went with it)."""
        conn = self._conn
        if conn is not None and not conn.closed and time.monotonic() - self._used > IDLE_PING_AFTER:
            with suppress(psycopg.OperationalError):
                await conn.execute("")
        if conn is None or conn.closed or conn.broken:
            self.held.clear()
            conn = self._conn = await self.fs.aconnect(autocommit=True, options=GENERIC_PLANS)
        self._used = time.monotonic()
        return conn


def _answer(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


_bookkeepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[FlowStone, Bookkeeper]] = (
    weakref.WeakKeyDictionary()
)


def bookkeeper(fs: FlowStone, worker: str) -> Bookkeeper:
    """The running event loop's bookkeeper for `fs`, whose wake-ups target `worker`."""
    per_loop = _bookkeepers.setdefault(asyncio.get_running_loop(), {})
    if fs not in per_loop:
        per_loop[fs] = Bookkeeper(fs, worker)
    return per_loop[fs]
