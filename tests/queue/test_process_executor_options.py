"""The process executor's options, refused where they are given (no process is started)."""

from __future__ import annotations

import pytest

from flowstone import FlowStone, Job, Worker
from flowstone.errors import ValidationError
from flowstone.queue.config import QueueConfig
from flowstone.queue.process_pool import ProcessPool, exit_description, worker_location
from flowstone.queue.worker import WorkerRegistry


def sync_worker(name: str, executor: str | None) -> type[Worker]:
    """An unregistered sync worker of queue `iso` with this executor."""

    def perform(self: Worker, job: Job) -> None:
        return None

    body = {"register": False, "queue": "iso", "executor": executor, "perform": perform}
    return type(name, (Worker,), {**body, "__module__": __name__})


Isolated = sync_worker("Isolated", "process")
Threaded = sync_worker("Threaded", "thread")
Plain = sync_worker("Plain", None)


def test_an_async_worker_with_the_process_executor_is_refused_at_definition() -> None:
    with pytest.raises(ValidationError, match=r"Aio.perform is async, and executor='process' runs a sync"):

        class Aio(Worker):
            register = False
            executor = "process"

            async def perform(self, job: Job) -> None:
                return None


def test_an_unknown_executor_is_refused_at_definition() -> None:
    with pytest.raises(ValidationError, match=r"Forked.executor must be 'thread' or 'process'; got 'fork'"):

        class Forked(Worker):
            register = False
            executor = "fork"  # type: ignore[assignment]

            def perform(self, job: Job) -> None:
                return None


def test_the_worker_s_executor_wins_over_its_queue_s() -> None:
    fs = FlowStone("postgresql://localhost/unused")
    threads = ProcessPool(fs, "iso", QueueConfig(limit=1))
    processes = ProcessPool(fs, "iso", QueueConfig(limit=1, executor="process"))
    assert [threads.takes(w) for w in (Isolated, Threaded, Plain)] == [True, False, False]
    assert [processes.takes(w) for w in (Isolated, Threaded, Plain)] == [True, False, True]


def test_a_process_worker_a_child_cannot_import_is_refused_before_the_node_runs() -> None:
    class Local(Worker):
        register = False
        queue = "iso"

        def perform(self, job: Job) -> None:
            return None

    class LocalAsync(Worker):
        register = False
        queue = "iso"

        async def perform(self, job: Job) -> None:
            return None

    registry = WorkerRegistry()
    registry.register(LocalAsync)
    fs = FlowStone("postgresql://localhost/unused", registry=registry)
    fs.node({"iso": {"limit": 1, "executor": "process"}})  # an async worker stays on the node's loop
    registry.register(Local)
    fs.node({"iso": 1})  # threads: nothing to import
    refused = r"is defined inside a function .*Local.*define it at the top level"
    with pytest.raises(ValidationError, match=refused):
        fs.node({"iso": {"limit": 1, "executor": "process"}})


def test_a_worker_of_a_script_run_as_main_is_refused_naming_the_fix() -> None:
    in_main = type("SendMail", (Isolated,), {"__module__": "__main__", "register": False})
    with pytest.raises(ValidationError, match=r"defined in the script run as __main__: define it at the top"):
        worker_location(in_main)
    assert worker_location(Isolated) == (__name__, "Isolated")


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (-11, "was killed by SIGSEGV (signal 11)"),
        (-9, "was killed by SIGKILL (signal 9) (the kernel's OOM killer sends it when memory runs out)"),
        (3, "exited with code 3"),
    ],
)
def test_a_dead_child_is_described_by_its_signal_or_code(code: int, text: str) -> None:
    assert exit_description(code) == text


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"executor": "fork"}, "executor"),
        ({"max_tasks_per_child": 0}, "max_tasks_per_child"),
        ({"max_memory_per_child": -1}, "max_memory_per_child"),
    ],
)
def test_bad_queue_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"queue 'iso'.*{field}"):
        QueueConfig.of("iso", {"limit": 1, **options})


def test_chaos_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="chaos"):
        FlowStone("postgresql://localhost/unused", chaos=1.5)
    assert FlowStone("postgresql://localhost/unused", chaos=0.3, chaos_seed=7).settings.chaos == 0.3
