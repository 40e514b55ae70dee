"""Partition definitions: which keys an asset has, and their lossless string form.

A key travels as a string (job args, materialization records, IO manager keys) and comes
back as the same value: `DailyPartitions` keys are `date`s (`"2025-01-15"`),
`HourlyPartitions` keys are UTC datetimes on the hour (`"2025-01-15T13:00:00+00:00"`),
`StaticPartitions` keys are the strings themselves. Ranges are inclusive at both ends.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from flowstone.errors import FlowStoneError

K = TypeVar("K", date, datetime)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PartitionsDefinition(ABC):
    """The keys of a partitioned asset. Subclasses define `parse`, `to_text` and `keys`."""

    @abstractmethod
    def parse(self, key: Any) -> Any:
        """The canonical key for `key` (a key or its string form); raise ValueError if none."""

    @abstractmethod
    def to_text(self, key: Any) -> str:
        """The string form of a canonical key."""

    @abstractmethod
    def keys(self, start: Any, end: Any) -> list[Any]:
        """Canonical keys from `start` to `end` (both included, both already canonical)."""

    def validate(self, key: Any) -> Any:
        """The canonical key, or a validation_error naming the key that does not fit."""
        try:
            return self.parse(key)
        except (ValueError, TypeError) as error:
            raise FlowStoneError(
                "validation_error",
                f"partition {key!r} does not fit {self!r}: {error}",
                context={"partition": repr(key)},
            ) from error

    def serialize(self, key: Any) -> str:
        """The string form of `key` (validated)."""
        return self.to_text(self.validate(key))

    def deserialize(self, text: str) -> Any:
        """The key a string form stands for (validated)."""
        if not isinstance(text, str):
            raise FlowStoneError("validation_error", f"a serialized partition is a string; got {text!r}")
        return self.validate(text)

    def range(self, start: Any, end: Any) -> list[Any]:
        """Every key from `start` to `end`, both included (for backfills)."""
        first, last = self.validate(start), self.validate(end)
        found = self.keys(first, last)
        if not found:
            raise FlowStoneError(
                "validation_error", f"partition range {start!r} .. {end!r} is empty (start after end)"
            )
        return found


def _check_bounds(key: K, start: K, end: K | None) -> K:
    if key < start:
        raise ValueError(f"before the first partition {start}")
    if end is not None and key > end:
        raise ValueError(f"after the last partition {end}")
    return key


def _day(value: date | str, what: str) -> date:
    if isinstance(value, str):
        if not _DATE.match(value):
            raise ValueError(f"{what} {value!r} is not a YYYY-MM-DD date")
        return date.fromisoformat(value)
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{what} must be a date or a YYYY-MM-DD string; got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class DailyPartitions(PartitionsDefinition):
    """One partition per calendar day from `start` (to `end`, when given)."""

    start: date
    end: date | None = None

    def __init__(self, start: date | str, end: date | str | None = None) -> None:
        object.__setattr__(self, "start", _day(start, "start"))
        object.__setattr__(self, "end", None if end is None else _day(end, "end"))
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")

    def parse(self, key: Any) -> date:
        return _check_bounds(_day(key, "a daily partition"), self.start, self.end)

    def to_text(self, key: date) -> str:
        return key.isoformat()

    def keys(self, start: date, end: date) -> list[date]:
        return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _hour(value: datetime | str, what: str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime or an ISO 8601 string; got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value.isoformat()} has no timezone")
    value = value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise ValueError(f"{what} {value.isoformat()} is not on the hour")
    return value


@dataclass(frozen=True)
class HourlyPartitions(PartitionsDefinition):
    """One partition per hour (UTC-aware datetimes) from `start` (to `end`, when given)."""

    start: datetime
    end: datetime | None = None

    def __init__(self, start: datetime | str, end: datetime | str | None = None) -> None:
        object.__setattr__(self, "start", _hour(start, "start"))
        object.__setattr__(self, "end", None if end is None else _hour(end, "end"))
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")

    def parse(self, key: Any) -> datetime:
        return _check_bounds(_hour(key, "an hourly partition"), self.start, self.end)

    def to_text(self, key: datetime) -> str:
        return key.isoformat()

    def keys(self, start: datetime, end: datetime) -> list[datetime]:
        hours = int((end - start) / timedelta(hours=1))
        return [start + timedelta(hours=n) for n in range(hours + 1)]


@dataclass(frozen=True)
class StaticPartitions(PartitionsDefinition):
    """A fixed list of string keys (e.g. regions); ranges follow the declared order."""

    values: tuple[str, ...] = field(default=())

    def __init__(self, values: Sequence[str]) -> None:
        if isinstance(values, str) or not values:
            raise ValueError(f"StaticPartitions needs a non-empty list of strings; got {values!r}")
        for value in values:
            if not isinstance(value, str) or not value:
                raise ValueError(f"static partition keys are non-empty strings; got {value!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"static partition keys must be unique; got {list(values)!r}")
        object.__setattr__(self, "values", tuple(values))

    def parse(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"a static partition is a string; got {type(key).__name__}")
        if key not in self.values:
            raise ValueError(f"not one of {list(self.values)!r}")
        return key

    def to_text(self, key: str) -> str:
        return key

    def keys(self, start: str, end: str) -> list[str]:
        return list(self.values[self.values.index(start) : self.values.index(end) + 1])
