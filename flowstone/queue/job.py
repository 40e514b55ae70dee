"""The job row as Python sees it, and the states a job moves through."""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from flowstone.errors import FlowStoneError, ValidationError, ValidationTypeError
from flowstone.queue.validation import clean_text


class JobState(enum.StrEnum):
    """Mirrors the `job_state` enum in the database (and Oban's states)."""

    AVAILABLE = "available"
    SCHEDULED = "scheduled"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"


STATES: dict[str, JobState] = {state.value: state for state in JobState}
"""A state by its name: a dict lookup, five times cheaper than calling the enum (hot path)."""

INCOMPLETE_STATES = (
    JobState.AVAILABLE,
    JobState.SCHEDULED,
    JobState.EXECUTING,
    JobState.RETRYABLE,
)
FINAL_STATES = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)


@dataclass(slots=True)
class Job:
    """One row of `flowstone.jobs`. `conflict` is True when a unique insert found this job;
    `fs` is the instance running it (while it executes). `result` is the value its worker
    recorded (`Worker.record_result`), `progress_report` its last `progress(...)` report
    as stored (`fraction`, `message`, `at`)."""

    id: int
    state: JobState
    queue: str
    worker: str
    args: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    attempt: int = 0
    max_attempts: int = 20
    priority: int = 0
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    discarded_at: datetime | None = None
    cancelled_at: datetime | None = None
    attempted_by: list[str] | None = None
    unique_key: str | None = None
    result: Any = None
    progress_report: dict[str, Any] | None = None
    conflict: bool = False
    _fs: Any = field(default=None, repr=False, compare=False)
    _on_progress: Callable[[Job], None] | None = field(default=None, repr=False, compare=False)

    @property
    def fs(self) -> Any:
        """The `FlowStone` instance that claimed this job and runs it: insert follow-up jobs
        or read records through it, never through a process default. (Typed `Any`: this
        module lies below the facade, which builds on it.)"""
        if self._fs is None:
            raise FlowStoneError(
                "validation_error",
                f"job {self.id} is not executing on a FlowStone instance (job.fs is set while "
                "perform runs; testing helpers take fs=...)",
            )
        return self._fs

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far `perform` has come (0.0 to 1.0) and, optionally, what it is doing.

        Cheap to call often: the node writes the latest report of each job at most once
        per `progress_interval` (1 s), in one statement for all of its jobs."""
        self.progress_report = progress_report(fraction, message)
        if self._on_progress is not None:
            self._on_progress(self)

    def to_dict(self) -> dict[str, Any]:
        """The row's columns (and `conflict`) as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    @classmethod
    def from_row(cls, row: dict[str, Any], *, conflict: bool = False) -> Job:
        """Build a Job from a dict row of the jobs table (NULL meta/errors read as empty)."""
        values = dict(row)
        values["state"] = STATES[values["state"]]
        if values.get("meta") is None:
            values["meta"] = {}
        if values.get("errors") is None:
            values["errors"] = []
        if "progress" in values:
            values["progress_report"] = values.pop("progress")
        return cls(**values, conflict=conflict)


MAX_PROGRESS_MESSAGE = 1000


def progress_report(fraction: float, message: str | None) -> dict[str, Any]:
    """A progress report as stored: `fraction` in [0, 1], `message` at most 1000 characters."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
        raise ValidationError(f"progress fraction must be a number from 0.0 to 1.0; got {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise ValidationTypeError(f"progress message must be a string or None; got {type(message).__name__}")
    text = None if message is None else clean_text(message, MAX_PROGRESS_MESSAGE)
    return {"fraction": float(fraction), "message": text}


_running: ContextVar[Job | None] = ContextVar("flowstone_running_job", default=None)


def running_job() -> Job | None:
    """The job whose `perform` is running in this context (its thread, for a sync job)."""
    return _running.get()
