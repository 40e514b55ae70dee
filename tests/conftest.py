"""FlowStone's own fixtures come from its pytest plugin (registered as an entry point);
here are the fixtures test folders share: the PgBouncer the pooler tests run through, plain
SQL, and the resets of the shared workers and of the default asset graph (the folders that
need a reset on every test make it autouse in their own conftest)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from psycopg.rows import dict_row

if TYPE_CHECKING:
    from flowstone import FlowStone
    from flowstone.testing.pgbouncer import PgBouncer

Sql = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio, as FlowStone's runtime does."""
    return "asyncio"


@pytest.fixture(scope="session")
def bouncer(flowstone_server_url: str) -> Iterator[PgBouncer]:
    """One PgBouncer (transaction mode) per test process, in front of the test server;
    skipped when pgbouncer is not installed, except under CI=true, where that fails."""
    from flowstone.testing import pgbouncer

    if pgbouncer.executable() is None:
        reason = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must run the PgBouncer tests")
        pytest.skip(reason)
    with pgbouncer.PgBouncer.start(flowstone_server_url) as running:
        yield running


@pytest.fixture
def sql(flowstone: FlowStone) -> Sql:
    """Run one statement on the test database (committed) and return its rows as dicts."""

    def run(query: str, params: Any = None) -> list[dict[str, Any]]:
        with flowstone.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    return run


@pytest.fixture
def fresh_workers() -> Iterator[None]:
    """The shared workers (tests/runtime_workers.py, tests/feature_workers.py) start the
    test with nothing recorded; jobs they hold are let go at its end."""
    import feature_workers
    import runtime_workers

    runtime_workers.reset()
    feature_workers.reset()
    yield
    runtime_workers.RELEASE.set()
    feature_workers.GATE.set()


@pytest.fixture
def clean_graph() -> Iterator[None]:
    """The test defines its own assets; values stored in memory do not leak either."""
    from flowstone.assets import default_assets, default_io_managers
    from flowstone.assets.io import MemoryIOManager

    memory = default_io_managers.get("memory")
    assert isinstance(memory, MemoryIOManager)
    default_assets.clear()
    memory.clear()
    yield
    default_assets.clear()
    memory.clear()
