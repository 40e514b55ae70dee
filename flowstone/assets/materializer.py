"""`Materializer`: the steps of materializing one asset partition.

Check that upstream data is ready, load it, run the asset function, store the result.
Each step reports failure as a `FlowStoneError`; the `AssetWorker` strings the steps
together with the records, the lock and the job's outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flowstone.assets.context import Context
from flowstone.assets.definitions import Asset, AssetRegistry, registry_of
from flowstone.assets.io import IOManager, io_error
from flowstone.assets.queries import MaterializationQueries
from flowstone.assets.records import Status, dependencies_plan
from flowstone.errors import FlowStoneError
from flowstone.queue.instance import FlowStone
from flowstone.queue.job import INCOMPLETE_STATES
from flowstone.queue.plan import Plan, Row


@dataclass(frozen=True)
class Readiness:
    """Whether every dependency has data: `waiting` names those that do not yet;
    `upstream_ids` are the materializations that will be read (lineage)."""

    waiting: tuple[str, ...] = ()
    upstream_ids: tuple[int, ...] = ()

    @property
    def ready(self) -> bool:
        """True when nothing is waited for."""
        return not self.waiting


_INCOMPLETE = {state.value for state in INCOMPLETE_STATES}


class Materializer:
    """Runs the steps of a materialization on one FlowStone instance and its asset graph
    (`registry_of(fs)` unless given another)."""

    def __init__(self, fs: FlowStone, assets: AssetRegistry | None = None) -> None:
        self.fs = fs
        self.assets = assets if assets is not None else registry_of(fs)
        self.queries = MaterializationQueries.for_schema(self.fs.schema)

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

    def check_dependencies_ready(self, asset: Asset, ctx: Context, conn: Any = None) -> Readiness:
        """Which dependencies are still being materialized; dependency_failed when one failed
        for good (its last record failed, or its job ended without finishing the record)."""
        return self.readiness(asset, ctx, self.fs.execute(self.upstream_records_plan(asset, ctx), conn))

    def upstream_locations(self, asset: Asset, ctx: Context) -> list[tuple[str, str | None]]:
        """(asset, serialized partition) of each dependency, in `depends_on` order."""
        located = [ctx.for_upstream(self.assets.require(name)) for name in asset.depends_on]
        return [(c.asset, c.partition_key) for c in located]

    def upstream_records_plan(self, asset: Asset, ctx: Context) -> Plan[list[Row]]:
        """One statement reading each dependency's latest record, for `readiness` to judge."""
        return dependencies_plan(self.queries, [(0, *where) for where in self.upstream_locations(asset, ctx)])

    def readiness(self, asset: Asset, ctx: Context, rows: Sequence[Mapping[str, Any]]) -> Readiness:
        """Judge the rows of `upstream_records_plan` (see `check_dependencies_ready`)."""
        waiting: list[str] = []
        lineage: list[int] = []
        for name, row in zip(asset.depends_on, rows, strict=True):
            dep = self.assets.require(name)
            if self._dependency_waiting(dep, ctx.for_upstream(dep), row):
                waiting.append(dep.name)
            elif row["success_id"] is not None:
                lineage.append(row["success_id"])
        return Readiness(tuple(waiting), tuple(lineage))

    def _dependency_waiting(self, dep: Asset, dep_ctx: Context, row: Mapping[str, Any]) -> bool:
        status = row["status"]
        if status is None:  # never materialized here: data provided from outside counts
            return not self.io_manager(dep).exists(dep_ctx)
        if status in (Status.SUCCESS, Status.SKIPPED):
            return False
        if status == Status.FAILED:
            reason = f"{row['error_type']}: {row['error_message']}"
        elif row["job_id"] is None or row["job_state"] in _INCOMPLETE:
            return True
        else:
            reason = f"its job ended {row['job_state'] or 'deleted'} without a result"
        raise FlowStoneError(
            "dependency_failed",
            f"upstream {dep.name!r} (partition {dep_ctx.partition_key!r}) failed: {reason}",
            retryable=False,
            context={"asset": dep_ctx.asset, "partition": dep_ctx.partition_key, "upstream": dep.name},
        )

    def load_dependencies(self, asset: Asset, ctx: Context) -> dict[str, Any]:
        """Upstream data by asset name; dependency_failed when one has nothing stored."""
        loaded: dict[str, Any] = {}
        for name in asset.depends_on:
            dep = self.assets.require(name)
            dep_ctx = ctx.for_upstream(dep)
            manager = self.io_manager(dep)
            if not manager.exists(dep_ctx):
                raise FlowStoneError(
                    "dependency_failed",
                    f"upstream {name!r} has no data for partition {dep_ctx.partition_key!r}",
                    retryable=False,
                    context={"asset": asset.name, "upstream": name, "partition": dep_ctx.partition_key},
                )
            with _as_io_error(dep_ctx):
                loaded[name] = manager.load(dep_ctx)
        return loaded

    def execute(self, asset: Asset, ctx: Context, deps: Mapping[str, Any]) -> Any:
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
