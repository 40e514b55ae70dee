"""`Materializer`: the steps of materializing one asset partition.

Find the upstream partitions it reads (through each dependency's partition mapping),
judge whether they are ready, load them, run the asset function, store the result.
Each step reports failure as a `FlowStoneError`; the `AssetWorker` strings the steps
together with the records, the lock, staleness and the job's outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from flowstone.assets.context import Context
from flowstone.assets.definitions import Asset, AssetHost, AssetRegistry, registry_of
from flowstone.assets.io import IOManager, io_error
from flowstone.assets.partitions import KeySpace
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import Status, column, dependencies_plan
from flowstone.assets.versions import InputKey
from flowstone.errors import FlowStoneError
from flowstone.queue.job import INCOMPLETE_STATES
from flowstone.queue.plan import Plan, Row


@dataclass(frozen=True)
class Upstream:
    """One dependency of a materialization: the asset, the partitions it reads (canonical
    keys, [None] when unpartitioned), whether it reads several (one value from the IO
    manager's `load_many`) and the type to load them as (None: as stored)."""

    asset: Asset
    keys: list[Any]
    many: bool
    as_type: type | None = None

    def texts(self) -> list[str | None]:
        """The partitions' string forms."""
        return [self.asset.text_of(key) for key in self.keys]


@dataclass(frozen=True)
class Readiness:
    """Whether every upstream partition has data. `waiting` names those that do not yet
    (being materialized, or `absent`: nothing is materializing them); `failed`, a
    dependency that failed for good; `upstream_ids`, the successes that will be read
    (lineage); `inputs`, the data version of each upstream partition now."""

    waiting: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    failed: FlowStoneError | None = None
    upstream_ids: tuple[int, ...] = ()
    inputs: Mapping[InputKey, str | None] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """True when nothing is waited for and nothing failed."""
        return not self.waiting and self.failed is None

    @property
    def in_progress(self) -> bool:
        """Whether some upstream partition is being materialized right now."""
        return len(self.waiting) > len(self.absent)


_INCOMPLETE = {state.value for state in INCOMPLETE_STATES}
_READY, _IN_PROGRESS, _ABSENT = "ready", "in progress", "absent"


class Materializer:
    """Runs the steps of a materialization on an instance's database and asset graph
    (`registry_of(fs)` unless given another); the contexts it builds carry the instance
    as `ctx.fs`."""

    def __init__(self, fs: AssetHost, assets: AssetRegistry | None = None) -> None:
        self.fs = fs
        self.database = fs.database
        self.assets = assets if assets is not None else registry_of(fs)
        self.materializations = self.database.statements.of(MaterializationQueries)

    def io_manager(self, asset: Asset) -> IOManager:
        """The IO manager storing `asset`."""
        return self.assets.io_managers.get(asset.io_manager)

    def build_context(
        self,
        asset: Asset,
        partition: Any = None,
        run_id: str | None = None,
        *,
        attempt: int = 1,
        job_id: int | None = None,
        force: bool = False,
    ) -> Context:
        """A context for `asset` at `partition` (a key or its string form; validated)."""
        key = asset.partition_key(partition)
        return Context(
            asset=asset.name,
            partition=key,
            partition_key=asset.serialize_partition(key),
            run_id=run_id or str(uuid.uuid4()),
            attempt=attempt,
            job_id=job_id,
            force=force,
            fs=self.fs,
        )

    def upstream(self, asset: Asset, ctx: Context, space: KeySpace | None = None) -> list[Upstream]:
        """Each dependency of `asset` with the partitions `ctx`'s partition reads from it
        (`space`: which partitions exist; default: now, without dynamic sets)."""
        found = self.assets.upstream_partitions(asset, ctx.partition, space or KeySpace.at_present())
        return [
            Upstream(
                up,
                keys,
                self.assets.mapping(asset.name, up.name).reads_many(up.partitions),
                asset.as_type_of(up.name),
            )
            for up, keys in found
        ]

    def upstream_locations(
        self, asset: Asset, ctx: Context, upstream: Sequence[Upstream] | None = None
    ) -> list[tuple[str, str | None]]:
        """(asset, serialized partition) of every upstream partition read, in order."""
        found = self.upstream(asset, ctx) if upstream is None else upstream
        return [(up.asset.name, text) for up in found for text in up.texts()]

    def upstream_records_plan(self, asset: Asset, ctx: Context) -> Plan[list[Row]]:
        """One statement reading each upstream partition's latest record, for `readiness`."""
        return dependencies_plan(
            self.materializations, [(0, *where) for where in self.upstream_locations(asset, ctx)]
        )

    def check_dependencies_ready(self, asset: Asset, ctx: Context, conn: Any = None) -> Readiness:
        """Which dependencies are still being materialized (or materialized by nobody);
        dependency_failed when one failed for good (its last record failed, or was
        cancelled: its job ended without a result)."""
        readiness = self.readiness(
            asset, ctx, self.database.execute(self.upstream_records_plan(asset, ctx), conn)
        )
        if readiness.failed is not None:
            raise readiness.failed
        return readiness

    def readiness(
        self,
        asset: Asset,
        ctx: Context,
        rows: Sequence[Mapping[str, Any]],
        upstream: Sequence[Upstream] | None = None,
    ) -> Readiness:
        """Judge the rows of `upstream_records_plan` (one per upstream partition, in order)."""
        found = self.upstream(asset, ctx) if upstream is None else upstream
        waiting: list[str] = []
        absent: list[str] = []
        failed: FlowStoneError | None = None
        lineage: list[int] = []
        inputs: dict[InputKey, str | None] = {}
        for up in found:
            if not up.keys and not up.many:  # e.g. the latest partition of a set still empty
                waiting.append(f"{up.asset.name} (no partition yet)")
                absent.append(waiting[-1])
        located = ((up, key, text) for up in found for key, text in zip(up.keys, up.texts(), strict=True))
        for (up, key, text), row in zip(located, rows, strict=True):
            if row["success_id"] is not None:
                lineage.append(row["success_id"])
            state = self._state(up.asset, ctx, key, row)
            named = up.asset.name if text is None or text == ctx.partition_key else f"{up.asset.name} {text}"
            if isinstance(state, FlowStoneError):
                failed = failed or state
            elif state != _READY:
                waiting.append(named)
                absent.extend([named] if state == _ABSENT else [])
            if row["success_id"] is not None or state == _READY:
                inputs[up.asset.name, column(text)] = row["success_version"]
        return Readiness(tuple(waiting), tuple(absent), failed, tuple(lineage), inputs)

    def _state(self, dep: Asset, ctx: Context, key: Any, row: Mapping[str, Any]) -> str | FlowStoneError:
        """Ready, in progress, absent, or the dependency_failed error of upstream partition
        `key` of `dep` (read by `ctx`'s materialization)."""
        status = row["status"]
        if row["busy"]:
            return _IN_PROGRESS
        if status in (Status.SUCCESS, Status.SKIPPED):
            return _READY
        dep_ctx = ctx.for_upstream(dep, key)
        if status is None:  # never materialized here: data provided from outside counts
            return _READY if self.io_manager(dep).exists(dep_ctx) else _ABSENT
        if status == Status.FAILED:
            reason = f"{row['error_type']}: {row['error_message']}"
        elif status == Status.CANCELLED:
            reason = row["error_message"]
        elif row["job_id"] is None or row["job_state"] in _INCOMPLETE:
            return _IN_PROGRESS
        else:
            reason = f"its job ended {row['job_state'] or 'deleted'} without a result"
        return FlowStoneError(
            "dependency_failed",
            f"upstream {dep.name!r} (partition {dep_ctx.partition_key!r}) failed: {reason}",
            retryable=False,
            context={"asset": dep_ctx.asset, "partition": dep_ctx.partition_key, "upstream": dep.name},
        )

    def load_dependencies(
        self, asset: Asset, ctx: Context, upstream: Sequence[Upstream] | None = None
    ) -> dict[str, Any]:
        """Upstream data by asset name (when the mapping reads several partitions: what the
        IO manager's `load_many` gives, a dict by partition unless it combines them);
        dependency_failed when one has nothing stored."""
        loaded: dict[str, Any] = {}
        for up in self.upstream(asset, ctx) if upstream is None else upstream:
            manager = self.io_manager(up.asset)
            contexts = [replace(ctx.for_upstream(up.asset, key), as_type=up.as_type) for key in up.keys]
            for dep_ctx in contexts:
                self._check_stored(asset, manager, dep_ctx)
            with _as_io_error(contexts[0] if contexts else ctx.for_upstream(up.asset)):
                loaded[up.asset.name] = (
                    manager.load_many(contexts, up.as_type) if up.many else manager.load(contexts[0])
                )
        return loaded

    def _check_stored(self, asset: Asset, manager: IOManager, dep_ctx: Context) -> None:
        if not manager.exists(dep_ctx):
            raise FlowStoneError(
                "dependency_failed",
                manager.not_found(dep_ctx),
                retryable=False,
                context={"asset": asset.name, "upstream": dep_ctx.asset, "partition": dep_ctx.partition_key},
            )

    def call_asset(self, asset: Asset, ctx: Context, deps: Mapping[str, Any]) -> Any:
        """Run the asset function; an exception becomes a (retryable) execution_error."""
        try:
            return asset.execute_fn(ctx, dict(deps))
        except FlowStoneError:
            raise
        except Exception as error:
            raise FlowStoneError(
                "execution_error",
                f"{type(error).__name__}: {error}",
                context={"asset": asset.name, "partition": ctx.partition_key, "run_id": ctx.run_id},
            ) from error

    def store_result(self, asset: Asset, ctx: Context, value: Any) -> dict[str, Any]:
        """Store `value` with the asset's IO manager; the metadata to record."""
        with _as_io_error(ctx):
            stored = self.io_manager(asset).store(ctx, value)
        return {**ctx.metadata, **(stored or {})}


@contextmanager
def _as_io_error(ctx: Context) -> Iterator[None]:
    """A user IO manager's own exception becomes a (retryable) io_error."""
    try:
        yield
    except FlowStoneError:
        raise
    except Exception as error:
        raise io_error(ctx, f"{type(error).__name__}: {error}") from error
