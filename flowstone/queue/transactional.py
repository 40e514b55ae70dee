"""Use the caller's connection, so that a job is inserted in the caller's transaction.

Accepted: a psycopg connection, or a SQLAlchemy connection or session whose driver is
psycopg 3 (`postgresql+psycopg://`). A rollback of that transaction leaves no job.
"""

from __future__ import annotations

from typing import Any

import psycopg

from flowstone.errors import ValidationTypeError


def _not_psycopg(conn: object, found: object) -> TypeError:
    return TypeError(
        f"FlowStone inserts through psycopg 3; {type(conn).__name__} runs on "
        f"{type(found).__module__}.{type(found).__name__} (use a postgresql+psycopg:// engine)"
    )


def _unsupported(conn: object) -> TypeError:
    return TypeError(
        f"conn must be a psycopg Connection or a SQLAlchemy Connection/Session; got {type(conn).__name__}"
    )


def sync_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection under `conn` (psycopg or SQLAlchemy, sync)."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if isinstance(conn, psycopg.AsyncConnection):
        raise ValidationTypeError("an AsyncConnection needs the async twin (ainsert / ainsert_all)")
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.orm import Session

    if isinstance(conn, Session):
        conn = conn.connection()
    if isinstance(conn, SAConnection):
        raw = conn.connection.driver_connection
        if isinstance(raw, psycopg.Connection):
            return raw
        raise _not_psycopg(conn, raw)
    raise _unsupported(conn)


async def async_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg async connection under `conn` (psycopg or SQLAlchemy asyncio)."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    if isinstance(conn, AsyncConnection):
        raw = (await conn.get_raw_connection()).driver_connection
        if isinstance(raw, psycopg.AsyncConnection):
            return raw
        raise _not_psycopg(conn, raw)
    raise _unsupported(conn)
