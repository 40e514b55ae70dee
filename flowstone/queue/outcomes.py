"""Outcomes: what became of one execution, built so that nothing a job does can break them.

Every path out of `perform` ends in an `Outcome` the ack statement can always store:
error text is made valid for Postgres (no NUL, no lone surrogate) and bounded in size,
delays are finite and clamped, and a failure while describing a failure (an exception
whose `__str__` raises, a `backoff()` that raises or returns nonsense) is itself recorded.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from dataclasses import dataclass
from typing import Any

import structlog

from flowstone.errors import ValidationError
from flowstone.queue import backoff as backoff_
from flowstone.queue.job import FINAL_STATES, Job, JobState
from flowstone.queue.results import Cancel, Discard, Snooze
from flowstone.queue.threads import BaseExceptionInThreadError

_log = structlog.get_logger("flowstone.executor")

MAX_DELAY = 10 * 365 * 24 * 3600.0
"""The longest a job can be scheduled ahead (ten years): keeps timestamps in range."""

MAX_ERROR_CHARS = 10_000
MAX_TRACEBACK_CHARS = 50_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one execution of a job, ready to acknowledge.

    `delay` schedules the next run (retry backoff or snooze); `refund` gives the
    attempt back (a snooze, or a job handed back at shutdown); `snoozed` counts a snooze;
    `error` is appended to the job's errors (the database adds `at`); `exception` is
    what `perform` raised, kept in memory only; `result` is the value recorded with the
    job when `recorded` (its worker's `record_result`).
    """

    job: Job
    state: JobState
    delay: float | None = None
    error: dict[str, Any] | None = None
    snoozed: bool = False
    refund: bool = False
    exception: BaseException | None = None
    result: Any = None
    recorded: bool = False

    @property
    def rich(self) -> bool:
        """Whether acknowledging it takes more than the plain ack: it records a result, or
        it ends a job of a workflow (whose dependents must hear of it)."""
        return self.recorded or (self.state in FINAL_STATES and "workflow" in self.job.meta)

    @property
    def kind(self) -> str:
        """The outcome as counted by drains and telemetry: a state, or `snoozed`."""
        return "snoozed" if self.snoozed else self.state.value

    def encode(self) -> dict[str, Any]:
        """The row the ack statement reads (delay clamped, error text storable)."""
        return {
            "id": self.job.id,
            "attempt": self.job.attempt,
            "attempted_at": None if self.job.attempted_at is None else self.job.attempted_at.isoformat(),
            "state": self.state.value,
            "delay": None if self.delay is None else clamp_delay(self.delay),
            "error": None if self.error is None else storable(self.error),
            "snoozed": self.snoozed,
            "refund": self.refund,
            **({"result": self.result} if self.recorded else {}),
        }


def clean_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` as Postgres can store it: NUL and lone surrogates escaped, at most `limit`
    characters (the cut is marked)."""
    cleaned = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(cleaned) > limit:
        return f"{cleaned[:limit]}… [{len(cleaned) - limit} more characters cut]"
    return cleaned


def storable(error: dict[str, Any]) -> dict[str, Any]:
    """An error entry with its texts cleaned (see `clean_text`)."""
    limits = {"error": MAX_ERROR_CHARS, "traceback": MAX_TRACEBACK_CHARS}
    return {
        key: clean_text(value, limits.get(key, MAX_ERROR_CHARS)) if isinstance(value, str) else value
        for key, value in error.items()
    }


def clamp_delay(seconds: float) -> float:
    """A finite delay between 0 and MAX_DELAY (NaN counts as 0)."""
    if math.isnan(seconds):
        return 0.0
    return min(max(seconds, 0.0), MAX_DELAY)


def describe(error: BaseException) -> str:
    """`Type: message`, even when the exception's `__str__` raises."""
    error = _original(error)
    return f"{type(error).__name__}: {safe_str(error)}"


def _original(error: BaseException) -> BaseException:
    """What the job raised (a BaseException from a sync job's thread arrives wrapped)."""
    return error.original if isinstance(error, BaseExceptionInThreadError) else error


def trace_of(error: BaseException) -> str | None:
    """The formatted traceback (for an error raised in a job's child process, the child's),
    or None when formatting it fails."""
    remote = getattr(error, "child_traceback", None)
    if isinstance(remote, str):
        return remote
    try:
        return "".join(traceback.format_exception(_original(error)))
    except BaseException:  # formatting calls __str__ and walks frames: never fatal
        return None


def error_entry(job: Job, message: str, trace: str | None = None) -> dict[str, Any]:
    """One element of the job's `errors` list (the database stamps `at`)."""
    return {"attempt": job.attempt, "error": message, "traceback": trace}


def failure(backoff: Any, job: Job, error: BaseException) -> Outcome:
    """A raised error: retryable after `backoff(job)` seconds while attempts remain, else
    discarded. A backoff that raises or returns no usable number falls back to Oban's
    default, and the error entry says so."""
    message, error = describe(error), _original(error)
    if job.attempt >= job.max_attempts:
        return Outcome(
            job, JobState.DISCARDED, error=error_entry(job, message, trace_of(error)), exception=error
        )
    delay, note = _delay(backoff, job)
    entry = error_entry(job, message if note is None else f"{message} ({note})", trace_of(error))
    return Outcome(job, JobState.RETRYABLE, delay=delay, error=entry, exception=error)


def _delay(backoff: Any, job: Job) -> tuple[float, str | None]:
    try:
        delay = backoff(job) if backoff is not None else backoff_.exponential(job.attempt)
        seconds = float(delay)
    except BaseException as broken:
        return backoff_.exponential(job.attempt), f"backoff() failed with {describe(broken)}; default used"
    if not math.isfinite(seconds) or seconds < 0:
        return backoff_.exponential(job.attempt), f"backoff() returned {delay!r}; default used"
    return clamp_delay(seconds), None


def from_result(job: Job, result: object, record: int | None = None) -> Outcome:
    """What `perform` returned, as an outcome. With `record` (a size limit in bytes), any
    other value completes the job and is recorded with it (it must be JSON of at most
    that size: else this raises, failing the job). Without, anything but None, Snooze,
    Discard or Cancel completes the job with a warning: a returned error string is not
    mistaken for silence."""
    if isinstance(result, Snooze):
        return Outcome(job, JobState.SCHEDULED, delay=float(result.seconds), snoozed=True, refund=True)
    if isinstance(result, Discard):
        return Outcome(
            job, JobState.DISCARDED, error=error_entry(job, f"discarded: {safe_str(result.reason)}")
        )
    if isinstance(result, Cancel):
        return Outcome(
            job, JobState.CANCELLED, error=error_entry(job, f"cancelled: {safe_str(result.reason)}")
        )
    if record is not None:
        return Outcome(job, JobState.COMPLETED, result=recordable(result, record), recorded=True)
    if result is not None:
        _log.warning(
            "perform returned a value that is not None, Snooze, Discard or Cancel; the job completed "
            "and the value was ignored (raise to fail, return Discard to discard)",
            job_id=job.id,
            worker=job.worker,
            returned=clean_text(safe_str(result), 200),
        )
    return Outcome(job, JobState.COMPLETED)


_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""A NUL character's escape in JSON text (not an escaped backslash followed by `u0000`)."""


def recordable(value: object, limit: int) -> Any:
    """`value` as it is stored and read back: JSON Postgres accepts (no NUL, no lone
    surrogate, finite numbers) of at most `limit` bytes; else a ValidationError saying why."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError) as error:
        raise ValidationError(f"perform's return value cannot be recorded as JSON: {error}") from None
    if _NUL.search(text):
        raise ValidationError("perform's return value cannot be recorded: it holds a NUL character")
    if size > limit:
        raise ValidationError(
            f"perform's return value is {size} bytes of JSON, over the worker's result_limit of {limit}"
        )
    return json.loads(text)


def safe_str(value: object) -> str:
    """`str(value)`, or a note when its `__str__` raises."""
    try:
        return str(value)
    except BaseException as broken:
        return f"<unprintable {type(value).__name__}: its __str__ raised {type(broken).__name__}>"


def unresolvable(job: Job, message: str) -> Outcome:
    """A job that can never run as stored: discarded, kept for inspection."""
    return Outcome(job, JobState.DISCARDED, error=error_entry(job, message))


def interrupted(job: Job, reason: str) -> Outcome:
    """The outcome of a job the node stopped: cancelled on request, else handed back with
    its attempt refunded (it did not finish)."""
    if reason == "cancel":
        return Outcome(job, JobState.CANCELLED, error=error_entry(job, "cancelled while executing"))
    return Outcome(job, JobState.AVAILABLE, delay=0.0, refund=True)


def last_resort(job: Job, error: BaseException) -> Outcome:
    """When building the outcome itself failed: the job fails (or is discarded when out
    of attempts) with a description of what went wrong, after the default backoff."""
    return failure(None, job, error)
