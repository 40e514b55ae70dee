"""Joining the caller's transaction: a call given `conn=X` writes through X's own
transaction, so X's commit keeps its jobs and X's rollback drops them.

A *joiner* knows one kind of caller object: it makes that object's own transaction begin,
then hands over the psycopg connection under it. Beginning matters for SQLAlchemy, whose
`Connection` begins lazily at its first statement (2.0 "autobegin"): a statement sent
behind its back on the driver's connection leaves it believing no transaction is open,
so its `commit()` does nothing and its pool's reset rolls the jobs back. The joiner calls
`begin()` when no transaction is open, which is what SQLAlchemy's autobegin itself does.
Built in: psycopg connections and cursors, SQLAlchemy `Connection`/`Session` and their
asyncio twins (driver `postgresql+psycopg://`). `register` adds another kind (Django's
connection, `flowstone.contrib.django`: `ensure_connection()`, then its `.connection`). A
kind bound to one thread, as Django's connection is, has no async driver: its joiner
`offload`s the async twins' work to the sync call in that thread.

FlowStone's statements run on a cursor of psycopg's own class with FlowStone's loaders,
whatever the caller's connection was set up with (Django's loads jsonb as text, timestamps
in a zone of its choosing, and binds parameters on the client).

A connection in autocommit mode with no transaction open has no transaction to join: the
call runs in a transaction of its own, committed when it returns, as every statement on
such a connection is (so a workflow's jobs, its dependencies and its lock stay together).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.datetime import TimestamptzLoader

from flowstone.errors import ValidationTypeError
from flowstone.queue import jsonb
from flowstone.queue.plan import Row

Driver = TypeVar("Driver", psycopg.Connection[Any], psycopg.AsyncConnection[Any])


@dataclass(frozen=True)
class Joiner:
    """One kind of caller object: `accepts` recognises it; `join` (for the sync calls) or
    `ajoin` (for the async twins) begins its transaction and returns the psycopg
    connection under it — None when that kind has no such calls. `offload`, for a kind
    bound to a thread of its own: the async twins hand it their sync call, which it runs
    in that thread (Django: `sync_to_async`), instead of using `ajoin`."""

    accepts: Callable[[object], bool]
    join: Callable[[Any], psycopg.Connection[Any]] | None = None
    ajoin: Callable[[Any], Awaitable[psycopg.AsyncConnection[Any]]] | None = None
    offload: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None


def _joiner(conn: object) -> Joiner:
    for joiner in _JOINERS:
        if joiner.accepts(conn):
            return joiner
    raise ValidationTypeError(
        f"conn must be a psycopg connection or cursor, or a SQLAlchemy Connection/Session "
        f"(sync or async); got {type(conn).__name__}"
    )


def register(joiner: Joiner) -> Callable[[], None]:
    """Teach `conn=` another kind of object (tried before the built-in kinds); returns
    the function that forgets it again."""
    _JOINERS.insert(0, joiner)
    return lambda: _JOINERS.remove(joiner)


def offloader(conn: Any) -> Callable[[Callable[[], Any]], Awaitable[Any]] | None:
    """How the async twins run their sync call for `conn`'s kind (None: through `ajoined`)."""
    return _joiner(conn).offload


@contextmanager
def joined(conn: Any, *, atomic: bool = True) -> Iterator[psycopg.Cursor[Row]]:
    """A cursor on the psycopg connection under `conn`, inside `conn`'s transaction; on an
    autocommit connection outside one, inside a transaction of its own when `atomic`."""
    join = _joiner(conn).join
    if join is None:
        raise ValidationTypeError(f"a {type(conn).__name__} needs the async twins (ainsert, ainsert_all, …)")
    raw = join(conn)
    own = raw.transaction() if atomic and _outside_transaction(raw) else nullcontext()
    with own, _cursor(psycopg.Cursor(raw, row_factory=dict_row)) as cursor:
        yield cursor


@asynccontextmanager
async def ajoined(conn: Any, *, atomic: bool = True) -> AsyncIterator[psycopg.AsyncCursor[Row]]:
    """Async twin of `joined`."""
    ajoin = _joiner(conn).ajoin
    if ajoin is None:
        raise ValidationTypeError(f"a {type(conn).__name__} needs the sync calls (insert, insert_all, …)")
    raw = await ajoin(conn)
    own = raw.transaction() if atomic and _outside_transaction(raw) else nullcontext()
    async with own, _cursor(psycopg.AsyncCursor(raw, row_factory=dict_row)) as cursor:
        yield cursor


Cursor = TypeVar("Cursor", psycopg.Cursor[Row], psycopg.AsyncCursor[Row])


def _cursor(cursor: Cursor) -> Cursor:
    """`cursor` decoding jsonb and timestamps FlowStone's way, not the connection's."""
    jsonb.prepare(cursor)
    cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
    return cursor


def _outside_transaction(raw: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """In autocommit mode with no transaction open: each statement would commit alone."""
    return raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE


# -- psycopg ----------------------------------------------------------------------------------


def _psycopg(conn: psycopg.Connection[Any] | psycopg.Cursor[Any]) -> psycopg.Connection[Any]:
    """A psycopg connection begins its transaction at its first statement by itself."""
    return conn.connection if isinstance(conn, psycopg.Cursor) else conn


async def _apsycopg(
    conn: psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any],
) -> psycopg.AsyncConnection[Any]:
    return conn.connection if isinstance(conn, psycopg.AsyncCursor) else conn


# -- SQLAlchemy --------------------------------------------------------------------------------


def _from_sqlalchemy(conn: object) -> bool:
    """Whether `conn` is an object of SQLAlchemy's (checked without importing it)."""
    return any(kind.__module__.startswith("sqlalchemy.") for kind in type(conn).__mro__)


def _sqlalchemy_sync(conn: object) -> bool:
    if not _from_sqlalchemy(conn):
        return False
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    return isinstance(conn, Connection | Session)


def _sqlalchemy_async(conn: object) -> bool:
    if not _from_sqlalchemy(conn):
        return False
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    return isinstance(conn, AsyncConnection | AsyncSession)


def _sqlalchemy(conn: Any) -> psycopg.Connection[Any]:
    """A `Session` begins its transaction in `connection()`; a `Connection` is begun here
    unless a transaction is open (what its autobegin does before a first statement)."""
    from sqlalchemy.orm import Session

    if isinstance(conn, Session):
        conn = conn.connection()
    if conn.get_transaction() is None:
        conn.begin()
    return _driver(conn, conn.connection.driver_connection, psycopg.Connection)


async def _asqlalchemy(conn: Any) -> psycopg.AsyncConnection[Any]:
    """Async twin of `_sqlalchemy`."""
    from sqlalchemy.ext.asyncio import AsyncSession

    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    if conn.get_transaction() is None:
        await conn.begin()
    raw = (await conn.get_raw_connection()).driver_connection
    return _driver(conn, raw, psycopg.AsyncConnection)


def _driver(conn: object, raw: object, expected: type[Driver]) -> Driver:
    if isinstance(raw, expected):
        return raw
    raise ValidationTypeError(
        f"FlowStone inserts through psycopg 3; {type(conn).__name__} runs on "
        f"{type(raw).__module__}.{type(raw).__name__} (use a postgresql+psycopg:// engine)"
    )


_JOINERS: list[Joiner] = [
    Joiner(lambda conn: isinstance(conn, psycopg.Connection | psycopg.Cursor), join=_psycopg),
    Joiner(lambda conn: isinstance(conn, psycopg.AsyncConnection | psycopg.AsyncCursor), ajoin=_apsycopg),
    Joiner(_sqlalchemy_sync, join=_sqlalchemy),
    Joiner(_sqlalchemy_async, ajoin=_asqlalchemy),
]
