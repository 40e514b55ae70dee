"""Asset definitions, the `@asset` decorator and the registry that holds the asset graph.

Everything that can be checked when an asset is defined is checked then: names, unknown
dependencies, cycles (named), duplicates, IO manager names and partition compatibility.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from flowstone.assets.io import IOManagerRegistry, default_io_managers
from flowstone.assets.partitions import PartitionsDefinition
from flowstone.errors import FlowStoneError, ValidationTypeError
from flowstone.queue.validation import check_max_attempts

if TYPE_CHECKING:
    from flowstone.assets.context import Context
    from flowstone.queue.instance import FlowStone

ExecuteFn = Callable[["Context", dict[str, Any]], Any]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _invalid(message: str, **context: Any) -> FlowStoneError:
    return FlowStoneError("validation_error", message, context=context)


@dataclass(frozen=True, kw_only=True)
class Asset:
    """A named function of its upstream assets' data, stored by an IO manager per partition."""

    name: str
    depends_on: tuple[str, ...] = ()
    io_manager: str = "memory"
    execute_fn: ExecuteFn
    partitions: PartitionsDefinition | None = None
    max_attempts: int = 3
    tags: tuple[str, ...] = ()
    description: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise _invalid(
                f"asset name must be letters, digits and '_' (not starting with a digit); got {self.name!r}"
            )
        object.__setattr__(self, "depends_on", _dependency_names(self.name, self.depends_on))
        object.__setattr__(self, "tags", tuple(self.tags))
        if not callable(self.execute_fn):
            raise _invalid(f"asset {self.name!r}: execute_fn must be callable", asset=self.name)
        if self.partitions is not None and not isinstance(self.partitions, PartitionsDefinition):
            raise _invalid(f"asset {self.name!r}: partitions must be a partitions definition")
        check_max_attempts(self.max_attempts)

    def partition_key(self, partition: Any) -> Any:
        """The canonical key of `partition` for this asset (None when unpartitioned)."""
        if self.partitions is None:
            if partition is not None:
                raise _invalid(f"asset {self.name!r} is not partitioned; got partition {partition!r}")
            return None
        if partition is None:
            raise _invalid(f"asset {self.name!r} is partitioned by {self.partitions!r}; give a partition")
        return self.partitions.validate(partition)

    def serialize_partition(self, partition: Any) -> str | None:
        """The string form of `partition` for this asset (None when unpartitioned)."""
        key = self.partition_key(partition)
        return None if self.partitions is None else self.partitions.to_text(key)


def _dependency_names(name: str, depends_on: Iterable[str | Asset]) -> tuple[str, ...]:
    if isinstance(depends_on, str):
        raise _invalid(f"asset {name!r}: depends_on must be a list of names; got {depends_on!r}")
    names = tuple(dep.name if isinstance(dep, Asset) else dep for dep in depends_on)
    if len(set(names)) != len(names):
        raise _invalid(f"asset {name!r} lists a dependency twice: {list(names)!r}")
    return names


class AssetRegistry:
    """The asset graph: assets by name, always complete (no unknown dependency) and acyclic."""

    def __init__(self, io_managers: IOManagerRegistry | None = None) -> None:
        self.io_managers = io_managers if io_managers is not None else default_io_managers
        self._assets: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def register(self, asset: Asset) -> Asset:
        """Add one asset (its dependencies must already be registered)."""
        self.register_all([asset])
        return asset

    def register_all(self, assets: Sequence[Asset]) -> None:
        """Add assets that may depend on each other; all or none are added."""
        with self._lock:
            graph = dict(self._assets)
            for asset in assets:
                if asset.name in graph:
                    raise _invalid(f"asset {asset.name!r} is already defined", asset=asset.name)
                graph[asset.name] = asset
            for asset in assets:
                self._check(asset, graph)
            _check_acyclic([asset.name for asset in assets], graph)
            self._assets = graph

    def _check(self, asset: Asset, graph: dict[str, Asset]) -> None:
        for dep in asset.depends_on:
            upstream = graph.get(dep)
            if upstream is None:
                raise _invalid(
                    f"asset {asset.name!r} depends on unknown asset {dep!r}{_suggest(dep, graph)}",
                    asset=asset.name,
                    dependency=dep,
                )
            if upstream.partitions is not None and upstream.partitions != asset.partitions:
                raise _invalid(
                    f"asset {asset.name!r} ({asset.partitions!r}) cannot depend on {dep!r} "
                    f"partitioned by {upstream.partitions!r}: partitions must match",
                    asset=asset.name,
                )
        if asset.io_manager not in self.io_managers:
            raise _invalid(
                f"asset {asset.name!r} uses IO manager {asset.io_manager!r}, which is not registered "
                f"(registered: {', '.join(self.io_managers.names())})",
                asset=asset.name,
            )
        self.io_managers.get(asset.io_manager).check_asset(asset.name)

    def get(self, name: str) -> Asset | None:
        """The asset called `name`, if any."""
        return self._assets.get(name)

    def require(self, name: str | Asset) -> Asset:
        """The asset called `name`, or asset_not_found with a did-you-mean suggestion."""
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
        """Remove an asset nothing depends on."""
        with self._lock:
            dependents = self.dependents(name)
            if dependents:
                raise _invalid(f"cannot remove asset {name!r}: {dependents} depend on it")
            self._assets.pop(name, None)

    def clear(self) -> None:
        """Remove every asset (tests start from an empty graph)."""
        with self._lock:
            self._assets = {}

    def names(self) -> list[str]:
        """Registered asset names, sorted."""
        return sorted(self._assets)

    def __contains__(self, name: object) -> bool:
        return name in self._assets

    def __iter__(self) -> Iterator[Asset]:
        return iter(list(self._assets.values()))

    def __len__(self) -> int:
        return len(self._assets)

    # -- graph -------------------------------------------------------------------------

    def dependents(self, name: str) -> list[str]:
        """Assets that depend directly on `name`, sorted."""
        return sorted(a.name for a in self._assets.values() if name in a.depends_on)

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
    depends_on: Sequence[str | Asset] = (),
    io_manager: str = "memory",
    partitions: PartitionsDefinition | None = None,
    max_attempts: int = 3,
    tags: Sequence[str] = (),
    description: str | None = None,
    registry: AssetRegistry | None = None,
) -> Callable[[ExecuteFn], Asset]: ...


def asset(
    fn: ExecuteFn | None = None,
    /,
    *,
    name: str | None = None,
    depends_on: Sequence[str | Asset] = (),
    io_manager: str = "memory",
    partitions: PartitionsDefinition | None = None,
    max_attempts: int = 3,
    tags: Sequence[str] = (),
    description: str | None = None,
    registry: AssetRegistry | None = None,
) -> Asset | Callable[[ExecuteFn], Asset]:
    """Define and register an asset from `fn(ctx, deps)`; its name defaults to the function's."""

    def define(function: ExecuteFn) -> Asset:
        defined = Asset(
            name=name or function.__name__,
            depends_on=_dependency_names(name or function.__name__, depends_on),
            io_manager=io_manager,
            execute_fn=function,
            partitions=partitions,
            max_attempts=max_attempts,
            tags=tuple(tags),
            description=description if description is not None else (function.__doc__ or None),
        )
        return (registry if registry is not None else default_assets).register(defined)

    return define(fn) if fn is not None else define
