"""Connection pools (sync and async twins) of autocommit connections.

A connection is pinged when taken from the pool only if it sat idle for a while: a
connection a server restart broke is replaced instead of failing the caller, and a busy
pool pays no extra round trip. Callers that need a transaction open one explicitly.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from flowstone.queue import jsonb
from flowstone.queue.connecting import DEFAULT_CONNECT_TIMEOUT, connect_kwargs
from flowstone.queue.plan import Plan, single
from flowstone.queue.queries import LOCAL_TIMEOUT

IDLE_PING_AFTER = 1.0  # seconds a connection may rest before it is checked on checkout

GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off"
"""libpq `options` for a connection that runs the same few prepared statements all day (a
producer's ack+claim, the asset bookkeeping): plan each statement once, on its indexes.
Under the default `auto` Postgres re-planned the ack+claim at every execution, its custom
plans looking cheaper (0.5 ms of a 1.1 ms statement). A generic plan is kept until the
table's statistics change, so one made while the table was empty (a new database, before
autovacuum's first ANALYZE) scanned the whole table at every cycle as it grew: a soak
fell from 4,190 to 100 jobs/s within a minute. With sequential scans priced out, the plan
made on an empty table uses the indexes it will need."""
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
"""libpq options of every FlowStone connection: a peer that vanished (a black-holed TCP
connection, a dead host) is noticed within about 30 s instead of Linux's 15 minutes."""


UNPREPARED: dict[str, Any] = {"prepare_threshold": None}
"""psycopg options of a connection through a transaction pooler: never prepare a statement
on the server (the next transaction may run on a server connection that lacks it, or
already has one of that name). Statements go unnamed, planned at every execution."""


def connection_kwargs(*, pooled: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments of every FlowStone connection (`kwargs` override them); `pooled`:
    the connection leads to a transaction pooler."""
    return {"application_name": "flowstone", **KEEPALIVES, **(UNPREPARED if pooled else {}), **kwargs}


def bounded_options(
    timeout: float, *, pooled: bool, generic: bool = False, asynchronous: bool = False
) -> dict[str, Any]:
    """Connect options of a dedicated connection whose statements may take at most
    `timeout` s (and, `generic`, are planned once: GENERIC_PLANS; `asynchronous`, commit
    without waiting for the WAL flush): libpq `options` on a direct connection; none
    behind a transaction pooler, which refuses them and would not keep them (its
    transactions begin with `local_timeout` instead)."""
    if pooled:
        return {}
    settings = [GENERIC_PLANS] if generic else []
    if asynchronous:
        settings.append("-c synchronous_commit=off")
    return {"options": " ".join([*settings, f"-c statement_timeout={round(timeout * 1000)}"])}


def local_timeout(timeout: float, *, pooled: bool) -> list[Plan[Any]]:
    """What a transaction on a dedicated connection begins with: behind a transaction
    pooler, `timeout` set for that transaction alone; nothing on a direct connection."""
    return [transaction_timeout(timeout)] if pooled else []


def transaction_timeout(timeout: float) -> Plan[Any]:
    """Bound the statements of the current transaction to `timeout` s (whatever the
    database's or role's default)."""
    return single(LOCAL_TIMEOUT, {"ms": str(round(timeout * 1000))})


_last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def mark_used(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Note that `conn` just worked (it goes back to the pool now)."""
    _last_used[conn] = time.monotonic()


def _rested(conn: Any) -> bool:
    return time.monotonic() - _last_used.get(conn, 0.0) > IDLE_PING_AFTER


def _configure(conn: psycopg.Connection[Any]) -> None:
    jsonb.prepare(conn)


async def _aconfigure(conn: psycopg.AsyncConnection[Any]) -> None:
    jsonb.prepare(conn)


def _check(conn: psycopg.Connection[Any]) -> None:
    if _rested(conn):
        conn.execute("")


async def _acheck(conn: psycopg.AsyncConnection[Any]) -> None:
    if _rested(conn):
        await conn.execute("")


def _options(url: str, size: int, connect_timeout: float, pooled: bool) -> dict[str, Any]:
    return {
        "conninfo": url,
        "min_size": 1,
        "max_size": size,
        "kwargs": connection_kwargs(pooled=pooled, autocommit=True, **connect_kwargs(url, connect_timeout)),
    }


def sync_pool(
    url: str, size: int, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, *, pooled: bool = False
) -> ConnectionPool:
    """An open pool of up to `size` autocommit connections, each connect bounded in time
    (`pooled`: they lead to a transaction pooler)."""
    return ConnectionPool(
        **_options(url, size, connect_timeout, pooled), check=_check, configure=_configure, open=True
    )


async def async_pool(
    url: str, size: int, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, *, pooled: bool = False
) -> AsyncConnectionPool:
    """Async twin of `sync_pool` (bound to the running event loop)."""
    pool = AsyncConnectionPool(
        **_options(url, size, connect_timeout, pooled), check=_acheck, configure=_aconfigure, open=False
    )
    await pool.open()
    return pool
