"""Asset definitions, the `@asset` decorator and the registry that holds the asset graph.

What an asset declares by itself is checked when it is defined: its name (and that it is
free), its IO manager, schedule and automation policy. What relates it to other assets —
unknown dependencies, partition mappings (each dependency's, named or the default),
cycles (named) — is checked when the graph is first used (as Dagster's `Definitions`
does), so assets may be defined, and their modules imported, in any order.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

from flowstone.assets.io import IOManagerRegistry, default_io_managers
from flowstone.assets.mappings import Dep, PartitionMapping, default_mapping
from flowstone.assets.partitions import (
    DynamicPartitions,
    KeySpace,
    PartitionsDefinition,
    TimeWindowPartitions,
    dynamic_names,
)
from flowstone.errors import FlowStoneError, ValidationTypeError
from flowstone.queue.plugins.cron import check_schedule
from flowstone.queue.validation import check_max_attempts

if TYPE_CHECKING:
    from flowstone.assets.checks import AssetCheck
    from flowstone.assets.context import Context
    from flowstone.queue.instance import FlowStone

ExecuteFn = Callable[["Context", dict[str, Any]], Any]
DependsOn = Iterable["str | Asset | Dep"]
Automation = Literal["eager"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

DEFAULT_DEPENDENCY_TIMEOUT = 600.0
"""Seconds a materialization waits for a dependency that nothing is materializing (never
materialized and not queued) before it fails with dependency_not_ready."""


def _invalid(message: str, **context: Any) -> FlowStoneError:
    return FlowStoneError("validation_error", message, context=context)


@dataclass(frozen=True, kw_only=True)
class Asset:
    """A named function of its upstream assets' data, stored by an IO manager per partition."""

    name: str
    depends_on: tuple[str, ...] = ()
    io_manager: str = "postgres"
    execute_fn: ExecuteFn
    partitions: PartitionsDefinition | None = None
    max_attempts: int = 3
    tags: tuple[str, ...] = ()
    description: str | None = None
    code_version: str | None = None
    schedule: str | None = None
    schedule_timezone: str = "UTC"
    automation: Automation | None = None
    dependency_timeout: float = DEFAULT_DEPENDENCY_TIMEOUT
    freshness: timedelta | None = None
    observed: bool = False
    mappings: tuple[tuple[str, PartitionMapping], ...] = ()
    load_types: tuple[tuple[str, type], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise _invalid(
                f"asset name must be letters, digits and '_' (not starting with a digit); got {self.name!r}"
            )
        names, mappings, types = _dependencies(self.name, self.depends_on)
        object.__setattr__(self, "depends_on", names)
        object.__setattr__(self, "mappings", (*self.mappings, *mappings))
        object.__setattr__(self, "load_types", (*self.load_types, *types))
        object.__setattr__(self, "tags", tuple(self.tags))
        if not callable(self.execute_fn):
            raise _invalid(f"asset {self.name!r}: execute_fn must be callable", asset=self.name)
        if self.partitions is not None and not isinstance(self.partitions, PartitionsDefinition):
            raise _invalid(f"asset {self.name!r}: partitions must be a partitions definition")
        check_max_attempts(self.max_attempts)
        self._check_versions_and_automation()

    def _check_versions_and_automation(self) -> None:
        if self.code_version is not None and (
            not isinstance(self.code_version, str) or not self.code_version
        ):
            raise _invalid(f"asset {self.name!r}: code_version must be a non-empty string or None")
        if self.automation not in (None, "eager"):
            raise _invalid(
                f"asset {self.name!r}: automation must be 'eager' or None; got {self.automation!r}"
            )
        timeout = self.dependency_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")
        ):
            raise _invalid(f"asset {self.name!r}: dependency_timeout must be a positive number of seconds")
        if self.freshness is not None and (
            not isinstance(self.freshness, timedelta) or self.freshness <= timedelta(0)
        ):
            raise _invalid(
                f"asset {self.name!r}: freshness must be a positive timedelta (how old its latest "
                f"success may get), e.g. timedelta(hours=26); got {self.freshness!r}"
            )
        if self.schedule is None:
            return
        check_schedule(self.schedule, self.schedule_timezone, f"asset {self.name!r}")
        if self.partitions is not None and not isinstance(self.partitions, TimeWindowPartitions):
            raise _invalid(
                f"asset {self.name!r}: a schedule materializes the partition that just closed, so it "
                f"needs time-based partitions or none; got {self.partitions!r}"
            )

    def mapping_named(self, dependency: str) -> PartitionMapping | None:
        """The mapping given for `dependency` (None: the default one)."""
        return next((mapping for name, mapping in self.mappings if name == dependency), None)

    def as_type_of(self, dependency: str) -> type | None:
        """The type `dependency`'s data is loaded as (`Dep(..., as_type=)`; None: as stored)."""
        return next((kind for name, kind in self.load_types if name == dependency), None)

    def partition_key(self, partition: Any) -> Any:
        """The canonical key of `partition` for this asset (None when unpartitioned)."""
        if self.partitions is None:
            if partition is not None:
                raise _invalid(f"asset {self.name!r} is not partitioned; got partition {partition!r}")
            return None
        if partition is None:
            raise _invalid(f"asset {self.name!r} is partitioned by {self.partitions!r}; give a partition")
        return self.partitions.validate(partition)

    def text_of(self, key: Any) -> str | None:
        """The string form of a canonical key (None when unpartitioned), unvalidated."""
        return None if self.partitions is None else self.partitions.to_text(key)

    def serialize_partition(self, partition: Any) -> str | None:
        """The string form of `partition` for this asset (None when unpartitioned)."""
        key = self.partition_key(partition)
        return None if self.partitions is None else self.partitions.to_text(key)


def _dependencies(
    name: str, depends_on: DependsOn
) -> tuple[tuple[str, ...], tuple[tuple[str, PartitionMapping], ...], tuple[tuple[str, type], ...]]:
    """The dependencies' names, and the mappings and load types given with `Dep`."""
    if isinstance(depends_on, str):
        raise _invalid(f"asset {name!r}: depends_on must be a list of names; got {depends_on!r}")
    names: list[str] = []
    mappings: list[tuple[str, PartitionMapping]] = []
    types: list[tuple[str, type]] = []
    for dep in depends_on:
        if isinstance(dep, Dep):
            if dep.mapping is not None and not isinstance(dep.mapping, PartitionMapping):
                raise _invalid(f"asset {name!r}: the mapping of {dep.name!r} must be a PartitionMapping")
            if dep.as_type is not None and not isinstance(dep.as_type, type):
                raise _invalid(
                    f"asset {name!r}: the as_type of {dep.name!r} must be a class; got {dep.as_type!r}"
                )
            names.append(dep.name)
            mappings.extend([(dep.name, dep.mapping)] if dep.mapping is not None else [])
            types.extend([(dep.name, dep.as_type)] if dep.as_type is not None else [])
        else:
            names.append(dep.name if isinstance(dep, Asset) else dep)
    if len(set(names)) != len(names):
        raise _invalid(f"asset {name!r} lists a dependency twice: {names!r}")
    return tuple(names), tuple(mappings), tuple(types)


class AssetRegistry:
    """The asset graph: assets by name. Assets may be defined in any order (a dependency
    after its dependent, in another module imported later): the graph is resolved when it
    is first used — unknown dependencies, partition mappings and cycles are checked then,
    raising the same clear errors — and again after each change."""

    def __init__(self, io_managers: IOManagerRegistry | None = None) -> None:
        self.io_managers = io_managers if io_managers is not None else default_io_managers
        self._assets: dict[str, Asset] = {}
        self._mappings: dict[tuple[str, str], PartitionMapping] = {}
        self._checks: dict[str, list[AssetCheck]] = {}
        self._dependents: dict[str, list[str]] = {}
        self._dynamic = False
        self._resolved = True
        self._lock = threading.Lock()

    def register(self, asset: Asset) -> Asset:
        """Add one asset (its dependencies may be defined later)."""
        self.register_all([asset])
        return asset

    def register_all(self, assets: Sequence[Asset]) -> None:
        """Add assets; all or none are added. What an asset can be checked for alone (its
        name is free, its IO manager exists and can store it) is checked now, its edges
        when the graph is first used."""
        with self._lock:
            graph = dict(self._assets)
            for asset in assets:
                if asset.name in graph:
                    raise _invalid(f"asset {asset.name!r} is already defined", asset=asset.name)
                self._check_alone(asset)
                graph[asset.name] = asset
            self._assets, self._resolved = graph, False

    def _check_alone(self, asset: Asset) -> None:
        """Check what `asset` declares that needs no other asset."""
        unknown = {name for name, _ in asset.mappings} - set(asset.depends_on)
        if unknown:
            raise _invalid(f"asset {asset.name!r} maps {sorted(unknown)} but does not depend on them")
        if asset.io_manager not in self.io_managers:
            raise _invalid(
                f"asset {asset.name!r} uses IO manager {asset.io_manager!r}, which is not registered "
                f"(registered: {', '.join(self.io_managers.names())})",
                asset=asset.name,
            )
        self.io_managers.get(asset.io_manager).check_asset(asset.name)

    def _resolve(self) -> None:
        """Resolve the graph once after a change: every dependency exists, each edge's
        partition mapping (named or the default) fits, no cycle; then index it."""
        if self._resolved:
            return
        with self._lock:
            if self._resolved:
                return
            graph = self._assets
            mappings: dict[tuple[str, str], PartitionMapping] = {}
            for asset in sorted(graph.values(), key=lambda a: a.name):
                mappings.update(_edges(asset, graph))
                for dep in asset.depends_on:
                    self._check_as_type(asset, graph[dep])
            _check_acyclic(sorted(graph), graph)
            self._mappings = mappings
            self._index()
            self._resolved = True

    def _check_as_type(self, asset: Asset, upstream: Asset) -> None:
        """The upstream's IO manager can load its data as the type `asset` asks for."""
        as_type = asset.as_type_of(upstream.name)
        if as_type is None or upstream.io_manager not in self.io_managers:
            return
        try:
            self.io_managers.get(upstream.io_manager).check_as_type(as_type)
        except ValueError as error:
            raise _invalid(f"asset {asset.name!r} on {upstream.name!r}: {error}", asset=asset.name) from error

    def mapping(self, asset: str, dependency: str) -> PartitionMapping:
        """How `asset`'s partitions map onto `dependency`'s (named, or the default)."""
        self._resolve()
        return self._mappings[asset, dependency]

    def register_check(self, check: AssetCheck) -> AssetCheck:
        """Add a check to a defined asset's materializations."""
        with self._lock:
            target = self._assets.get(check.asset)
            if target is None:
                raise FlowStoneError(
                    "asset_not_found",
                    f"no asset named {check.asset!r}{_suggest(check.asset, self._assets)}: "
                    "define the asset before its checks",
                    context={"asset": check.asset},
                )
            existing = self._checks.get(target.name, [])
            if any(c.name == check.name for c in existing):
                raise _invalid(f"asset {target.name!r} already has a check named {check.name!r}")
            self._checks = {**self._checks, target.name: [*existing, check]}
        return check

    def checks(self, asset: str) -> list[AssetCheck]:
        """The checks run after each materialization of `asset`, in definition order."""
        return self._checks.get(asset, [])

    def get(self, name: str) -> Asset | None:
        """The asset called `name`, if any."""
        self._resolve()
        return self._assets.get(name)

    def require(self, name: str | Asset) -> Asset:
        """The asset called `name`, or asset_not_found with a did-you-mean suggestion."""
        self._resolve()
        if isinstance(name, Asset):
            name = name.name
        found = self._assets.get(name)
        if found is None:
            raise FlowStoneError(
                "asset_not_found",
                f"no asset named {name!r}{_suggest(name, self._assets)}",
                context={"asset": name},
            )
        return found

    def unregister(self, name: str) -> None:
        """Remove an asset nothing depends on (also from a graph that does not resolve)."""
        with self._lock:
            dependents = sorted(a.name for a in self._assets.values() if name in a.depends_on)
            if dependents:
                raise _invalid(f"cannot remove asset {name!r}: {dependents} depend on it")
            self._assets = {key: a for key, a in self._assets.items() if key != name}
            self._checks = {key: c for key, c in self._checks.items() if key != name}
            self._resolved = False

    def clear(self) -> None:
        """Remove every asset (tests start from an empty graph)."""
        with self._lock:
            self._assets, self._checks, self._resolved = {}, {}, False

    def _index(self) -> None:
        """Each asset's direct dependents, for the lookups every materialization makes."""
        dependents: dict[str, list[str]] = {}
        for asset in sorted(self._assets.values(), key=lambda a: a.name):
            for dep in asset.depends_on:
                dependents.setdefault(dep, []).append(asset.name)
        self._dependents = dependents
        self._dynamic = any(isinstance(a.partitions, DynamicPartitions) for a in self._assets.values())

    def names(self) -> list[str]:
        """Registered asset names, sorted."""
        self._resolve()
        return sorted(self._assets)

    def __contains__(self, name: object) -> bool:
        self._resolve()
        return name in self._assets

    def __iter__(self) -> Iterator[Asset]:
        self._resolve()
        return iter(list(self._assets.values()))

    def __len__(self) -> int:
        return len(self._assets)

    # -- graph -------------------------------------------------------------------------

    def dependents(self, name: str) -> list[str]:
        """Assets that depend directly on `name`, sorted."""
        self._resolve()
        return list(self._dependents.get(name, ()))

    def upstream_partitions(self, asset: Asset, key: Any, space: KeySpace) -> list[tuple[Asset, list[Any]]]:
        """Per dependency of `asset`, in order, the upstream keys its partition `key` reads."""
        found = []
        for name in asset.depends_on:
            up = self.require(name)
            mapping = self.mapping(asset.name, name)
            found.append((up, mapping.upstream_keys(asset.partitions, key, up.partitions, space.all_keys)))
        return found

    def reads(self, asset: Asset, partition: str | None, space: KeySpace) -> list[tuple[Asset, str | None]]:
        """The upstream (asset, serialized partition) pairs the serialized `partition` of
        `asset` reads, in order."""
        key = None if asset.partitions is None else asset.partition_key(partition)
        return [(up, up.text_of(k)) for up, keys in self.upstream_partitions(asset, key, space) for k in keys]

    def downstream_partitions(self, asset: Asset, key: Any, dependent: Asset) -> list[Any] | None:
        """The partitions of `dependent` that read partition `key` of `asset` (None: any)."""
        mapping = self.mapping(dependent.name, asset.name)
        return mapping.downstream_keys(asset.partitions, key, dependent.partitions)

    @property
    def has_dynamic(self) -> bool:
        """Whether some asset of the graph has dynamic partitions."""
        self._resolve()
        return self._dynamic

    def dynamic_sets(self, asset: Asset) -> list[str]:
        """The dynamic partition sets `asset` and its dependencies are defined by."""
        if not self.has_dynamic:  # the usual graph: none at all
            return []
        return dynamic_names([asset.partitions, *(self.require(n).partitions for n in asset.depends_on)])

    def scheduled(self) -> list[Asset]:
        """Assets with a schedule, by name."""
        self._resolve()
        return [self._assets[name] for name in sorted(self._assets) if self._assets[name].schedule]

    def upstream(self, name: str) -> set[str]:
        """Every asset `name` depends on, directly or not (itself excluded)."""
        return _closure(name, lambda n: self.require(n).depends_on)

    def downstream(self, name: str) -> set[str]:
        """Every asset depending on `name`, directly or not (itself excluded)."""
        self.require(name)
        return _closure(name, self.dependents)

    def topological_order(self, names: Iterable[str] | None = None) -> list[str]:
        """`names` (default: all) ordered so that upstream comes first, also through assets
        left out; ties by name."""
        self._resolve()
        wanted = set(self._assets) if names is None else {self.require(n).name for n in names}
        order: list[str] = []
        done: set[str] = set()
        while len(done) < len(self._assets):
            ready = sorted(
                n for n, a in self._assets.items() if n not in done and done.issuperset(a.depends_on)
            )
            order.extend(ready)
            done.update(ready)
        return [name for name in order if name in wanted]


def _edges(asset: Asset, graph: dict[str, Asset]) -> dict[tuple[str, str], PartitionMapping]:
    """The resolved mapping of each of `asset`'s dependencies in `graph`; a validation_error
    naming a dependency that is not defined (with a did-you-mean suggestion)."""
    mappings = {}
    for dep in asset.depends_on:
        upstream = graph.get(dep)
        if upstream is None:
            raise _invalid(
                f"asset {asset.name!r} depends on unknown asset {dep!r}{_suggest(dep, graph)}",
                asset=asset.name,
                dependency=dep,
            )
        mappings[asset.name, dep] = _resolve_mapping(asset, upstream)
    return mappings


def _resolve_mapping(asset: Asset, upstream: Asset) -> PartitionMapping:
    """The mapping of `asset` onto `upstream`: the one named, else the default; checked."""
    named = asset.mapping_named(upstream.name)
    mapping = named or default_mapping(asset.partitions, upstream.partitions)
    if mapping is None:
        raise _invalid(
            f"asset {asset.name!r} ({asset.partitions!r}) cannot depend on {upstream.name!r} partitioned by "
            f"{upstream.partitions!r} without a partition mapping: name one, e.g. "
            f"Dep({upstream.name!r}, mapping=AllPartitions()) or LatestPartition()",
            asset=asset.name,
        )
    try:
        mapping.check(asset.partitions, upstream.partitions)
    except ValueError as error:
        raise _invalid(f"asset {asset.name!r} on {upstream.name!r}: {error}", asset=asset.name) from error
    return mapping


def _closure(start: str, edges: Callable[[str], Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(edges(start))
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(edges(name))
    return seen


def _check_acyclic(starts: list[str], graph: dict[str, Asset]) -> None:
    """Raise a validation_error naming the first cycle reachable from `starts`."""
    finished: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise _invalid(f"assets form a cycle: {' -> '.join(cycle)}", cycle=cycle)
        if name in finished:
            return
        for dep in graph[name].depends_on:
            visit(dep, [*path, name])
        finished.add(name)

    for name in starts:
        visit(name, [])


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


default_assets = AssetRegistry()
"""The registry `@asset` fills by default: the graph of an instance given no other."""


def registry_of(fs: FlowStone) -> AssetRegistry:
    """The asset graph an instance runs and queues: `FlowStone(assets=registry)`, else
    `default_assets` (the one `@asset` fills unless told `registry=`)."""
    found = fs.assets
    if found is None:
        return default_assets
    if not isinstance(found, AssetRegistry):
        raise ValidationTypeError(
            f"FlowStone(assets=...) must be an AssetRegistry; got {type(found).__name__}"
        )
    return found


@overload
def asset(fn: ExecuteFn, /) -> Asset: ...


@overload
def asset(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    depends_on: Sequence[str | Asset | Dep] = (),
    io_manager: str = "postgres",
    partitions: PartitionsDefinition | None = None,
    max_attempts: int = 3,
    tags: Sequence[str] = (),
    description: str | None = None,
    code_version: str | None = None,
    schedule: str | None = None,
    schedule_timezone: str = "UTC",
    automation: Automation | None = None,
    dependency_timeout: float = DEFAULT_DEPENDENCY_TIMEOUT,
    freshness: timedelta | None = None,
    registry: AssetRegistry | None = None,
) -> Callable[[ExecuteFn], Asset]: ...


def asset(
    fn: ExecuteFn | None = None,
    /,
    *,
    name: str | None = None,
    depends_on: Sequence[str | Asset | Dep] = (),
    io_manager: str = "postgres",
    partitions: PartitionsDefinition | None = None,
    max_attempts: int = 3,
    tags: Sequence[str] = (),
    description: str | None = None,
    code_version: str | None = None,
    schedule: str | None = None,
    schedule_timezone: str = "UTC",
    automation: Automation | None = None,
    dependency_timeout: float = DEFAULT_DEPENDENCY_TIMEOUT,
    freshness: timedelta | None = None,
    registry: AssetRegistry | None = None,
) -> Asset | Callable[[ExecuteFn], Asset]:
    """Define and register an asset from `fn(ctx, deps)`; its name defaults to the function's.

    `code_version`: change it when the function's logic changes (its partitions become
    stale). `schedule` (5-field cron, in `schedule_timezone`): materialize the partition
    that just closed on each tick. `automation="eager"`: queue this asset's stale
    partitions when an upstream partition gets new data. `dependency_timeout`: seconds to
    wait for a dependency that nothing is materializing before failing. `io_manager`: where
    its values are stored; `postgres` (the default) keeps them as JSON in the database, so
    every worker process reads them (`memory` keeps them in one process: tests, scripts).
    `freshness`: how old its latest success may get before it is overdue (see
    `flowstone.assets.freshness`)."""

    def define(function: ExecuteFn) -> Asset:
        defined = Asset(
            name=name or function.__name__,
            depends_on=tuple(depends_on),  # type: ignore[arg-type]  # Asset splits out each Dep
            io_manager=io_manager,
            execute_fn=function,
            partitions=partitions,
            max_attempts=max_attempts,
            tags=tuple(tags),
            description=description if description is not None else (function.__doc__ or None),
            code_version=code_version,
            schedule=schedule,
            schedule_timezone=schedule_timezone,
            automation=automation,
            dependency_timeout=dependency_timeout,
            freshness=freshness,
        )
        return (registry if registry is not None else default_assets).register(defined)

    return define(fn) if fn is not None else define
