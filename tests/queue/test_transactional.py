"""Transactional enqueue: `conn=X` joins the transaction of X itself — psycopg connections and
cursors, SQLAlchemy connections and sessions, sync and async — so X's commit keeps the jobs
and X's rollback drops them, also when the insert is the first statement on X. Every check
of what survived reads from another connection, after X went back to its pool (where
SQLAlchemy resets it)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
import psycopg
import pytest
import sqlalchemy as sa
from psycopg.types.string import TextLoader
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from flowstone import Batch, FlowStone, Worker, Workflow
from flowstone.queue import manage
from flowstone.queue.transactional import Joiner, register

SELECT_ONE = "SELECT 1"


class Plain(Worker):
    queue = "transactional"

    def perform(self, job: object) -> None:
        return None


@dataclass
class Caller:
    """What a caller hands in as `conn=`, and how the caller runs a statement, commits
    and rolls back through it."""

    conn: Any
    statement: Callable[[], Any]
    commit: Callable[[], Any]
    rollback: Callable[[], Any]


# -- sync callers -------------------------------------------------------------------------


@contextmanager
def with_psycopg(url: str, cursor: bool) -> Iterator[Caller]:
    """A psycopg connection, handing in the connection itself or a cursor of it."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        yield Caller(cur if cursor else conn, lambda: cur.execute(SELECT_ONE), conn.commit, conn.rollback)


@contextmanager
def with_sqlalchemy(url: str, session: bool) -> Iterator[Caller]:
    """A SQLAlchemy `Connection` or `Session` on a fresh engine (its own pool)."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url))
    try:
        with Session(engine) if session else engine.connect() as conn:
            yield Caller(conn, lambda: conn.execute(sa.text(SELECT_ONE)), conn.commit, conn.rollback)
    finally:
        engine.dispose()


SYNC_CALLERS = {
    "psycopg-connection": partial(with_psycopg, cursor=False),
    "psycopg-cursor": partial(with_psycopg, cursor=True),
    "sqlalchemy-connection": partial(with_sqlalchemy, session=False),
    "sqlalchemy-session": partial(with_sqlalchemy, session=True),
}

# -- async callers ------------------------------------------------------------------------


@asynccontextmanager
async def with_apsycopg(url: str, cursor: bool) -> AsyncIterator[Caller]:
    """Async twin of `with_psycopg`."""
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.cursor() as cur:
        yield Caller(cur if cursor else conn, lambda: cur.execute(SELECT_ONE), conn.commit, conn.rollback)


@asynccontextmanager
async def with_asqlalchemy(url: str, session: bool) -> AsyncIterator[Caller]:
    """Async twin of `with_sqlalchemy`: an `AsyncConnection` or `AsyncSession`."""
    engine = create_async_engine(
        "postgresql+psycopg://", async_creator=lambda: psycopg.AsyncConnection.connect(url)
    )
    try:
        async with AsyncSession(engine) if session else engine.connect() as conn:
            yield Caller(conn, lambda: conn.execute(sa.text(SELECT_ONE)), conn.commit, conn.rollback)
    finally:
        await engine.dispose()


ASYNC_CALLERS = {
    "psycopg-connection": partial(with_apsycopg, cursor=False),
    "psycopg-cursor": partial(with_apsycopg, cursor=True),
    "sqlalchemy-connection": partial(with_asqlalchemy, session=False),
    "sqlalchemy-session": partial(with_asqlalchemy, session=True),
}

# -- the public calls taking conn= ----------------------------------------------------------


def workflow() -> Workflow:
    return Workflow().add("a", Plain.new({"step": "a"})).add("b", Plain.new({"step": "b"}), deps=["a"])


def batch() -> Batch:
    return Batch(Plain.new({"callback": True})).add(Plain.new({"n": 1})).add(Plain.new({"n": 2}))


SYNC_CALLS: dict[str, Callable[[FlowStone, Any], list[int]]] = {
    "insert": lambda fs, conn: [fs.insert(Plain.new({}), conn=conn).id],
    "insert_all": lambda fs, conn: [
        j.id for j in fs.insert_all([Plain.new({"n": n}) for n in range(3)], conn=conn)
    ],
    "insert_workflow": lambda fs, conn: [j.id for j in fs.insert_workflow(workflow(), conn=conn).values()],
    "insert_batch": lambda fs, conn: [j.id for j in fs.insert_batch(batch(), conn=conn).values()],
    "enqueue": lambda fs, conn: [Plain.enqueue({}, conn=conn).id],
}


async def _ainsert(fs: FlowStone, conn: Any) -> list[int]:
    return [(await fs.ainsert(Plain.new({}), conn=conn)).id]


async def _ainsert_all(fs: FlowStone, conn: Any) -> list[int]:
    return [j.id for j in await fs.ainsert_all([Plain.new({"n": n}) for n in range(3)], conn=conn)]


async def _ainsert_workflow(fs: FlowStone, conn: Any) -> list[int]:
    return [j.id for j in (await fs.ainsert_workflow(workflow(), conn=conn)).values()]


async def _ainsert_batch(fs: FlowStone, conn: Any) -> list[int]:
    return [j.id for j in (await fs.ainsert_batch(batch(), conn=conn)).values()]


async def _aenqueue(fs: FlowStone, conn: Any) -> list[int]:
    return [(await Plain.aenqueue({}, conn=conn)).id]


ASYNC_CALLS: dict[str, Callable[[FlowStone, Any], Awaitable[list[int]]]] = {
    "ainsert": _ainsert,
    "ainsert_all": _ainsert_all,
    "ainsert_workflow": _ainsert_workflow,
    "ainsert_batch": _ainsert_batch,
    "aenqueue": _aenqueue,
}

SCENARIOS = [(first, commit) for first in (True, False) for commit in (True, False)]
"""The insert as the first statement on the caller's object or after one, then a commit or
a rollback: each in its own transaction, on a new connection."""


def scenario(first: bool, commit: bool) -> str:
    return f"{'insert first' if first else 'after a SELECT'}, then {'commit' if commit else 'rollback'}"


def stored(fs: FlowStone, ids: list[int]) -> list[int]:
    """Which of `ids` another connection (the instance's pool) sees."""
    return [i for i in ids if fs.get_job(i) is not None]


async def astored(fs: FlowStone, ids: list[int]) -> list[int]:
    return [i for i in ids if await fs.aget_job(i) is not None]


# -- sync -----------------------------------------------------------------------------------


def inserted_then_ended(
    fs: FlowStone, url: str, kind: str, call: str, *, first: bool, commit: bool
) -> list[int]:
    """Insert with `call` through a `kind` caller, then commit or roll back; the ids."""
    with SYNC_CALLERS[kind](url) as caller:
        if not first:
            caller.statement()
        ids = SYNC_CALLS[call](fs, caller.conn)
        assert stored(fs, ids) == [], "visible to others before the caller's commit"
        caller.commit() if commit else caller.rollback()
    return ids


@pytest.mark.parametrize("kind", SYNC_CALLERS)
@pytest.mark.parametrize("call", SYNC_CALLS)
def test_every_call_taking_conn_joins_the_callers_transaction(flowstone, flowstone_url, kind, call):
    for first, commit in SCENARIOS:
        ids = inserted_then_ended(flowstone, flowstone_url, kind, call, first=first, commit=commit)
        assert stored(flowstone, ids) == (ids if commit else []), scenario(first, commit)


# -- async ----------------------------------------------------------------------------------


async def ainserted_then_ended(
    fs: FlowStone, url: str, kind: str, call: str, *, first: bool, commit: bool
) -> list[int]:
    """Async twin of `inserted_then_ended`."""
    async with ASYNC_CALLERS[kind](url) as caller:
        if not first:
            await caller.statement()
        ids = await ASYNC_CALLS[call](fs, caller.conn)
        assert await astored(fs, ids) == [], "visible to others before the caller's commit"
        await (caller.commit() if commit else caller.rollback())
    return ids


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ASYNC_CALLERS)
@pytest.mark.parametrize("call", ASYNC_CALLS)
async def test_every_async_call_taking_conn_joins_the_callers_transaction(
    flowstone, flowstone_url, kind, call
):
    try:
        for first, commit in SCENARIOS:
            ids = await ainserted_then_ended(flowstone, flowstone_url, kind, call, first=first, commit=commit)
            assert await astored(flowstone, ids) == (ids if commit else []), scenario(first, commit)
    finally:
        await flowstone.aclose()


# -- autocommit, and what cannot be joined ----------------------------------------------------


def test_an_autocommit_connection_commits_each_call_at_once(flowstone, flowstone_url):
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        job = flowstone.insert(Plain.new({}), conn=conn)
        assert stored(flowstone, [job.id]) == [job.id]
        with pytest.raises(RuntimeError, match="changed my mind"), conn.transaction():
            dropped = flowstone.insert(Plain.new({}), conn=conn)
            raise RuntimeError("changed my mind")
    assert stored(flowstone, [job.id, dropped.id]) == [job.id]


@pytest.fixture
def failing_dependencies(sql):
    """Every insert into job_deps fails (a trigger): a workflow insert fails after its jobs."""
    sql(
        "CREATE FUNCTION flowstone.refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'dependencies refused'; END $$"
    )
    sql("CREATE TRIGGER refuse BEFORE INSERT ON flowstone.job_deps EXECUTE FUNCTION flowstone.refuse()")


def test_a_call_on_an_autocommit_connection_is_atomic(flowstone, flowstone_url, sql, failing_dependencies):
    with (
        psycopg.connect(flowstone_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.RaiseException),
    ):
        flowstone.insert_workflow(workflow(), conn=conn)
    assert sql("SELECT count(*) AS n FROM flowstone.jobs") == [{"n": 0}]


@pytest.mark.anyio
async def test_an_async_call_on_an_autocommit_connection_is_atomic(
    flowstone, flowstone_url, sql, failing_dependencies
):
    async with await psycopg.AsyncConnection.connect(flowstone_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            await flowstone.ainsert_workflow(workflow(), conn=conn)
        job = await flowstone.ainsert(Plain.new({}), conn=conn)
    assert await astored(flowstone, [job.id]) == [job.id]
    assert sql("SELECT count(*) AS n FROM flowstone.jobs") == [{"n": 1}]
    await flowstone.aclose()


def test_a_sqlalchemy_autocommit_connection_commits_each_call_at_once(flowstone, flowstone_url):
    with with_sqlalchemy(flowstone_url, session=False) as caller:
        conn = caller.conn.execution_options(isolation_level="AUTOCOMMIT")
        job = flowstone.insert(Plain.new({}), conn=conn)
        assert stored(flowstone, [job.id]) == [job.id]


@pytest.mark.anyio
async def test_the_wrong_twin_says_which_to_use(flowstone, flowstone_url):
    async with await psycopg.AsyncConnection.connect(flowstone_url) as aconn:
        with pytest.raises(TypeError, match="needs the async twins"):
            flowstone.insert(Plain.new({}), conn=aconn)
    with psycopg.connect(flowstone_url) as conn, pytest.raises(TypeError, match="needs the sync calls"):
        await flowstone.ainsert(Plain.new({}), conn=conn)
    await flowstone.aclose()


def test_anything_else_is_refused(flowstone):
    with pytest.raises(TypeError, match="psycopg connection or cursor, or a SQLAlchemy"):
        flowstone.insert(Plain.new({}), conn=object())


def test_a_sqlalchemy_connection_on_another_driver_is_refused(flowstone):
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(TypeError, match=r"postgresql\+psycopg://"):
        flowstone.insert(Plain.new({}), conn=conn)
    engine.dispose()


@dataclass
class Wrapped:
    """Another library's connection object (as Django's wraps a psycopg connection)."""

    raw: psycopg.Connection[Any]


def test_another_kind_of_connection_joins_through_a_registered_joiner(flowstone, flowstone_url):
    forget = register(Joiner(lambda conn: isinstance(conn, Wrapped), join=lambda conn: conn.raw))
    try:
        for commit in (True, False):
            with psycopg.connect(flowstone_url) as raw:
                job = flowstone.insert(Plain.new({}), conn=Wrapped(raw))
                assert stored(flowstone, [job.id]) == []
                raw.commit() if commit else raw.rollback()
            assert stored(flowstone, [job.id]) == ([job.id] if commit else [])
    finally:
        forget()
    with pytest.raises(TypeError, match="got Wrapped"):
        flowstone.insert(Plain.new({}), conn=Wrapped(raw))


def read_back(fs: FlowStone, job_id: int, conn: Any) -> Any:
    """The job as read through `conn` (inside its transaction)."""
    return fs.database.execute(manage.get_plan(fs.database.statements.jobs, job_id), conn)


def test_the_callers_cursor_class_and_loaders_do_not_change_what_flowstone_reads(flowstone, flowstone_url):
    """FlowStone's statements run on a cursor of psycopg's own class with its own loaders:
    a caller's connection binding `$1` placeholders and loading jsonb and timestamps as
    text (as Django's loads jsonb) inserts and reads jobs as any other."""
    with psycopg.connect(flowstone_url, cursor_factory=psycopg.RawCursor) as conn:
        for type_name in ("jsonb", "timestamptz"):
            conn.adapters.register_loader(type_name, TextLoader)
        job = flowstone.insert(Plain.new({"n": 1}), conn=conn)
        found = read_back(flowstone, job.id, conn)
        assert found.args == {"n": 1} and found.inserted_at == job.inserted_at
        assert isinstance(conn.execute("SELECT args FROM flowstone.jobs").fetchone()[0], str), (
            "its own: as set"
        )


@pytest.mark.anyio
async def test_an_async_callers_cursor_class_and_loaders_do_not_change_what_flowstone_reads(
    flowstone, flowstone_url
):
    async with await psycopg.AsyncConnection.connect(
        flowstone_url, cursor_factory=psycopg.AsyncRawCursor
    ) as conn:
        conn.adapters.register_loader("jsonb", TextLoader)
        job = await flowstone.ainsert(Plain.new({"n": 2}), conn=conn)
        found = await flowstone.database.aexecute(
            manage.get_plan(flowstone.database.statements.jobs, job.id), conn
        )
        assert found.args == {"n": 2}
    await flowstone.aclose()


@pytest.mark.anyio
async def test_a_kind_bound_to_a_thread_runs_the_async_twins_through_its_offload(flowstone, flowstone_url):
    """A joiner with `offload` (Django's: `sync_to_async`) gets the sync call of an async twin."""
    threads: list[str] = []

    async def offload(call: Callable[[], Any]) -> Any:
        def in_its_thread() -> Any:
            threads.append(threading.current_thread().name)
            return call()

        return await anyio.to_thread.run_sync(in_its_thread)

    forget = register(
        Joiner(lambda conn: isinstance(conn, Wrapped), join=lambda conn: conn.raw, offload=offload)
    )
    try:
        with psycopg.connect(flowstone_url) as raw:
            job = await flowstone.ainsert(Plain.new({}), conn=Wrapped(raw))
            assert await astored(flowstone, [job.id]) == [], "in the caller's transaction"
            raw.rollback()
        assert await astored(flowstone, [job.id]) == []
        assert len(threads) == 1 and threads[0] != threading.current_thread().name
    finally:
        forget()
        await flowstone.aclose()
