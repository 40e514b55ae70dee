"""Telemetry: named events with measurements and metadata, delivered to attached handlers.

Events: `job.start` (measurements: queue_time), `job.stop` (perform returned) and
`job.exception` (it raised, or the job cannot run: unknown worker, bad args), both with
measurements duration and queue_time and metadata job, queue, worker, state (the
outcome: completed, retryable, discarded, cancelled, snoozed), reason (the error text
recorded on the job, or None) and, for job.exception, error (the exception). Then the
plugins' events (`stager.stage`, `lifeline.rescue`, `pruner.prune`, `leader.elected`,
`leader.lost`, `cron.insert`, …). A handler that raises is logged, never breaking a job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog

Handler = Callable[[str, Mapping[str, float], Mapping[str, Any]], None]

_log = structlog.get_logger("flowstone.telemetry")
_handlers: dict[str, list[Handler]] = {}
_lock = threading.Lock()


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
            _log.exception("telemetry handler failed", event=event, handler=repr(handler))
