"""The process executor: a sync `perform` in a child process the node can kill.

A worker with `executor = "process"` (or any sync worker of a queue configured with
`executor="process"`) runs in a child of the node (`process_child.py`): a fresh
interpreter (spawned, never forked from the node's threads) that imports the worker class
by module and name and exchanges JSON with the node. Unlike a thread, a child can be
stopped: at `timeout(job)`, on `cancel_job` and at the end of the shutdown grace it is
killed (SIGTERM to its process group, SIGKILL after `TERM_GRACE`), and the job gets its
outcome once the child is gone — never while it still runs, so a job never runs twice at
once. A child that dies (a segfault, `os._exit`, the OOM killer) fails its job alone; the
next job gets a new child. A child is recycled after `max_tasks_per_child` jobs, or after a
job that left its resident memory above `max_memory_per_child` MiB (read from /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from flowstone.errors import ValidationError
from flowstone.queue.executor import JobTimeoutError
from flowstone.queue.job import Job
from flowstone.queue.outcomes import describe
from flowstone.queue.process_child import frame, job_to_json, length_of
from flowstone.queue.results import Cancel, Discard, Snooze
from flowstone.queue.worker import Worker, _importable_module

if TYPE_CHECKING:
    from flowstone.queue.config import QueueConfig
    from flowstone.queue.instance import FlowStone

_log = structlog.get_logger("flowstone.process_pool")

TERM_GRACE = 1.0
"""Seconds a child gets to exit after SIGTERM before it is sent SIGKILL."""

CHILD_MAIN = "import sys; from flowstone.queue.process_child import main; sys.exit(main(sys.argv[1:]))"
"""A child's program (not `-m`: the package that holds the module imports it first)."""

CHILD_POOL_SIZE = 2
"""Connections of the pool a child's `job.fs` opens (one job at a time uses them)."""


class ChildProcessDiedError(Exception):
    """The child process running the job died before it answered (`before_start`: before
    `perform` began)."""

    def __init__(self, message: str, *, before_start: bool) -> None:
        super().__init__(message)
        self.before_start = before_start


class RaisedInChild(Exception):  # noqa: N818 - its subclasses carry the name of what was raised
    """What `perform` raised in a child, rebuilt in the node: a subclass named after the
    original type (so the recorded error reads `ValueError: …`), with its traceback."""

    child_traceback: str | None = None


_RAISED: dict[str, type[RaisedInChild]] = {}


def raised_in_child(name: str, message: str, trace: str | None) -> RaisedInChild:
    """An exception standing for the child's `name: message`."""
    if name not in _RAISED:
        _RAISED[name] = type(name, (RaisedInChild,), {"__module__": "flowstone.child"})
    error = _RAISED[name](message)
    error.child_traceback = trace
    return error


def worker_location(worker: type[Worker]) -> tuple[str, str]:
    """The module and qualified name a child imports `worker` by; a clear error when it
    cannot (a class of a script run as `__main__`, or one defined inside a function)."""
    module = worker.__module__
    if module == "__main__" or "<locals>" in worker.__qualname__:
        where = (
            "in the script run as __main__"
            if module == "__main__"
            else f"inside a function ({worker.__qualname__})"
        )
        named = _importable_module(module) if module == "__main__" else module
        hint = f" (e.g. `flowstone worker --app {named}:app`)" if named else ""
        raise ValidationError(
            f"worker {worker.name!r} runs in a child process (executor='process'), which imports "
            f"its class by module and name, but it is defined {where}: define it at the top level "
            f"of a module the node imports{hint}, or use executor='thread'"
        )
    return module, worker.__qualname__


def resident_mib(pid: int) -> float | None:
    """A process's resident memory in MiB (VmRSS of /proc), or None where it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def exit_description(code: int | None) -> str:
    """`killed by SIGSEGV (signal 11)` or `exited with code 3`."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        hint = " (the kernel's OOM killer sends it when memory runs out)" if -code == signal.SIGKILL else ""
        return f"was killed by {name} (signal {-code}){hint}"
    return f"exited with code {code}"


class ChildProcess:
    """One child and the node's end of its socket."""

    def __init__(
        self, process: asyncio.subprocess.Process, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.tasks = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def spawn(cls, setup: dict[str, Any]) -> ChildProcess:
        """Start a child and send it its setup."""
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD_MAIN,
                str(theirs.fileno()),
                str(os.getpid()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own process group: killed with what it started
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        child = cls(process, reader, writer)
        await child.send(setup)
        return child

    @property
    def gone(self) -> bool:
        """Whether the child has died (an idle one too: killed by an operator, the OOM killer)."""
        return self.process.returncode is not None or self.reader.at_eof()

    async def send(self, message: dict[str, Any]) -> None:
        self.writer.write(frame(message))
        await self.writer.drain()

    async def receive(self, *, started: bool) -> dict[str, Any]:
        """The child's next message; ChildProcessDiedError when it died instead."""
        try:
            header = await self.reader.readexactly(4)
            body = await self.reader.readexactly(length_of(header))
        except (asyncio.IncompleteReadError, ConnectionError):
            raise await self._died(started) from None
        return dict(json.loads(body))

    async def _died(self, started: bool) -> ChildProcessDiedError:
        code = await self.process.wait()
        when = "returned" if started else "began"
        return ChildProcessDiedError(
            f"the job's process (pid {self.pid}) {exit_description(code)} before perform {when}",
            before_start=not started,
        )

    async def run(self, request: dict[str, Any], job: Job, timeout: float | None) -> dict[str, Any]:
        """Send a job; return the child's reply. Its timeout counts from the child's `started`
        (importing the worker's module is not the job's time)."""
        self.tasks += 1
        try:
            await self.send(request)
        except ConnectionError:
            raise await self._died(started=False) from None
        message = await self.receive(started=False)
        if message["event"] == "done":  # the class could not be loaded
            return dict(message["reply"])
        with anyio.move_on_after(timeout) as scope:
            while (message := await self.receive(started=True))["event"] == "progress":
                report = message["report"]
                job.progress(report["fraction"], report["message"])
            return dict(message["reply"])
        assert scope.cancelled_caught
        raise JobTimeoutError(
            f"perform exceeded its timeout of {timeout} s; its process (pid {self.pid}) was killed"
        )

    async def kill(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after `TERM_GRACE`; returns once the
        child has exited (shielded: a job's outcome must wait for it, even when cancelled)."""
        with anyio.CancelScope(shield=True):
            for sent in (signal.SIGTERM, signal.SIGKILL):
                if self.process.returncode is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, sent)
                with anyio.move_on_after(TERM_GRACE):
                    await self.process.wait()
            await self.process.wait()
            self.writer.close()

    async def retire(self) -> None:
        """Let an idle child end on its own (it exits when its socket closes), else kill it."""
        with anyio.CancelScope(shield=True):
            self.writer.close()
            with anyio.move_on_after(TERM_GRACE):
                await self.process.wait()
        await self.kill()


class ProcessPool:
    """The children of one producer: a job takes an idle child or a new one, and gives it
    back after a normal reply unless it is due for recycling. A child recycled, timed out or
    dead is replaced in the background, so the next job finds one started."""

    def __init__(self, fs: FlowStone, queue: str, config: QueueConfig) -> None:
        self.fs = fs
        self.queue = queue
        self.config = config
        self.idle: list[ChildProcess] = []
        self.busy: set[ChildProcess] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False

    def takes(self, worker: type[Worker]) -> bool:
        """Whether a job of `worker` (a sync one) runs in a child of this pool."""
        chosen = worker.executor or self.config.executor
        return chosen == "process"

    def check(self, workers: list[type[Worker]]) -> None:
        """Refuse, before the node runs, a sync worker of this queue a child could not import."""
        for worker in workers:
            if worker.queue == self.queue and not worker.is_async() and self.takes(worker):
                worker_location(worker)

    async def perform(self, worker: type[Worker], job: Job, timeout: float | None) -> object:
        """Run `worker.perform(job)` in a child; return what it returned, raise what it raised
        (rebuilt: `RaisedInChild`), or fail the job when the child died or timed out."""
        module, qualname = worker_location(worker)
        request = {"module": module, "qualname": qualname, "job": job_to_json(job)}
        while True:
            child = await self._acquire()
            try:
                reply = await child.run(request, job, timeout)
            except BaseException as error:
                self.busy.discard(child)
                await child.kill()
                if not isinstance(error, anyio.get_cancelled_exc_class()):
                    self._in_background(self._replace(None))
                if not _died_unused(error, child):
                    raise
                _log.warning("a reused job process was dead; the job goes to a new one", pid=child.pid)
                continue
            await self._release(child)
            return _rebuilt(reply)

    async def _acquire(self) -> ChildProcess:
        """An idle child that is still alive, else a new one."""
        while self.idle:
            child = self.idle.pop()
            if not child.gone:
                break
            _log.warning("a job process died while idle; replaced", pid=child.pid, queue=self.queue)
            await child.kill()  # reaps it
        else:
            child = await ChildProcess.spawn(self._setup())
        self.busy.add(child)
        return child

    async def _release(self, child: ChildProcess) -> None:
        self.busy.discard(child)
        why = self._recycle_reason(child)
        if why is None:
            self.idle.append(child)
            return
        _log.info("recycling a job process", pid=child.pid, reason=why, queue=self.queue)
        self._in_background(self._replace(child))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _replace(self, old: ChildProcess | None) -> None:
        """Retire `old` (its job has its outcome) and start an idle child in its place."""
        if old is not None:
            await old.retire()
        if self._closing:
            return
        try:
            child = await ChildProcess.spawn(self._setup())
        except Exception as error:  # the next job starts its own, and fails if it cannot
            _log.warning("could not start a job process in advance", queue=self.queue, error=describe(error))
            return
        if self._closing:
            await child.retire()
        else:
            self.idle.append(child)

    def _recycle_reason(self, child: ChildProcess) -> str | None:
        limit, ceiling = self.config.max_tasks_per_child, self.config.max_memory_per_child
        if limit is not None and child.tasks >= limit:
            return f"it ran max_tasks_per_child={limit} jobs"
        if ceiling is not None:
            resident = resident_mib(child.pid)
            if resident is not None and resident > ceiling:
                return f"its resident memory {resident:.0f} MiB exceeds max_memory_per_child={ceiling}"
        return None

    def _setup(self) -> dict[str, Any]:
        """What a new child is told: where to import from, and how to build `job.fs`."""
        settings = self.fs.settings
        return {
            "sys_path": [path for path in sys.path if path],
            "settings": {
                "database_url": self.fs.database_url,
                "schema": settings.schema_name,
                "pooler": settings.pooler,
                "direct_url": settings.direct_url,
                "node": settings.node,
                "pool_size": CHILD_POOL_SIZE,
                "connect_timeout": settings.connect_timeout,
                "statement_timeout": settings.statement_timeout,
            },
        }

    async def aclose(self) -> None:
        """End every child (idle ones gently); called when the node stops."""
        self._closing = True
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*self._background, return_exceptions=True)
            children, self.idle = [*self.idle, *self.busy], []
            self.busy.clear()
            async with anyio.create_task_group() as group:
                for child in children:
                    group.start_soon(child.retire)


def _died_unused(error: BaseException, child: ChildProcess) -> bool:
    """Whether a child that had served other jobs died before this one began (it died
    while idle, unnoticed): the job never ran there and goes to a new child. A new child
    that dies before `perform` (its worker's module crashes it) fails the job instead."""
    return isinstance(error, ChildProcessDiedError) and error.before_start and child.tasks > 1


def _rebuilt(reply: dict[str, Any]) -> object:
    """What `perform` returned in the child, as the executor expects it; raises what it raised."""
    kind = reply["kind"]
    rebuild: dict[str, Callable[[], object]] = {
        "none": lambda: None,
        "snooze": lambda: Snooze(reply["seconds"]),
        "discard": lambda: Discard(reply["reason"]),
        "cancel": lambda: Cancel(reply["reason"]),
        "value": lambda: reply["value"],
        "ignored": lambda: reply["text"],
    }
    if kind == "error":
        raise raised_in_child(reply["type"], reply["message"], reply["traceback"])
    return rebuild[kind]()
