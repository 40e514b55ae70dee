"""One structured log line per job outcome, as Oban's default logger writes: a telemetry
handler on `job.stop`, `job.exception` and `lifeline.rescue`.

A failure that will be retried logs a warning, a discarded job an error, a cancelled or
rescued one a warning; a completion (and a snooze) logs at debug, and only when logging was
configured to show debug (`flowstone worker --log-level debug`). Every node started with
`fs.run()`, `await fs.start()` or `flowstone worker` attaches it (once per process);
`FlowStone(log_jobs=False)` (FLOWSTONE_LOG_JOBS=false) keeps an instance's jobs out of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import structlog

from flowstone.queue import telemetry

EVENTS = ("job.stop", "job.exception", "lifeline.rescue")
LEVELS = {
    "completed": logging.DEBUG,
    "snoozed": logging.DEBUG,
    "retryable": logging.WARNING,
    "cancelled": logging.WARNING,
    "discarded": logging.ERROR,
}
MAX_ERROR = 500
"""Characters of the recorded error kept in the line (the whole one is in the job's `errors`)."""

_log = structlog.get_logger("flowstone.jobs")
_lock = threading.Lock()
_attached = False


def attach() -> None:
    """Attach the outcome logger (idempotent: one line per outcome however many nodes)."""
    global _attached
    with _lock:
        if not _attached:
            for event in EVENTS:
                telemetry.attach(event, handle)
            _attached = True


def detach() -> None:
    """Detach the outcome logger."""
    global _attached
    with _lock:
        for event in EVENTS:
            telemetry.detach(event, handle)
        _attached = False


def handle(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
    """Log the outcome an event reports."""
    if event == "lifeline.rescue":
        for row in metadata["jobs"]:
            _log.warning(
                "job rescued",
                job_id=row["id"],
                queue=row["queue"],
                worker=row.get("worker"),
                attempt=row.get("attempt"),
                node=row.get("node"),
                state=str(row["state"]),
            )
        return
    job = metadata["job"]
    if job._fs is not None and not job._fs.settings.log_jobs:
        return
    state = str(metadata["state"])
    level = LEVELS.get(state, logging.INFO)
    if level == logging.DEBUG and not _shows_debug():
        return
    fields: dict[str, Any] = {
        "job_id": job.id,
        "queue": job.queue,
        "worker": job.worker,
        "state": state,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "duration_ms": round(measurements.get("duration", 0.0) * 1000, 3),
        "queue_time_ms": round(measurements.get("queue_time", 0.0) * 1000, 3),
    }
    error = metadata.get("error")
    if error is not None:
        fields["error_type"] = type(error).__name__
    reason = metadata.get("reason")
    if reason:
        fields["error"] = str(reason)[:MAX_ERROR]
    _log.log(level, f"job {state}", **fields)


def _shows_debug() -> bool:
    """Whether debug lines would be shown: only once logging was configured to (structlog
    unconfigured prints everything, and a library must not flood a program's output)."""
    return structlog.is_configured() and bool(_log.is_enabled_for(logging.DEBUG))
