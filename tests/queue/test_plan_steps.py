"""Plans that wait and commit step by step (`WaitNotice`, `Atomic`, `Report`): the sync
and async drivers perform them alike, so a flow with waits is written once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from flowstone.queue.plan import (
    Plan,
    Report,
    WaitInTransactionError,
    WaitNotice,
    arun,
    astream,
    atomic,
    notice_plan,
    run,
    single,
    stream,
)

CHANNEL = "plan_steps"
pytestmark = pytest.mark.anyio


@pytest.fixture
def conn(flowstone_server_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(flowstone_server_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
async def aconn(flowstone_server_url: str) -> Any:
    async with await psycopg.AsyncConnection.connect(flowstone_server_url, autocommit=True) as connection:
        yield connection


def notified(payloads: list[str], wanted: str, timeout: float) -> Plan[bool]:
    """LISTEN, notify itself `payloads` (each committed at once), wait for `wanted`."""
    yield f"LISTEN {CHANNEL}", {}
    for payload in payloads:
        yield "SELECT pg_notify(%(channel)s, %(payload)s)", {"channel": CHANNEL, "payload": payload}
    return (yield from notice_plan(wanted.__eq__, timeout))


def test_a_wanted_notification_ends_the_wait_past_the_others(conn: psycopg.Connection[Any]) -> None:
    assert run(conn, notified(["other", "wanted"], "wanted", timeout=60)) is True


async def test_the_async_driver_waits_alike(aconn: psycopg.AsyncConnection[Any]) -> None:
    assert await arun(aconn, notified(["other", "wanted"], "wanted", timeout=60)) is True
    assert await arun(aconn, notified(["other"], "wanted", timeout=0.05)) is False


def test_without_the_wanted_one_the_wait_ends_at_its_timeout(conn: psycopg.Connection[Any]) -> None:
    assert run(conn, notified(["other"], "wanted", timeout=0.05)) is False


def test_a_wait_inside_a_transaction_is_refused(conn: psycopg.Connection[Any]) -> None:
    def waits() -> Plan[list[dict[str, Any]]]:
        return (yield WaitNotice(0.01))

    with conn.transaction(), pytest.raises(WaitInTransactionError, match="outside one"):
        run(conn, waits())


def inserts(n: int, fail: bool = False) -> Plan[None]:
    yield "INSERT INTO steps VALUES (%(n)s)", {"n": n}
    if fail:
        raise ValueError("after the insert")


def test_an_atomic_step_commits_alone_and_a_failed_one_rolls_back(conn: psycopg.Connection[Any]) -> None:
    def steps() -> Plan[None]:
        yield "CREATE TEMP TABLE steps (n int)", {}
        yield from atomic(inserts(1))
        yield from atomic(inserts(2, fail=True))

    with pytest.raises(ValueError, match="after the insert"):
        run(conn, steps())
    assert conn.execute("SELECT n FROM steps").fetchall() == [(1,)]


def reporting() -> Plan[None]:
    yield Report("first")
    rows = yield from single("SELECT 2 AS n", {})
    yield Report(rows[0]["n"])


def test_stream_hands_out_what_a_plan_reports(conn: psycopg.Connection[Any]) -> None:
    assert list(stream(conn, reporting())) == ["first", 2]
    with pytest.raises(TypeError, match="stream"):
        run(conn, reporting())


async def test_astream_hands_out_the_same(aconn: psycopg.AsyncConnection[Any]) -> None:
    assert [value async for value in astream(aconn, reporting())] == ["first", 2]
