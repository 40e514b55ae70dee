"""The command line's tests run the shared workers and define assets: each starts with the
workers reset and an empty asset graph (the fixtures: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh(fresh_workers: None, clean_graph: None) -> None:
    """Nothing a previous test recorded or defined is seen."""
