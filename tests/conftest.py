"""FlowStone's own fixtures come from its pytest plugin (registered as an entry point);
the PgBouncer the pooler tests run through is started here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowstone.testing.pgbouncer import PgBouncer


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
