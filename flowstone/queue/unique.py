"""Unique jobs: the options, and the key the database's unique index enforces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowstone.errors import ValidationError
from flowstone.queue.job import INCOMPLETE_STATES, JobState

STATE_GROUPS: dict[str, tuple[JobState, ...]] = {
    "all": tuple(JobState),
    "incomplete": INCOMPLETE_STATES,
    "successful": (*INCOMPLETE_STATES, JobState.COMPLETED),
    "scheduled": (JobState.SCHEDULED,),
}
FIELDS = ("worker", "queue", "args", "meta")
REPLACEABLE = ("args", "scheduled_at", "priority", "max_attempts", "tags", "meta")
"""Fields `replace` may name: what a conflicting insert may change in a job not yet started."""
UNCOMPARED_META = frozenset({"trace_context"})
"""Meta keys that never take part in uniqueness: a trace context differs per caller."""


def _resolve_states(states: str | Sequence[str]) -> tuple[JobState, ...]:
    if isinstance(states, str):
        if states in STATE_GROUPS:
            return STATE_GROUPS[states]
        states = [states]
    try:
        resolved = tuple(JobState(state) for state in states)
    except ValueError as error:
        raise ValidationError(
            f"Unique states must be a group ({', '.join(STATE_GROUPS)}) or job states; got {states!r}"
        ) from error
    if not resolved:
        raise ValidationError("Unique states must not be empty")
    return resolved


@dataclass(frozen=True, slots=True)
class Unique:
    """Uniqueness of a job among jobs with the same fields, within `period`, in `states`.

    `period` is in seconds from the existing job's insertion (None: forever); `keys`
    narrows args (and meta) to the named keys; `states` is a group name (`all`,
    `incomplete`, `successful`, `scheduled`) or a list of states. The default mirrors
    Oban: 60 s, worker + queue + args, every state but cancelled and discarded.

    `replace` (Oban's `replace:`) names fields of `REPLACEABLE`: a conflicting insert sets
    them on the existing job when it has not started (scheduled, available, retryable),
    in the insert's transaction — e.g. debouncing with `replace=("args", "scheduled_at")`.
    A started job is never changed.
    """

    period: float | None = 60
    fields: Sequence[str] = ("worker", "queue", "args")
    keys: Sequence[str] | None = None
    states: str | Sequence[str] = "successful"
    replace: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.period is not None and (
            isinstance(self.period, bool) or not isinstance(self.period, int | float) or self.period <= 0
        ):
            raise ValidationError(
                f"Unique period must be a positive number of seconds or None; got {self.period!r}"
            )
        unknown = [name for name in self.fields if name not in FIELDS]
        if unknown or not self.fields:
            raise ValidationError(
                f"Unique fields must be a non-empty subset of {FIELDS}; got {list(self.fields)!r}"
            )
        if self.keys is not None and (
            isinstance(self.keys, str) or not all(isinstance(k, str) for k in self.keys)
        ):
            raise ValidationError(f"Unique keys must be a list of argument names; got {self.keys!r}")
        if isinstance(self.replace, str) or any(name not in REPLACEABLE for name in self.replace):
            raise ValidationError(
                f"Unique replace must be a list of fields among {REPLACEABLE}; got {self.replace!r}"
            )
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "replace", tuple(self.replace))
        object.__setattr__(self, "keys", None if self.keys is None else tuple(self.keys))
        _resolve_states(self.states)

    @property
    def state_list(self) -> list[str]:
        """The states, as the strings stored in the job's meta for the release trigger."""
        return [state.value for state in _resolve_states(self.states)]

    def key(self, worker: str, queue: str, args: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
        """A stable digest of the chosen fields; equal jobs get equal keys on every node."""
        compared = {key: value for key, value in meta.items() if key not in UNCOMPARED_META}
        values = {"worker": worker, "queue": queue, "args": args, "meta": compared}
        parts = {name: self._narrow(values[name]) for name in self.fields}
        canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _narrow(self, value: Any) -> Any:
        if self.keys is None or not isinstance(value, Mapping):
            return value
        return {key: value.get(key) for key in self.keys}
