"""Asset tests: a clean asset graph and memory store per test, and a drain that starts
as soon as a job is inserted (for callers that block, like materialize(wait=True))."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowstone import FlowStone
from flowstone.assets import FilesystemIOManager, default_io_managers
from flowstone.testing import drain_queue


@pytest.fixture(autouse=True)
def _clean_graph(clean_graph: None) -> None:
    """Every asset test starts on an empty graph and memory store (tests/conftest.py)."""


@pytest.fixture
def files(tmp_path: Path) -> FilesystemIOManager:
    """A filesystem IO manager under the test's tmp dir, registered as `files`."""
    manager = FilesystemIOManager(tmp_path / "assets")
    default_io_managers.register("files", manager)
    return manager


@pytest.fixture
def drain_on_insert(flowstone: FlowStone) -> Iterator[Callable[[], threading.Thread]]:
    """Start a thread that waits for the next insert on the jobs channel, then drains."""
    threads: list[threading.Thread] = []

    def start() -> threading.Thread:
        conn = flowstone.connect(autocommit=True)
        conn.execute(f'LISTEN "{flowstone.queries.channel}"')

        def drain() -> None:
            try:
                assert list(conn.notifies(timeout=10, stop_after=1)), "no job was inserted"
            finally:
                conn.close()
            drain_queue("assets", with_scheduled=True)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        thread.join(timeout=10)
