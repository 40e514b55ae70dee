"""Partition mappings: which partitions of an upstream asset a partition of its dependent
reads, and (backwards) which dependent partitions a new upstream partition concerns.

    @asset(depends_on=["daily_sales"], partitions=WeeklyPartitions("2025-01-06"))
    def weekly_sales(ctx, deps): ...      # deps["daily_sales"]: {"2025-01-06": …, …} (7 days)

    @asset(depends_on=[Dep("events", mapping=Window(7))], partitions=days)
    def rolling(ctx, deps): ...           # the 7 days ending at this one

Without a mapping: an unpartitioned upstream is read whole by every partition; equal
definitions map by `Identity`; two time-based ones by `RollUp` (overlapping windows:
daily → weekly or monthly, hourly → daily); a multi-dimensional asset and an upstream
partitioned like one of its dimensions map along that shared dimension
(`SharedDimension`: a daily upstream feeds every region of its day); anything else
needs a mapping named. A
mapping that reads several upstream partitions gives the function a dict keyed by their
string form, in order (an IO manager of tables may concatenate them instead: `parquet`
gives one frame); one that reads one partition gives its value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import product
from typing import Any

from flowstone.assets.partitions import (
    MultiPartitions,
    PartitionsDefinition,
    StaticPartitions,
    TimeWindowPartitions,
)

Definition = PartitionsDefinition | None
_TICK = timedelta(microseconds=1)
AllKeys = Callable[[PartitionsDefinition], list[Any]]
"""Every existing key of a definition (time windows: those closed by now; dynamic: as
stored), for the mappings that read a whole upstream."""


class PartitionMapping(ABC):
    """How a dependent's partition maps onto its upstream's partitions."""

    many: bool = False
    """Whether the function receives a dict of upstream partitions (else one value)."""

    @abstractmethod
    def check(self, down: Definition, up: Definition) -> None:
        """Raise ValueError saying why this mapping cannot relate these definitions."""

    @abstractmethod
    def upstream_keys(self, down: Definition, key: Any, up: Definition, all_keys: AllKeys) -> list[Any]:
        """The upstream keys dependent partition `key` reads ([None]: the unpartitioned one)."""

    @abstractmethod
    def downstream_keys(self, up: Definition, key: Any, down: Definition) -> list[Any] | None:
        """The dependent keys that read upstream partition `key`; None: any of them."""

    def reads_many(self, up: Definition) -> bool:
        """Whether the function gets a dict of partitions of an upstream defined by `up`."""
        return self.many and up is not None


@dataclass(frozen=True)
class Identity(PartitionMapping):
    """The same key upstream (both assets share one partitions definition)."""

    def check(self, down: Definition, up: Definition) -> None:
        if down != up:
            raise ValueError(f"Identity needs equal partitions; got {down!r} and {up!r}")

    def upstream_keys(self, down: Definition, key: Any, up: Definition, all_keys: AllKeys) -> list[Any]:
        return [key]

    def downstream_keys(self, up: Definition, key: Any, down: Definition) -> list[Any] | None:
        return [key]


def _time_windows(
    down: Definition, up: Definition, name: str
) -> tuple[TimeWindowPartitions, TimeWindowPartitions]:
    if not isinstance(down, TimeWindowPartitions) or not isinstance(up, TimeWindowPartitions):
        raise ValueError(f"{name} relates time-based partitions; got {down!r} and {up!r}")
    return down, up


@dataclass(frozen=True)
class RollUp(PartitionMapping):
    """Every upstream partition whose time window overlaps the dependent's: a week reads
    its 7 days, a month its days or weeks, a day its 24 hours."""

    many = True

    def check(self, down: Definition, up: Definition) -> None:
        _time_windows(down, up, "RollUp")

    def upstream_keys(self, down: Definition, key: Any, up: Definition, all_keys: AllKeys) -> list[Any]:
        down_t, up_t = _time_windows(down, up, "RollUp")
        return up_t.overlapping(*down_t.window(key))

    def downstream_keys(self, up: Definition, key: Any, down: Definition) -> list[Any] | None:
        down_t, up_t = _time_windows(down, up, "RollUp")
        return down_t.overlapping(*up_t.window(key))


@dataclass(frozen=True)
class Window(PartitionMapping):
    """The last `size` upstream partitions ending with the one where the dependent's
    window ends (time-based), or with the same key (equal static or dynamic partitions)."""

    size: int
    many = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"Window(size) takes a positive number of partitions; got {self.size!r}")

    def check(self, down: Definition, up: Definition) -> None:
        if isinstance(down, TimeWindowPartitions) and isinstance(up, TimeWindowPartitions):
            return
        if down is None or down != up:
            raise ValueError(f"Window relates time-based or equal partitions; got {down!r} and {up!r}")

    def upstream_keys(self, down: Definition, key: Any, up: Definition, all_keys: AllKeys) -> list[Any]:
        if isinstance(up, TimeWindowPartitions) and isinstance(down, TimeWindowPartitions):
            last = up.containing(down.window(key)[1] - _TICK)
            return up.within_bounds(up.shift(last, 1 - self.size), last)
        assert up is not None
        keys = all_keys(up)
        at = keys.index(key) + 1
        return keys[max(0, at - self.size) : at]

    def downstream_keys(self, up: Definition, key: Any, down: Definition) -> list[Any] | None:
        if isinstance(up, TimeWindowPartitions) and isinstance(down, TimeWindowPartitions):
            return down.overlapping(up.window(key)[0], up.window(up.shift(key, self.size - 1))[1])
        return None


@dataclass(frozen=True)
class AllPartitions(PartitionMapping):
    """Every upstream partition that exists (time-based: those closed by now). The
    default for an unpartitioned upstream, read whole by every dependent partition."""

    many = True

    def check(self, down: Definition, up: Definition) -> None:
        return None

    def upstream_keys(self, down: Definition, key: Any, up: Definition, all_keys: AllKeys) -> list[Any]:
        return [None] if up is None else all_keys(up)

    def downstream_keys(self, up: Definition, key: Any, down: Definition) -> list[Any] | None:
        return [None] if down is None else None


@dataclass(frozen=True)
class LatestPartition(PartitionMapping):
    """The upstream's latest partition (time-based: the last closed by now)."""

    def check(self, down: Definition, up: Definition) -> None:
        if up is None:
            raise ValueError("LatestPartition needs a partitioned upstream")

    def upstream_keys(self, down: Definition, key: Any, up: Definition, all_keys: AllKeys) -> list[Any]:
        assert up is not None
        return all_keys(up)[-1:]

    def downstream_keys(self, up: Definition, key: Any, down: Definition) -> list[Any] | None:
        return [None] if down is None else None


def _shared(multi: Definition, single: Definition) -> str | None:
    """The dimension of `multi` partitioned exactly like `single` (None: none is)."""
    if not isinstance(multi, MultiPartitions):
        return None
    return next((name for name, d in multi.dimensions if d == single), None)


@dataclass(frozen=True)
class SharedDimension(PartitionMapping):
    """Along `dimension`, between a multi-dimensional asset and one partitioned like that
    dimension: `2025-01-02|eu` reads the upstream's `2025-01-02` (a daily upstream feeds
    every region of its day), and a dependent `2025-01-02` reads every upstream partition
    of that day. The default where exactly such a dimension exists."""

    dimension: str

    def _sides(self, down: Definition, up: Definition) -> tuple[MultiPartitions, int, bool]:
        """The multi-dimensional side, the dimension's position, and whether it is `down`."""
        for multi, single, is_down in ((down, up, True), (up, down, False)):
            if isinstance(multi, MultiPartitions) and _shared(multi, single) == self.dimension:
                return multi, multi.index(self.dimension), is_down
        raise ValueError(
            f"SharedDimension({self.dimension!r}) relates a multi-dimensional asset and one partitioned "
            f"like that dimension; got {down!r} and {up!r}"
        )

    def reads_many(self, up: Definition) -> bool:
        return isinstance(up, MultiPartitions)

    def check(self, down: Definition, up: Definition) -> None:
        self._sides(down, up)

    def upstream_keys(self, down: Definition, key: Any, up: Definition, all_keys: AllKeys) -> list[Any]:
        multi, at, is_down = self._sides(down, up)
        if is_down:
            return [key[at]]
        return [k for k in all_keys(multi) if k[at] == key]

    def downstream_keys(self, up: Definition, key: Any, down: Definition) -> list[Any] | None:
        multi, at, is_down = self._sides(down, up)
        if not is_down:
            return [key[at]]
        ranges: list[list[Any]] = []
        for name, d in multi.dimensions:
            if name == self.dimension:
                ranges.append([key])
            elif isinstance(d, StaticPartitions):
                ranges.append(list(d.values))
            else:
                return None  # time windows and dynamic sets: any partition (their keys move)
        return list(product(*ranges))


def default_mapping(down: Definition, up: Definition) -> PartitionMapping | None:
    """The mapping used when none is named (None: there is no sensible default)."""
    if up is None:
        return AllPartitions()
    if up == down:
        return Identity()
    shared = _shared(down, up) or _shared(up, down)
    if shared is not None:
        return SharedDimension(shared)
    if isinstance(down, TimeWindowPartitions) and isinstance(up, TimeWindowPartitions):
        return RollUp()
    return None


@dataclass(frozen=True)
class Dep:
    """A dependency with a partition mapping, `depends_on=[Dep("events", mapping=Window(7))]`,
    or read as another type than stored: `Dep("orders", as_type=polars.DataFrame)` (the
    upstream's IO manager must be able to convert: `parquet` gives pandas or polars
    DataFrames and pyarrow Tables)."""

    asset: Any
    mapping: PartitionMapping | None = None
    as_type: type | None = None

    @property
    def name(self) -> str:
        """The upstream asset's name."""
        return self.asset if isinstance(self.asset, str) else str(self.asset.name)
