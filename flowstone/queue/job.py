"""The job row as Python sees it, and the states a job moves through."""

from __future__ import annotations

import enum
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowstone.errors import FlowStoneError

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone


class JobState(enum.StrEnum):
    """Mirrors the `job_state` enum in the database (and Oban's states)."""

    AVAILABLE = "available"
    SCHEDULED = "scheduled"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"


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
    `fs` is the instance running it (while it executes)."""

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
    conflict: bool = False
    _fs: FlowStone | None = field(default=None, repr=False, compare=False)

    @property
    def fs(self) -> FlowStone:
        """The FlowStone instance that claimed this job and runs it: insert follow-up jobs
        or read records through it, never through a process default."""
        if self._fs is None:
            raise FlowStoneError(
                "validation_error",
                f"job {self.id} is not executing on a FlowStone instance (job.fs is set while "
                "perform runs; testing helpers take fs=...)",
            )
        return self._fs

    def to_dict(self) -> dict[str, Any]:
        """The row's columns (and `conflict`) as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_fs"}

    @classmethod
    def from_row(cls, row: dict[str, Any], *, conflict: bool = False) -> Job:
        """Build a Job from a dict row of the jobs table (NULL meta/errors read as empty)."""
        values = dict(row)
        values["state"] = JobState(values["state"])
        if values.get("meta") is None:
            values["meta"] = {}
        if values.get("errors") is None:
            values["errors"] = []
        return cls(**values, conflict=conflict)


_running: ContextVar[Job | None] = ContextVar("flowstone_running_job", default=None)


def running_job() -> Job | None:
    """The job whose `perform` is running in this context (its thread, for a sync job)."""
    return _running.get()
