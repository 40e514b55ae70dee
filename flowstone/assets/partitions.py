"""Partition definitions: which keys an asset has, and their lossless string form.

A key travels as a string (job args, materialization records, IO manager keys) and comes
back as the same value: `DailyPartitions`, `WeeklyPartitions` and `MonthlyPartitions`
keys are `date`s (`"2025-01-15"`; a week or a month is named by its first day),
`HourlyPartitions` keys are UTC datetimes on the hour (`"2025-01-15T13:00:00+00:00"`),
`StaticPartitions` and `DynamicPartitions` keys are the strings themselves, and
`MultiPartitions` keys are tuples with one key per dimension (`"2025-01-02|eu"`). Ranges
are inclusive at both ends.

Time-based definitions are consecutive windows of time (`TimeWindowPartitions`): a
partition exists once its window has closed, and partition mappings (roll-ups, windows)
relate two of them through their windows. A `DynamicPartitions` set grows at run time
(`flowstone.add_partitions`); the keys it holds are read from the database, so until a
`snapshot` of them is taken it only checks a key's form.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import product
from typing import Any, ClassVar, TypeVar

from flowstone.errors import FlowStoneError, ValidationError, ValidationTypeError

K = TypeVar("K", date, datetime)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAGSTER_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:\d{2}$")
_DYNAMIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
MAX_DYNAMIC_KEY = 255


class PartitionsDefinition(ABC):
    """The keys of a partitioned asset. Subclasses define `parse`, `to_text`, `keys` and
    `all_keys`."""

    @abstractmethod
    def parse(self, key: Any) -> Any:
        """The canonical key for `key` (a key or its string form); raise a ValueError (a
        ValidationError) if none."""

    @abstractmethod
    def to_text(self, key: Any) -> str:
        """The string form of a canonical key."""

    @abstractmethod
    def keys(self, start: Any, end: Any) -> list[Any]:
        """Canonical keys from `start` to `end` (both included, both already canonical)."""

    @abstractmethod
    def all_keys(self, now: datetime) -> list[Any]:
        """Every partition that exists at `now`, in order."""

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
        raise ValidationError(f"before the first partition {start}")
    if end is not None and key > end:
        raise ValidationError(f"after the last partition {end}")
    return key


class TimeWindowPartitions(PartitionsDefinition):
    """Consecutive windows of time from `start` (to `end`, when given): a key is the start
    of its window. Subclasses define `window`, `containing` and `shift`."""

    start: Any
    end: Any

    @abstractmethod
    def window(self, key: Any) -> tuple[datetime, datetime]:
        """The UTC instants where the partition's window starts and ends (excluded)."""

    @abstractmethod
    def containing(self, moment: datetime) -> Any:
        """The key whose window holds `moment` (date-based keys use the moment's own
        calendar date: pass it in the time zone you mean); not checked against the bounds."""

    @abstractmethod
    def shift(self, key: Any, periods: int) -> Any:
        """The key `periods` windows after `key` (before, when negative)."""

    def keys(self, start: Any, end: Any) -> list[Any]:
        found = []
        key = start
        while key <= end:
            found.append(key)
            key = self.shift(key, 1)
        return found

    def within_bounds(self, first: Any, last: Any) -> list[Any]:
        """Keys from `first` to `last`, clipped to this definition's start and end."""
        first = max(first, self.start)
        last = last if self.end is None else min(last, self.end)
        return self.keys(first, last) if first <= last else []

    def overlapping(self, begin: datetime, finish: datetime) -> list[Any]:
        """Keys whose window overlaps the UTC interval [begin, finish)."""
        last = self.containing((finish - timedelta(microseconds=1)).astimezone(UTC))
        return self.within_bounds(self.containing(begin.astimezone(UTC)), last)

    def last_closed(self, now: datetime) -> Any | None:
        """The latest partition whose window has closed at `now` (None before the first)."""
        key = self.shift(self.containing(now), -1)
        if self.end is not None and key > self.end:
            key = self.end
        return None if key < self.start else key

    def all_keys(self, now: datetime) -> list[Any]:
        last = self.last_closed(now.astimezone(UTC))
        return [] if last is None else self.keys(self.start, last)


def _day(value: date | str, what: str) -> date:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            if _DATE.match(value):
                return date.fromisoformat(value)
        raise ValidationError(f"{what} {value!r} is not a YYYY-MM-DD date")
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValidationTypeError(f"{what} must be a date or a YYYY-MM-DD string; got {type(value).__name__}")
    return value


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class _DatePartitions(TimeWindowPartitions):
    """Windows of whole days (UTC), named by their first day."""

    start: date
    end: date | None
    label: ClassVar[str] = "a partition"

    def __init__(self, start: date | str, end: date | str | None = None) -> None:
        object.__setattr__(self, "start", self._aligned(_day(start, "start"), "start"))
        object.__setattr__(self, "end", None if end is None else self._aligned(_day(end, "end"), "end"))
        if self.end is not None and self.end < self.start:
            raise ValidationError(f"end {self.end} is before start {self.start}")

    def _aligned(self, day: date, what: str) -> date:
        """`day` if it starts a window; a ValueError saying which day would otherwise."""
        return day

    def parse(self, key: Any) -> date:
        day = _day(key, self.label)
        return _check_bounds(self._aligned(day, "the key"), self.start, self.end)

    def to_text(self, key: date) -> str:
        return key.isoformat()

    def window(self, key: date) -> tuple[datetime, datetime]:
        return _midnight(key), _midnight(self.shift(key, 1))


@dataclass(frozen=True, init=False)
class DailyPartitions(_DatePartitions):
    """`DailyPartitions(start, end=None)`: one partition per calendar day from `start`
    (to `end`, when given), each a `date` or an ISO string (`"2025-01-01"`)."""

    label = "a daily partition"

    start: date
    end: date | None = None

    def containing(self, moment: datetime) -> date:
        return moment.date()

    def shift(self, key: date, periods: int) -> date:
        return key + timedelta(days=periods)


@dataclass(frozen=True)
class WeeklyPartitions(_DatePartitions):
    """One partition per week, named by its first day; weeks start on `start`'s weekday."""

    label = "a weekly partition"

    start: date
    end: date | None = None

    def __init__(self, start: date | str, end: date | str | None = None) -> None:
        object.__setattr__(self, "start", _day(start, "start"))
        _DatePartitions.__init__(self, start, end)

    def _aligned(self, day: date, what: str) -> date:
        if (day - self.start).days % 7:
            raise ValidationError(f"{what} {day} does not start a week (weeks start on {self.start:%A}s)")
        return day

    def containing(self, moment: datetime) -> date:
        day = moment.date()
        return day - timedelta(days=(day - self.start).days % 7)

    def shift(self, key: date, periods: int) -> date:
        return key + timedelta(days=7 * periods)


@dataclass(frozen=True, init=False)
class MonthlyPartitions(_DatePartitions):
    """`MonthlyPartitions(start, end=None)`: one partition per calendar month from `start`
    (to `end`, when given), named by its first day (`"2025-01-01"`)."""

    label = "a monthly partition"

    start: date
    end: date | None = None

    def _aligned(self, day: date, what: str) -> date:
        if day.day != 1:
            raise ValidationError(f"{what} {day} is not the first day of a month")
        return day

    def containing(self, moment: datetime) -> date:
        return moment.date().replace(day=1)

    def shift(self, key: date, periods: int) -> date:
        months = key.year * 12 + key.month - 1 + periods
        return date(months // 12, months % 12 + 1, 1)


def _hour_text(value: str, what: str) -> datetime:
    """A string naming an hour: ISO 8601 with a time zone (`2025-01-15T13:00:00+00:00`),
    Dagster's form (`2025-01-15-13:00`, UTC) or a day (`2025-01-15`: its first hour, UTC)."""
    with contextlib.suppress(ValueError):
        if _DATE.match(value):
            return _midnight(date.fromisoformat(value))
        if _DAGSTER_HOUR.match(value):
            return datetime.strptime(value, "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
        found = datetime.fromisoformat(value)
        if found.tzinfo is not None:
            return found
    raise ValidationError(
        f"{what} {value!r} is not an hour with a time zone: give 2025-01-15T13:00:00+00:00, "
        "2025-01-15-13:00 (UTC) or 2025-01-15 (its first hour, UTC)"
    )


def _hour(value: datetime | date | str, what: str) -> datetime:
    if isinstance(value, str):
        value = _hour_text(value, what)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = _midnight(value)
    if not isinstance(value, datetime):
        raise ValidationTypeError(
            f"{what} must be a datetime, a date or an ISO 8601 string; got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{what} {value.isoformat()} has no timezone")
    value = value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise ValidationError(f"{what} {value.isoformat()} is not on the hour")
    return value


@dataclass(frozen=True)
class HourlyPartitions(TimeWindowPartitions):
    """One partition per hour (UTC-aware datetimes) from `start` (to `end`, when given).

    Keys and bounds may be datetimes or ISO 8601 strings with a time zone, Dagster's keys
    (`2025-01-15-13:00`, UTC) or days (`2025-01-15`: its first hour, UTC). The string form
    of a key is ISO 8601 (`2025-01-15T13:00:00+00:00`)."""

    start: datetime
    end: datetime | None = None

    def __init__(self, start: datetime | date | str, end: datetime | date | str | None = None) -> None:
        object.__setattr__(self, "start", _hour(start, "start"))
        object.__setattr__(self, "end", None if end is None else _hour(end, "end"))
        if self.end is not None and self.end < self.start:
            raise ValidationError(f"end {self.end} is before start {self.start}")

    def parse(self, key: Any) -> datetime:
        return _check_bounds(_hour(key, "an hourly partition"), self.start, self.end)

    def to_text(self, key: datetime) -> str:
        return key.isoformat()

    def window(self, key: datetime) -> tuple[datetime, datetime]:
        return key, key + timedelta(hours=1)

    def containing(self, moment: datetime) -> datetime:
        return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    def shift(self, key: datetime, periods: int) -> datetime:
        return key + timedelta(hours=periods)


@dataclass(frozen=True)
class StaticPartitions(PartitionsDefinition):
    """A fixed list of string keys (e.g. regions); ranges follow the declared order."""

    values: tuple[str, ...] = field(default=())

    def __init__(self, values: Sequence[str]) -> None:
        if isinstance(values, str) or not values:
            raise ValidationError(f"StaticPartitions needs a non-empty list of strings; got {values!r}")
        for value in values:
            if not isinstance(value, str) or not value:
                raise ValidationError(f"static partition keys are non-empty strings; got {value!r}")
        if len(set(values)) != len(values):
            raise ValidationError(f"static partition keys must be unique; got {list(values)!r}")
        object.__setattr__(self, "values", tuple(values))

    def parse(self, key: Any) -> str:
        if not isinstance(key, str):
            raise ValidationTypeError(f"a static partition is a string; got {type(key).__name__}")
        if key not in self.values:
            raise ValidationError(f"not one of {list(self.values)!r}")
        return key

    def to_text(self, key: str) -> str:
        return key

    def keys(self, start: str, end: str) -> list[str]:
        return list(self.values[self.values.index(start) : self.values.index(end) + 1])

    def all_keys(self, now: datetime) -> list[str]:
        return list(self.values)


@dataclass(frozen=True)
class DynamicPartitions(PartitionsDefinition):
    """A set of string keys added at run time (`flowstone.add_partitions(name, keys)`),
    ordered as they were added. Definitions with the same `name` share one set."""

    name: str
    current: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _DYNAMIC_NAME.match(self.name):
            raise ValidationError(
                f"a dynamic partitions name is letters, digits, '_', '.' or '-' (not starting with "
                f"a digit, at most 128); got {self.name!r}"
            )

    def snapshot(self, keys: Sequence[str]) -> DynamicPartitions:
        """This definition holding `keys` (as read from the database), so that ranges and
        membership can be checked."""
        return DynamicPartitions(self.name, tuple(keys))

    def parse(self, key: Any) -> str:
        if not isinstance(key, str):
            raise ValidationTypeError(f"a dynamic partition is a string; got {type(key).__name__}")
        if not key or len(key) > MAX_DYNAMIC_KEY:
            raise ValidationError(f"a dynamic partition key is 1 to {MAX_DYNAMIC_KEY} characters")
        if self.current is not None and key not in self.current:
            raise ValidationError(
                f"no such partition in {self.name!r}; add it first with flowstone.add_partitions"
                f"({self.name!r}, [{key!r}])"
            )
        return key

    def to_text(self, key: str) -> str:
        return key

    def _known(self) -> tuple[str, ...]:
        if self.current is None:
            raise FlowStoneError(
                "validation_error", f"the keys of dynamic partitions {self.name!r} were not read yet"
            )
        return self.current

    def keys(self, start: str, end: str) -> list[str]:
        known = self._known()
        return list(known[known.index(start) : known.index(end) + 1])

    def all_keys(self, now: datetime) -> list[str]:
        return list(self._known())


SEPARATOR = "|"
"""Joins the keys of a `MultiPartitions` key's dimensions in its string form."""


@dataclass(frozen=True)
class MultiPartitions(PartitionsDefinition):
    """`MultiPartitions({"date": DailyPartitions(...), "region": StaticPartitions([...])})`:
    one partition per combination of the dimensions' keys. A key is a tuple with one key
    per dimension, in the declared order (`(date(2025, 1, 2), "eu")`), written
    `"2025-01-02|eu"`; a dict by dimension name is accepted too. A range from `start` to
    `end` is every combination of each dimension's own range (a box), ordered with the
    first dimension outermost."""

    dimensions: tuple[tuple[str, PartitionsDefinition], ...] = field(default=())

    def __init__(self, dimensions: Mapping[str, PartitionsDefinition]) -> None:
        if not isinstance(dimensions, Mapping) or len(dimensions) < 2:
            raise ValidationError(
                "MultiPartitions takes a dict of at least two dimensions, name -> partitions; "
                f"got {dimensions!r}"
            )
        for name, definition in dimensions.items():
            if not isinstance(name, str) or not _DYNAMIC_NAME.match(name):
                raise ValidationError(f"a dimension name is letters, digits, '_', '.' or '-'; got {name!r}")
            if not isinstance(definition, PartitionsDefinition) or isinstance(definition, MultiPartitions):
                raise ValidationError(
                    f"dimension {name!r} takes a (single) partitions definition; got {definition!r}"
                )
            if isinstance(definition, StaticPartitions):
                for value in definition.values:
                    _no_separator(name, value)
        object.__setattr__(self, "dimensions", tuple(dimensions.items()))

    @property
    def names(self) -> list[str]:
        """The dimensions' names, in order."""
        return [name for name, _ in self.dimensions]

    def index(self, name: str) -> int:
        """The position of dimension `name` in a key."""
        return self.names.index(name)

    def named(self, key: Any) -> dict[str, Any]:
        """A key's dimension keys by dimension name."""
        return dict(zip(self.names, self.parse(key), strict=True))

    def _parts(self, key: Any) -> list[Any]:
        if isinstance(key, str):
            parts: list[Any] = key.split(SEPARATOR)
        elif isinstance(key, Mapping):
            if set(key) != set(self.names):
                raise ValidationError(f"a key by dimension names needs exactly {self.names}; got {list(key)}")
            parts = [key[name] for name in self.names]
        elif isinstance(key, (tuple, list)):
            parts = list(key)
        else:
            raise ValidationTypeError(
                f"a multi-dimensional partition is a string, a tuple or a dict; got {type(key).__name__}"
            )
        if len(parts) != len(self.dimensions):
            example = SEPARATOR.join(self.names)
            raise ValidationError(
                f"a key has one part per dimension, {example!r} (a dimension's own key cannot contain "
                f"{SEPARATOR!r}); got {len(parts)}"
            )
        return parts

    def parse(self, key: Any) -> tuple[Any, ...]:
        found = []
        for (name, definition), part in zip(self.dimensions, self._parts(key), strict=True):
            try:
                canonical = definition.parse(part)
            except (ValueError, TypeError) as error:
                raise ValidationError(f"dimension {name!r}: {error}") from error
            _no_separator(name, definition.to_text(canonical))
            found.append(canonical)
        return tuple(found)

    def to_text(self, key: tuple[Any, ...]) -> str:
        return SEPARATOR.join(d.to_text(k) for (_, d), k in zip(self.dimensions, key, strict=True))

    def keys(self, start: tuple[Any, ...], end: tuple[Any, ...]) -> list[Any]:
        ranges = [d.keys(s, e) for (_, d), s, e in zip(self.dimensions, start, end, strict=True)]
        return list(product(*ranges))

    def all_keys(self, now: datetime) -> list[Any]:
        return list(product(*(d.all_keys(now) for _, d in self.dimensions)))

    def with_dimensions(
        self, resolve: Callable[[PartitionsDefinition], PartitionsDefinition]
    ) -> MultiPartitions:
        """This definition with each dimension passed through `resolve` (a KeySpace's)."""
        return MultiPartitions({name: resolve(d) for name, d in self.dimensions})


def _no_separator(dimension: str, key: str) -> None:
    if SEPARATOR in key:
        raise ValidationError(
            f"dimension {dimension!r} has key {key!r} containing {SEPARATOR!r}, which separates the "
            "dimensions of a multi-dimensional key: rename the key"
        )


@dataclass(frozen=True)
class KeySpace:
    """The partitions that exist at one moment: time windows closed by `now`, dynamic sets
    as read from the database (`dynamic`: keys by set name)."""

    now: datetime
    dynamic: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def at_present(cls, dynamic: Mapping[str, Sequence[str]] | None = None) -> KeySpace:
        """The space as of now."""
        return cls(datetime.now(UTC), dynamic or {})

    def resolve(self, definition: PartitionsDefinition) -> PartitionsDefinition:
        """`definition`, holding its keys when it is dynamic (membership, ranges)."""
        if isinstance(definition, DynamicPartitions):
            return definition.snapshot(self.dynamic.get(definition.name, ()))
        if isinstance(definition, MultiPartitions):
            return definition.with_dimensions(self.resolve)
        return definition

    def all_keys(self, definition: PartitionsDefinition) -> list[Any]:
        """Every partition of `definition` that exists in this space."""
        return self.resolve(definition).all_keys(self.now)


def dynamic_names(definitions: Sequence[PartitionsDefinition | None]) -> list[str]:
    """The names of the dynamic sets among `definitions` (whose keys must be read)."""
    flat = [d for m in definitions for d in (_dimensions(m) if isinstance(m, MultiPartitions) else [m])]
    return sorted({d.name for d in flat if isinstance(d, DynamicPartitions)})


def _dimensions(definition: MultiPartitions) -> list[PartitionsDefinition]:
    return [d for _, d in definition.dimensions]
