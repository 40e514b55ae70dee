"""The process executor's wire format, shared by the node (`process_pool.py`) and its
children (`process_child.py`): frames of JSON (a 4-byte length, then UTF-8 JSON; never
pickle) and a job's columns as JSON."""

from __future__ import annotations

import json
import struct
from datetime import datetime
from typing import Any

from flowstone.queue.job import STATES, Job

HEADER = struct.Struct(">I")
_DATES = ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at", "cancelled_at")
_FIELDS = (
    "id",
    "state",
    "queue",
    "worker",
    "args",
    "meta",
    "tags",
    "errors",
    "attempt",
    "max_attempts",
    "priority",
    "attempted_by",
    "unique_key",
    *_DATES,
)


def frame(message: dict[str, Any]) -> bytes:
    """One message as sent: its length, then its JSON (ASCII: a lone surrogate a job put in
    a text crosses escaped, to be made storable by the node like any other text)."""
    body = json.dumps(message, allow_nan=False).encode("ascii")
    return HEADER.pack(len(body)) + body


def length_of(header: bytes) -> int:
    """The body length a frame's 4-byte header announces."""
    (length,) = HEADER.unpack(header)
    return int(length)


def job_to_json(job: Job) -> dict[str, Any]:
    """The columns of `job` a child needs, as JSON."""
    values = {name: getattr(job, name) for name in _FIELDS}
    values["state"] = job.state.value
    for name in _DATES:
        values[name] = None if values[name] is None else values[name].isoformat()
    return values


def job_from_json(values: dict[str, Any]) -> Job:
    """The `Job` that `job_to_json` describes."""
    values = dict(values)
    values["state"] = STATES[values["state"]]
    for name in _DATES:
        values[name] = None if values[name] is None else datetime.fromisoformat(values[name])
    return Job(**values)
