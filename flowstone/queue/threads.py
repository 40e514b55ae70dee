"""Daemon worker threads for sync `perform`, which report when each job's thread ends.

Python cannot stop a thread. So a sync job whose caller stopped waiting (a cancel, a
shutdown) keeps running, and this pool says so (`running`): the producer keeps its slot
and its row until it really ends. The threads are daemons: a process whose node has
stopped exits without waiting for them, and what they were running is rescued by the
lifeline once the node's heartbeat expires (never run twice at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

import sniffio

T = TypeVar("T")
IDLE_SECONDS = 10.0  # an idle thread waits this long for more work before it ends

_Work = tuple[
    contextvars.Context, Callable[..., Any], tuple[Any, ...], Callable[[Any, BaseException | None], None]
]


class BaseExceptionInThreadError(Exception):
    """A BaseException that is not an Exception (SystemExit, GeneratorExit, KeyboardInterrupt,
    a user's own), or a StopIteration, raised by a function in its thread, carried as an
    ordinary exception: raised through the event loop's frames, such an exception stops the
    loop or slips past the handlers of the coroutines awaiting it (and a future refuses
    StopIteration outright)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(type(original).__name__)
        self.original = original


class _Thread(threading.Thread):
    def __init__(self, pool: DaemonThreads) -> None:
        super().__init__(name="flowstone job thread", daemon=True)
        self.pool = pool
        self.inbox: SimpleQueue[_Work | None] = SimpleQueue()

    def run(self) -> None:
        while True:
            try:
                work = self.inbox.get(timeout=IDLE_SECONDS)
            except Empty:  # idle for too long
                if self.pool.retire(self):
                    return
                continue
            if work is None:
                return
            context, function, args, done = work
            result: Any = None
            error: Exception | None = None
            try:
                result = context.run(_in_thread, function, args)
            except StopIteration as raised:  # a future cannot carry it
                error = BaseExceptionInThreadError(raised)
            except Exception as raised:
                error = raised
            except BaseException as raised:  # reported to the caller as an ordinary exception
                error = BaseExceptionInThreadError(raised)
            self.pool.idle(self)
            done(result, error)
            del result, error


def _in_thread(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Call `function` as code running in a plain thread: the context copied from the loop
    says "asyncio is running here" (sniffio's variable), which would make `anyio.run` (and
    any library asking sniffio) refuse to start an event loop in a sync job."""
    sniffio.current_async_library_cvar.set(None)
    return function(*args)


class DaemonThreads:
    """Runs functions in reusable daemon threads; `run` is awaited from an event loop.

    `on_end(key)` is called on the loop when the function started under `key` ends,
    whether or not its caller was still waiting."""

    def __init__(self, on_end: Callable[[int], None] = lambda key: None) -> None:
        self.on_end = on_end
        self._idle: deque[_Thread] = deque()
        self._lock = threading.Lock()
        self._running: set[int] = set()

    def running(self, key: int) -> bool:
        """Whether the function started under `key` is still running in its thread."""
        return key in self._running

    async def run(self, key: int, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` in a thread (in a copy of this context) and return what it
        returns. Cancelling the caller does not stop the thread: `running(key)` stays true
        until it ends."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._running.add(key)

        def done(result: Any, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(self._settle, key, future, result, error)

        self._thread().inbox.put((contextvars.copy_context(), function, args, done))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_consume)  # nobody will read what it raises
            raise

    def _settle(
        self, key: int, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        self._running.discard(key)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
        self.on_end(key)

    def _thread(self) -> _Thread:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        thread = _Thread(self)
        thread.start()
        return thread

    def idle(self, thread: _Thread) -> None:
        """`thread` finished its work and can take more."""
        with self._lock:
            self._idle.append(thread)

    def retire(self, thread: _Thread) -> bool:
        """Whether an idle `thread` may end (it is not about to be handed work)."""
        with self._lock:
            if thread in self._idle:
                self._idle.remove(thread)
                return True
            return False


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
