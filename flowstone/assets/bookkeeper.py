"""Batched bookkeeping of the materializations running on one event loop.

Each materialization makes two requests. `begin`: take its partition's lock, mark its
record running, read the partition's last finished record and its dependencies'
records. `end`: record what happened, wake the jobs waiting on it, queue the eager
dependents it made stale (in the same transaction), release the lock. Requests that
arrive while a batch is in flight go together in the next one — one round trip of a few
statements however many materializations it serves, as the queue's producer batches
claims and acknowledgements.

One connection holds the partition locks of all of them: session advisory locks, which
Postgres releases should the process die. Should that connection drop while some run,
their locks are taken again on the new connection before anything else (the connection
is checked every second while it holds locks, so a drop is noticed then, not at the
next request). A run whose lock another session took meanwhile — or that another run of
its partition started during the gap — does not record its result: its record goes back
to pending with the reason and its job looks again later.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
import structlog

from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import (
    Finish,
    LastFinished,
    Materialization,
    Pending,
    Waiting,
    dependencies_plan,
    eager_plan,
    finish_and_wake_plan,
    lock_key,
    locked_start_plan,
    relock_plan,
    set_pending_plan,
    started_since_plan,
    unlock_plan,
)
from flowstone.errors import FlowStoneError
from flowstone.queue.database import Database
from flowstone.queue.plan import Plan, Row, arun, arun_together
from flowstone.queue.pool import GENERIC_PLANS, IDLE_PING_AFTER
from flowstone.queue.worker import NewJob

LOCK_CHECK_SECONDS = 1.0
"""How often the connection holding partition locks is checked while it rests."""

_log = structlog.get_logger("flowstone.assets")

Candidate = tuple[NewJob, list[tuple[str, str | None]]]
"""An eager dependent's job and the upstream (asset, partition) pairs it reads."""


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
    the job already finished it), the partition's last success or failure, the rows of
    the upstream partitions it reads."""

    locked: bool
    record: Materialization | None = None
    last: LastFinished | None = None
    upstream: list[Row] = field(default_factory=list)


BUSY = Begun(locked=False)


@dataclass
class End:
    """What a materialization leaves behind: a finished record or a pending one (or
    neither), the jobs to wake, the eager dependents to queue, and the lock to release."""

    key: str
    finish: Finish | None = None
    pending: Pending | None = None
    waiting: list[Waiting] = field(default_factory=list)
    eager: list[Candidate] = field(default_factory=list)


LOST = FlowStoneError(
    "connection_error",
    "lost the partition's lock while the connection to the database was down (another run of the "
    "partition may have started): this run's result is not recorded; the job looks again",
)


class Bookkeeper:
    """Runs the begin/end requests of one event loop's materializations in batches."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.materializations = database.statements.of(MaterializationQueries)
        self.held: set[str] = set()
        self.lost: set[str] = set()  # runs still going whose lock another session took
        self.suspect: set[str] = set()  # runs whose lock was taken again after a reconnect
        self._queue: list[tuple[Begin | End, asyncio.Future[Any]]] = []
        self._ready = asyncio.Event()
        self._tries: dict[int, int] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._used = 0.0
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="flowstone asset bookkeeping")

    async def begin(self, request: Begin) -> Begun:
        """Lock, start and read for one materialization (BUSY if its partition is locked)."""
        begun: Begun = await self._submit(request)
        return begun

    async def end(self, request: End) -> bool:
        """Record, wake, queue, announce and unlock for one materialization; False when
        its lock was lost meanwhile (then nothing but a pending mark was recorded)."""
        kept: bool = await self._submit(request)
        return kept

    async def _submit(self, request: Begin | End) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._ready.set()
        with anyio.CancelScope(shield=True):  # a batch in flight is answered, not dropped
            return await future

    async def _run(self) -> None:
        try:
            while True:
                with anyio.move_on_after(LOCK_CHECK_SECONDS if self.held else math.inf):
                    await self._ready.wait()
                if not self._ready.is_set():
                    await self._check_locks()
                    continue
                self._ready.clear()
                batch, self._queue = self._queue, []
                await self._settle(batch)
        finally:  # the loop is closing
            if self._conn is not None:
                await self._conn.close()

    async def _check_locks(self) -> None:
        """While locks are held and the connection rests, make sure it is alive (and take
        the locks again on a new one if it is not)."""
        if time.monotonic() - self._used < LOCK_CHECK_SECONDS:
            return
        try:
            await self._connection(ping=True)
        except Exception as error:  # the server is unreachable: try again at the next check
            _log.warning("asset lock connection unavailable", error=str(error)[:200])

    async def _settle(self, batch: list[tuple[Begin | End, asyncio.Future[Any]]]) -> None:
        try:
            conn = await self._connection()
        except Exception as error:  # the server is unreachable: so are the locks
            for _, future in batch:
                _fail(future, error)
            return
        ends = [(request, future) for request, future in batch if isinstance(request, End)]
        asked: list[tuple[Begin, asyncio.Future[Any]]] = []
        for request, future in batch:
            if not isinstance(request, Begin):
                continue
            key = request.key(self.database.schema)
            if key in self.held or key in self.lost:  # another materialization of this process has it
                _answer(future, BUSY)
                continue
            self.held.add(key)
            asked.append((request, future))
        keys = [end.key for end, _ in ends] + [begin.key(self.database.schema) for begin, _ in asked]
        try:
            kept = await self._fence(conn, [end for end, _ in ends])
            begun = await self._execute(conn, [end for end, _ in ends], [begin for begin, _ in asked], kept)
        except Exception as error:
            await self._recover(keys)
            if self._again([*ends, *asked], error):
                return
            for _, future in [*ends, *asked]:
                _fail(future, error)
            return
        for _, future in [*ends, *asked]:
            self._tries.pop(id(future), None)
        self._forget([end.key for end, _ in ends])
        for (_, future), still in zip(ends, kept, strict=True):
            _answer(future, still)
        for (request, future), answer in zip(asked, begun, strict=True):
            if not answer.locked:
                self.held.discard(request.key(self.database.schema))
            _answer(future, answer)

    def _again(self, requests: list[tuple[Any, asyncio.Future[Any]]], error: Exception) -> bool:
        """Queue a batch again that lost a deadlock (or a serialization conflict) with
        another transaction: it was rolled back whole and its locks released, so it can
        simply run again (a few times at most)."""
        if not isinstance(error, RETRYABLE_CONFLICTS):
            return False
        tries = [self._tries.get(id(future), 0) + 1 for _, future in requests]
        if max(tries, default=0) > MAX_CONFLICT_RETRIES:
            for _, future in requests:
                self._tries.pop(id(future), None)
            return False
        for (_, future), count in zip(requests, tries, strict=True):
            self._tries[id(future)] = count
        _log.info("asset bookkeeping batch lost a deadlock; running it again", error=str(error))
        self._queue[:0] = requests
        self._ready.set()
        return True

    async def _fence(self, conn: psycopg.AsyncConnection[Any], ends: list[End]) -> list[bool]:
        """Per end, whether its run kept its lock throughout; a run that did not has its
        result turned into a pending mark (recorded by `_execute`)."""
        kept = []
        for end in ends:
            still = end.key not in self.lost
            if still and end.key in self.suspect and end.finish is not None:
                still = not await arun(conn, started_since_plan(self.materializations, end.finish.record_id))
            if not still:
                _log.warning("asset run lost its partition lock", key=end.key)
                marked = end.finish or end.pending
                end.finish, end.waiting, end.eager = None, [], []
                end.pending = None if marked is None else Pending(marked.record_id, LOST)
            kept.append(still)
        return kept

    def _forget(self, keys: list[str]) -> None:
        """The runs of `keys` ended: their locks are released (or were lost)."""
        self.held.difference_update(keys)
        self.lost.difference_update(keys)
        self.suspect.difference_update(keys)

    async def _execute(
        self, conn: psycopg.AsyncConnection[Any], ends: list[End], begins: list[Begin], kept: list[bool]
    ) -> list[Begun]:
        """One round trip, one transaction: the ends' records, wake-ups, pending marks and
        unlocks, then the begins' locks, running marks and reads; the eager dependents
        the ends made stale are queued in the same transaction."""
        finishes = [end.finish for end in ends if end.finish is not None]
        pending = [end.pending for end in ends if end.pending is not None]
        waiting = [where for end in ends for where in end.waiting]
        plans: list[Plan[Any]] = []
        if finishes or waiting:
            plans.append(finish_and_wake_plan(self.materializations, finishes, waiting))
        if pending:
            plans.append(set_pending_plan(self.materializations, pending))
        unlock = [end.key for end, still in zip(ends, kept, strict=True) if still]
        if unlock:
            plans.append(unlock_plan(self.materializations, unlock))
        deps = [(n, *where) for n, begin in enumerate(begins) for where in begin.upstream]
        if begins:
            plans.append(locked_start_plan(self.materializations, [begin.start() for begin in begins]))
        if deps:  # source assets have none to read
            plans.append(dependencies_plan(self.materializations, deps))
        eager = _distinct([candidate for end in ends for candidate in end.eager])
        if eager:
            async with conn.transaction():
                results = await arun_together(conn, plans)
                await arun(conn, eager_plan(self.database.statements.jobs, self.materializations, eager))
        else:
            results = await arun_together(conn, plans)
        if not begins:
            return []
        rows = results.pop() if deps else []
        started = results[-1]
        upstream: list[list[Row]] = [[] for _ in begins]
        for row in rows:
            upstream[row["request"]].append(row)
        return [
            Begun(locked, record, last, deps_rows)
            for (locked, record, last), deps_rows in zip(started, upstream, strict=True)
        ]

    async def _recover(self, keys: list[str]) -> None:
        """After a failed batch, release the locks it may have taken or kept; a lost
        connection released them already (the other runs' are taken again on the next)."""
        self._forget(keys)
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            return
        with suppress(psycopg.Error):
            await arun(conn, unlock_plan(self.materializations, keys))

    async def _connection(self, *, ping: bool = False) -> psycopg.AsyncConnection[Any]:
        """The lock-holding connection; checked after a rest (or when asked), replaced
        when broken, the locks of the runs still going taken again first."""
        conn = self._conn
        if conn is not None and not conn.closed and (ping or time.monotonic() - self._used > IDLE_PING_AFTER):
            with suppress(psycopg.OperationalError):
                await conn.execute("")
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            conn = await self._connect()
            await self._retake(conn)
            self._conn = conn
        self._used = time.monotonic()
        return conn

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        """A connection that holds session locks: never one through a transaction pooler
        (`check_sessions` refused the runs before they got here)."""
        return await self.database.aconnect(direct=True, autocommit=True, options=GENERIC_PLANS)

    async def _retake(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Take the held locks again on a new connection; those another session took
        meanwhile are lost to their runs."""
        if not self.held:
            return
        taken = await arun(conn, relock_plan(self.materializations, sorted(self.held)))
        lost = self.held - taken
        if lost:
            _log.warning("asset partition locks lost in a reconnect", keys=sorted(lost))
        self.lost |= lost
        self.suspect |= taken
        self.held = taken


def check_sessions(database: Database) -> None:
    """Raise unless `database` can hold the partition locks: they live on a session, which
    a transaction pooler does not keep, so there they need `direct_url`."""
    if not database.sessions:
        raise FlowStoneError(
            "connection_error",
            "asset materializations hold partition locks on a session, which a transaction "
            "pooler does not keep: give FlowStone direct_url (the server, bypassing the pooler)",
            retryable=False,
        )


RETRYABLE_CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
MAX_CONFLICT_RETRIES = 3


def _distinct(candidates: list[Candidate]) -> list[Candidate]:
    """One candidate per (asset, partition)."""
    seen: dict[tuple[Any, Any], Candidate] = {}
    for job, needs in candidates:
        seen.setdefault((job.args["asset_name"], job.args["partition"]), (job, needs))
    return list(seen.values())


def _answer(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


_bookkeepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Database, Bookkeeper]] = (
    weakref.WeakKeyDictionary()
)


def bookkeeper(database: Database) -> Bookkeeper:
    """The running event loop's bookkeeper for `database`."""
    per_loop = _bookkeepers.setdefault(asyncio.get_running_loop(), {})
    if database not in per_loop:
        per_loop[database] = Bookkeeper(database)
    return per_loop[database]
