"""First contact with the database: a URL FlowStone can use, a bounded connect, and one
line naming what is wrong (server unreachable, server refusing connections for now,
authentication, database missing, schema not migrated) instead of a pool retrying for
30 s and a page of traceback; a starting worker waits a while for a server that is not
ready (`probe_patiently`).

Only the first contact is checked here: once a pool is open, a lost server is the
runtime's business (it reconnects with backoff).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from flowstone.errors import FlowStoneError, ValidationError

_log = structlog.get_logger("flowstone.connect")

SCHEMES = ("postgresql", "postgres")
REFUSALS = {
    "too many clients": "every connection slot is taken: raise max_connections or lower the pool sizes",
    "too many connections": "the role's or database's CONNECTION LIMIT is reached",
    "connection slots are reserved": "the slots left are reserved: raise max_connections",
    "is starting up": "the server is starting",
    "is shutting down": "the server is shutting down",
    "in recovery mode": "the server is recovering",
}
"""What a server says when it answers but takes no connection now, and what that means."""
DEFAULT_CONNECT_TIMEOUT = 5.0
# What a statement raises when the schema (or a table, type or column of it) is missing.
SCHEMA_MISSING = (
    pg_errors.UndefinedTable,
    pg_errors.InvalidSchemaName,
    pg_errors.UndefinedObject,
    pg_errors.UndefinedColumn,
    pg_errors.UndefinedFunction,
)


def check_url(url: str) -> str:
    """`url` when it is a PostgreSQL URL or a libpq `key=value` string, else one line
    naming the scheme (never the password)."""
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() not in SCHEMES:
        raise ValidationError(
            f"unsupported database URL scheme {scheme!r}: FlowStone needs PostgreSQL "
            "(postgresql://user:password@host:port/dbname)"
        )
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise ValidationError(f"malformed database URL: {str(error).splitlines()[0]}") from None
    return url


def connect_kwargs(url: str, timeout: float) -> dict[str, Any]:
    """Connection options bounding the connect by `timeout` seconds, unless the URL sets its own."""
    if "connect_timeout" in conninfo_to_dict(url):
        return {}
    return {"connect_timeout": max(1, round(timeout))}


def where(url: str) -> str:
    """`host:port` of a URL, for messages."""
    info = conninfo_to_dict(url)
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    return f"{host}:{info.get('port') or 5432}"


def explain(error: psycopg.Error, url: str, timeout: float) -> FlowStoneError:
    """A failed connect as one line naming the problem."""
    text = str(error)
    lowered = text.lower()
    info = conninfo_to_dict(url)
    at = where(url)
    if "password authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
        user = info.get("user") or "(default)"
        message = (
            f"authentication failed for user {user!r} at {at}: check the database URL's user and password"
        )
        return FlowStoneError("connection_error", message, retryable=False)
    if "database" in lowered and "does not exist" in lowered:
        dbname = info.get("dbname") or info.get("user") or "(default)"
        message = f"database {dbname!r} does not exist at {at}: create it (createdb) or fix the database URL"
        return FlowStoneError("connection_error", message, retryable=False)
    refusal = next((phrase for phrase in REFUSALS if phrase in lowered), None)
    if refusal is not None:
        said = " ".join(text.rpartition("FATAL:")[2].split())  # the server's own words
        message = f"PostgreSQL at {at} refused the connection: {said} ({REFUSALS[refusal]})"
        return FlowStoneError("connection_error", message)
    if "connection refused" in lowered:
        reason = "connection refused (is PostgreSQL running there?)"
    elif "timeout expired" in lowered or "timed out" in lowered:
        reason = f"no answer within {timeout:g} s"
    elif "resolve host" in lowered or "translate host name" in lowered:
        reason = "unknown host"
    else:
        reason = " ".join(text.removeprefix("connection failed:").split())
    return FlowStoneError("connection_error", f"PostgreSQL server unreachable at {at}: {reason}")


def probe(url: str, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Connect once within `timeout` s, or raise one FlowStoneError naming the problem."""
    try:
        psycopg.connect(check_url(url), **connect_kwargs(url, timeout)).close()
    except psycopg.OperationalError as error:
        raise explain(error, url, timeout) from None


def probe_patiently(url: str, timeout: float, patience: float) -> None:
    """`probe`, tried again while the server cannot take the connection yet (unreachable,
    starting, or out of connection slots) for up to `patience` s, with backoff (0.5 s
    doubling to 5 s) and a log line per retry; a bad password or a missing database
    fails at once."""
    deadline, delay = time.monotonic() + patience, 0.5
    while True:
        try:
            return probe(url, timeout)
        except FlowStoneError as error:
            left = deadline - time.monotonic()
            if not error.retryable or left <= 0:
                raise
            wait = min(delay, left)
            _log.warning(
                "database not ready; retrying", error=error.message, retry_in=wait, gives_up_in=round(left, 1)
            )
            time.sleep(wait)  # the server's own pace: nothing to be notified of
            delay = min(5.0, delay * 2)


async def aprobe(url: str, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Async twin of `probe`."""
    try:
        conn = await psycopg.AsyncConnection.connect(check_url(url), **connect_kwargs(url, timeout))
        await conn.close()
    except psycopg.OperationalError as error:
        raise explain(error, url, timeout) from None


def schema_error(error: psycopg.Error, schema: str) -> FlowStoneError:
    """A statement that failed with one of SCHEMA_MISSING: FlowStone's schema is missing or
    behind, as one line saying to migrate."""
    detail = error.diag.message_primary or str(error).splitlines()[0]
    return FlowStoneError(
        "schema_error",
        f"schema {schema!r} is not migrated (or is older than this FlowStone): {detail}; "
        "run `flowstone migrate`",
        retryable=False,
    )
