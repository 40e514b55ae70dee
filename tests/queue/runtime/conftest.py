"""Fixtures for the runtime tests: FlowStone instances with short intervals on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from support import MakeFs

from flowstone import FlowStone

FAST: dict[str, Any] = {
    "poll_interval": 0.5,
    "stage_interval": 0.05,
    "heartbeat_interval": 0.1,
    "node_expiry": 1.0,
    "leader_lease": 1.0,
    "lifeline_interval": 0.1,
    "shutdown_grace": 2.0,
}


@pytest.fixture(autouse=True)
def _fresh_workers(fresh_workers: None) -> None:
    """Every runtime test starts with the shared workers reset (tests/conftest.py)."""


@pytest.fixture
async def make_fs(flowstone_url: str) -> AsyncIterator[MakeFs]:
    """Build FlowStone instances on the test database (fast settings; node "n1" unless
    given; `url`: another way to it, e.g. through a pooler); their nodes are stopped and
    their pools closed afterwards."""
    made: list[FlowStone] = []

    def make(node: str = "n1", *, url: str | None = None, **settings: Any) -> FlowStone:
        fs = FlowStone(url or flowstone_url, node=node, **{**FAST, **settings})
        made.append(fs)
        return fs

    yield make
    for fs in made:
        with anyio.fail_after(15):
            await fs.stop()
        await fs.aclose()
