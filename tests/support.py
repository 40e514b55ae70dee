"""Helpers shared by the test suites: wait on a condition with a deadline (never sleep)."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest
from psycopg.rows import dict_row

from flowstone import FlowStone, Job
from flowstone.queue.plugins.base import InstanceRuntime

T = TypeVar("T")
MakeFs = Callable[..., FlowStone]  # the runtime suite's `make_fs` fixture
POLL = 0.02


async def wait_for(
    predicate: Callable[[], Awaitable[T] | T], timeout: float = 5.0, message: str = "condition"
) -> T:
    """Poll `predicate` (sync or async) every 20 ms until it returns a truthy value and
    return that value; fail the test when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        await anyio.sleep(POLL)


async def wait_for_job(fs: FlowStone, job_id: int, *states: str, timeout: float = 5.0) -> Job:
    """The job once it is in one of `states` (e.g. "completed")."""

    async def reached() -> Job | None:
        job = await fs.aget_job(job_id)
        return job if job is not None and job.state in states else None

    return await wait_for(reached, timeout, f"job {job_id} to be {' or '.join(states)}")


async def rows(fs: FlowStone, query: str, params: Any = None) -> list[dict[str, Any]]:
    """Run one statement (committed) and return its rows as dicts."""
    async with fs.aconnection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall() if cursor.description is not None else []


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Sync twin of `wait_for`: poll `condition` until truthy; fail after `timeout` s naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(POLL)  # polling interval of the wait, not a wait for the condition itself
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Clock:
    """A monotonic clock the test moves (for what takes one, such as a plugin's `Cursor`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TickRuntime(InstanceRuntime):
    """A plugin's view of a node (`PluginRuntime`) with no node around it: a test runs a
    plugin's ticks itself, one at a time, on the test's database; `connected_for` is what
    the test says; the queues the plugin wakes are recorded in `woken`."""

    def __init__(self, fs: FlowStone, *, name: str = "leader", connected_for: float = 3600.0) -> None:
        self.host, self.name, self.connected_for = fs, name, connected_for
        self.woken: list[str] = []

    def wake(self, queue: str) -> None:
        self.woken.append(queue)


CHROMIUM = os.environ.get("FLOWSTONE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FLOWSTONE_CHROMEDRIVER", "/usr/bin/chromedriver")
"""Debian's `chromium` and `chromium-driver`: the browser tests and the dashboard demo's
screenshots use them (never a browser selenium would download)."""


def require_browser() -> None:
    """Skip (locally) or fail (under CI=true) when the browser is not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    reason = f"no browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests")
    pytest.skip(reason)
