"""Telemetry: named events with measurements and metadata, delivered to attached handlers.

Events: `job.start` (measurements: queue_time), `job.stop` (perform returned) and
`job.exception` (it raised, or the job cannot run: unknown worker, bad args), both with
measurements duration and queue_time and metadata job, queue, worker, state (the
outcome: completed, retryable, discarded, cancelled, snoozed), reason (the error text
recorded on the job, or None) and, for job.exception, error (the exception). Then the
plugins' events (`stager.stage`, `lifeline.rescue`, `pruner.prune`, `leader.elected`,
`leader.lost`, `cron.insert`, …), and `insert.start` / `insert.stop` / `insert.exception`
around every insert (measurements: count, and duration when it ended; metadata: queues).
A handler that raises is logged, never breaking a job.

Handlers observe. To change what is inserted — tracing carries the caller's trace context
in the job's meta — add a preparer (`add_preparer`): it maps each job about to be inserted
to the job to insert, after `insert.start` (so a span started there is current).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from flowstone.queue.worker import NewJob

Handler = Callable[[str, Mapping[str, float], Mapping[str, Any]], None]
Preparer = Callable[["NewJob"], "NewJob"]
INSERT_EVENTS = ("insert.start", "insert.stop", "insert.exception")

_log = structlog.get_logger("flowstone.telemetry")
_handlers: dict[str, list[Handler]] = {}
_lock = threading.Lock()
_preparers: list[Preparer] = []


def attach(event: str, handler: Handler) -> Callable[[], None]:
    """Call `handler(event, measurements, metadata)` on `event` (`"*"` for every event).

    Returns a function that detaches the handler again.
    """
    with _lock:
        _handlers.setdefault(event, []).append(handler)
    return lambda: detach(event, handler)


def detach(event: str, handler: Handler) -> None:
    """Remove a handler attached with `attach`; unknown handlers are ignored."""
    with _lock:
        handlers = _handlers.get(event, [])
        if handler in handlers:
            handlers.remove(handler)


def observed(events: tuple[str, ...]) -> bool:
    """Whether any handler listens to one of `events` (so callers can skip building them)."""
    return bool(_handlers.get("*")) or any(_handlers.get(event) for event in events)


def emit(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
    """Deliver an event to its handlers and the catch-all ones."""
    targets = _handlers.get(event, []) + _handlers.get("*", [])
    for handler in targets:
        try:
            handler(event, measurements, metadata)
        except Exception:
            with contextlib.suppress(Exception):  # not even a broken log may reach the job
                _log.exception("telemetry handler failed", telemetry_event=event, handler=repr(handler))


def add_preparer(preparer: Preparer) -> Callable[[], None]:
    """Pass every job about to be inserted through `preparer`; returns its remover."""
    with _lock:
        _preparers.append(preparer)
    return lambda: remove_preparer(preparer)


def remove_preparer(preparer: Preparer) -> None:
    """Stop using a preparer added with `add_preparer`; unknown ones are ignored."""
    with _lock:
        if preparer in _preparers:
            _preparers.remove(preparer)


@contextmanager
def inserting(jobs: Sequence[NewJob]) -> Iterator[Sequence[NewJob]]:
    """Around an insert: `insert.start`, the preparers, then `insert.stop` (or
    `insert.exception`). Costs nothing when no handler listens and no preparer is set."""
    if not _preparers and not observed(INSERT_EVENTS):
        yield jobs
        return
    metadata = {"queues": sorted({job.queue for job in jobs})}
    start = time.perf_counter()
    emit("insert.start", {"count": len(jobs)}, metadata)
    prepared = list(jobs)
    for preparer in list(_preparers):
        prepared = [preparer(job) for job in prepared]
    try:
        yield prepared
    except BaseException as error:
        emit("insert.exception", _took(start, len(jobs)), {**metadata, "error": error})
        raise
    emit("insert.stop", _took(start, len(jobs)), metadata)


def _took(start: float, count: int) -> dict[str, float]:
    return {"duration": time.perf_counter() - start, "count": count}
