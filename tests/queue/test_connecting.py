"""A database FlowStone cannot use is named in one line, within seconds: an unreachable
server, a failed login, a missing database, an unmigrated schema, a URL of another kind."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from support import wait_for

from flowstone import FlowStone, FlowStoneError, ValidationError
from flowstone.cli import main

DEAD = "postgresql://postgres@127.0.0.1:1/x"


def test_the_cli_names_an_unreachable_server_in_one_line_within_seconds() -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flowstone.cli", "--database-url", DEAD, "queues"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - began < 5
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "unreachable at 127.0.0.1:1" in done.stderr, done.stderr


def test_the_api_raises_at_once_and_leaves_no_pool_thread() -> None:
    threads = set(threading.enumerate())
    fs = FlowStone(DEAD)
    began = time.monotonic()
    with pytest.raises(FlowStoneError) as raised:
        fs.queue_counts()
    assert time.monotonic() - began < 5
    assert raised.value.type == "connection_error" and raised.value.retryable
    assert "PostgreSQL server unreachable at 127.0.0.1:1: connection refused" in str(raised.value)
    assert set(threading.enumerate()) - threads == set(), "a pool thread keeps retrying"
    with pytest.raises(FlowStoneError, match=re.escape("unreachable at 127.0.0.1:1")):
        fs.migrate()


@pytest.mark.anyio
async def test_the_async_api_raises_the_same_error() -> None:
    with pytest.raises(FlowStoneError, match=re.escape("unreachable at 127.0.0.1:1")):
        await FlowStone(DEAD).aqueue_counts()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"dbname": "no_such_db"}, "database 'no_such_db' does not exist at "),
        ({"user": "no_such_role"}, "authentication failed for user 'no_such_role' at "),
    ],
)
def test_a_login_that_cannot_succeed_is_named_and_not_retryable(
    flowstone_server_url: str, change: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_conninfo(flowstone_server_url, **change)
    with pytest.raises(FlowStoneError, match=re.escape(expected)) as raised:
        FlowStone(url).get_job(1)
    assert raised.value.type == "connection_error" and not raised.value.retryable
    assert main(["--database-url", url, "jobs", "ls"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_a_url_of_another_database_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ValidationError, match="unsupported database URL scheme 'mysql'") as raised:
        FlowStone("mysql://root:secret@localhost/app")
    assert "secret" not in str(raised.value)


def test_an_unmigrated_schema_says_to_migrate(flowstone_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    fs = FlowStone(flowstone_url, schema="never_migrated")
    with pytest.raises(FlowStoneError) as raised:
        fs.list_jobs()
    assert raised.value.type == "schema_error"
    assert str(raised.value).endswith("run `flowstone migrate`") and "never_migrated" in str(raised.value)
    fs.close()
    assert main(["--database-url", flowstone_url, "--schema", "never_migrated", "queues"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schema 'never_migrated' is not migrated" in err


@pytest.mark.anyio
async def test_first_calls_at_once_on_a_loop_open_one_pool_and_close_leaves_no_connection(
    flowstone_url: str,
) -> None:
    """Each caller that meets the loop's pool unopened opens one; the ones not kept are
    closed at once (a pool dropped unclosed keeps its connections and tasks until the
    garbage collector finds them), so the instance holds one pool, and none after aclose."""
    fs = FlowStone(flowstone_url, pool_size=2)
    with psycopg.connect(flowstone_url, autocommit=True) as watcher:

        def connections() -> int:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchone()
            return int(row[0]) if row else 0

        await asyncio.gather(*(fs.aqueue_counts() for _ in range(6)))
        assert connections() <= 2, "one pool of at most 2 connections"
        await fs.aclose()
        await wait_for(lambda: connections() == 0, 5, "the pool's connections to close")
