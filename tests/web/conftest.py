"""Fixtures for the dashboard: an app on the test's database with a small asset graph,
an HTTP client on it (in process), and helpers to post forms with the CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from browser import chromium, close
from support import require_browser
from web_support import QUEUE, Client, client_for, graph

from flowstone import FlowStone
from flowstone.web import create_app


@pytest.fixture
def app_fs(flowstone_url: str) -> Iterator[FlowStone]:
    """The instance the dashboard shows: the test's database, the little asset graph."""
    fs = FlowStone(flowstone_url, assets=graph(), queues={QUEUE: 5})
    yield fs
    fs.close()


@pytest.fixture
async def client(app_fs: FlowStone) -> AsyncIterator[Client]:
    """A client on `create_app(app_fs)`."""
    async with client_for(create_app(app_fs)) as http:
        yield http
    await app_fs.aclose()


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for a module's tests (each test opens its own dashboard)."""
    require_browser()
    browser = chromium()
    yield browser
    close(browser)
