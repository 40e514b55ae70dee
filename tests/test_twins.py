"""Every sync call has an async twin named with an `a` prefix, taking the same parameters
(names, kinds and defaults), so switching between them never surprises."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import pytest

import flowstone
import flowstone.queue.plan
import flowstone.testing
from flowstone import FlowStone, MaterializationRecords, Worker
from flowstone.insights import Insights
from flowstone.queue.database import Database
from flowstone.queue.engines import DatabaseEngine
from flowstone.queue.inline import InlineEngine

# Sync-only by nature: a twin would make no sense (or has a different shape on purpose).
SYNC_ONLY = {"run", "start"}


def twins(owner: type | ModuleType) -> list[tuple[str, Any, Any]]:
    """(name, sync, async) for every public `name` whose `a` + name also exists."""
    found = []
    for name in dir(owner):
        twin = getattr(owner, f"a{name}", None)
        if name.startswith("_") or name in SYNC_ONLY or twin is None or not callable(twin):
            continue
        found.append((name, getattr(owner, name), twin))
    return found


OWNERS: list[type | ModuleType] = [
    FlowStone,
    Database,
    DatabaseEngine,
    InlineEngine,
    Insights,
    MaterializationRecords,
    Worker,
    flowstone,
    flowstone.testing,
    flowstone.queue.plan,  # the drivers of plans: run_on / arun_on, stream / astream
]
PAIRS = [(owner, *pair) for owner in OWNERS for pair in twins(owner)]


def test_the_public_api_has_twins() -> None:
    names = {name for _, name, _, _ in PAIRS}
    expected = {
        "insert",
        "insert_all",
        "get_job",
        "overview",
        "jobs",
        "materialize",
        "backfill",
        "drain_queue",
        "watch_run",
        "stream",
    }
    assert expected <= names


@pytest.mark.parametrize(
    ("owner", "name", "sync", "twin"), PAIRS, ids=[f"{o.__name__}.{n}" for o, n, _, _ in PAIRS]
)
def test_twins_take_the_same_parameters(owner: object, name: str, sync: Any, twin: Any) -> None:
    def shape(function: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert shape(sync) == shape(twin), f"{name} and a{name} differ"
    body = inspect.unwrap(twin)  # an asynccontextmanager wraps an async generator
    assert inspect.iscoroutinefunction(body) or inspect.isasyncgenfunction(body), f"a{name} is not async"
