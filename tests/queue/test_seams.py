"""The seams under the facade: the extension an instance is given, the engine its testing
mode picks, chaos only in an executor built inside `with_chaos`."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from flowstone import FlowStone, Job, JobState, ValidationError, Worker
from flowstone.queue.chaos import chaos
from flowstone.queue.engines import DatabaseEngine, ManualEngine
from flowstone.queue.executor import Executor
from flowstone.queue.inline import InlineEngine
from flowstone.queue.plugins import CronEntry, Plugin
from flowstone.queue.plugins.base import PluginRuntime
from flowstone.queue.worker import WorkerRegistry
from flowstone.testing import with_testing_mode

URL = "postgresql://postgres@127.0.0.1:5432/postgres"  # never connected to here


class Nightly(Worker):
    queue = "seams"
    register = False

    def perform(self, job: Job) -> None:
        return None


class Idle:
    name = "idle"
    leader_only = False
    interval = 60.0

    async def tick(self, runtime: PluginRuntime) -> None:
        return None


class Extra:
    """An extension of the test's own: one cron entry, one plugin."""

    def __init__(self) -> None:
        self.plugin = Idle()

    def cron_entries(self, workers: WorkerRegistry) -> list[CronEntry]:
        return [CronEntry("0 1 * * *", Nightly)]

    def plugins(self) -> list[Plugin]:
        return [self.plugin]


@pytest.mark.anyio
async def test_an_extension_adds_its_cron_entries_and_plugins_to_every_node() -> None:
    extra = Extra()
    fs = FlowStone(URL, assets=extra, registry=WorkerRegistry())
    assert [entry.expression for entry in fs.all_cron_entries()] == ["0 1 * * *"]
    node = fs.node({})
    assert extra.plugin in node.plugins
    cron = next(plugin for plugin in node.plugins if plugin.name == "cron")
    assert [entry.worker for entry in cron.entries] == [Nightly]  # type: ignore[attr-defined]


def test_assets_that_are_no_extension_are_refused_when_the_instance_is_built() -> None:
    with pytest.raises(ValidationError, match=r"assets=\.\.\.\) must be an AssetRegistry; got object"):
        FlowStone(URL, assets=object())  # type: ignore[arg-type]


def test_the_testing_mode_picks_the_engine_and_with_testing_mode_swaps_it() -> None:
    assert type(FlowStone(URL).engine) is DatabaseEngine
    assert type(FlowStone(URL, testing="manual").engine) is ManualEngine
    fs = FlowStone(URL, testing="inline")
    assert type(fs.engine) is InlineEngine and not fs.engine.runs_queues
    with with_testing_mode("manual", fs):
        assert (type(fs.engine), fs.settings.testing) == (ManualEngine, "manual")
    assert (type(fs.engine), fs.settings.testing) == (InlineEngine, "inline")


def _outcome(executor: Executor) -> Any:
    job = Job(id=1, state=JobState.EXECUTING, queue="seams", worker=Nightly.name, args={}, attempt=1)

    async def run() -> Any:
        return await executor.run_job(job)

    return anyio.run(run)


def test_chaos_strikes_only_in_an_executor_built_inside_the_block() -> None:
    registry = WorkerRegistry()
    registry.register(Nightly)
    outside = Executor(registry, None)
    with chaos(failure_rate=1.0):
        inside = Executor(registry, None)
        assert _outcome(outside).kind == "completed", "no chaos check on production's path"
        failed = _outcome(inside)
    assert failed.kind == "retryable" and "a failure injected before perform" in failed.error["error"]
