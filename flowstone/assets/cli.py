"""`flowstone assets ls`, `materialize`, `backfill` and `lineage`: the asset layer's commands.

Asset definitions live in the user's module, so these commands load `--app module:attr`
(importing it registers its assets). An unknown asset or a partition that does not fit
is a `FlowStoneError`, which `flowstone.cli.main` prints as one line with exit code 2.
Following a run LISTENs on `<schema>.materializations` and re-counts the run's records on
each notification, until every record finished or the deadline passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any

import psycopg

from flowstone.assets.api import backfill, materialize, materialize_all
from flowstone.assets.definitions import Asset, default_assets
from flowstone.assets.errors import FlowStoneError
from flowstone.assets.partitions import PartitionsDefinition
from flowstone.assets.store import (
    Materialization,
    Store,
    queries_for,
    run_progress_plan,
    status_counts_plan,
)
from flowstone.cli import Commands, UsageError, _app, emit
from flowstone.queue.instance import FlowStone

DEFAULT_TIMEOUT = 3600.0
"""How long `--wait` and `backfill` follow a run by default (the jobs run on regardless)."""

RECHECK_SECONDS = 5.0
"""Longest wait on notifications alone: a job that ends without finishing its record
(cancelled, deleted) notifies nothing, so the run is re-counted at least this often."""

BAR_WIDTH = 30


def add_commands(commands: Commands) -> None:
    """Add the asset commands to `flowstone`'s command tree."""
    group = commands.group("assets", "inspect the asset graph")
    commands.add(
        "ls", "every asset: dependencies, partitions, IO manager, latest statuses", cmd_assets_ls, group
    )

    mat = commands.add("materialize", "queue the materialization of an asset partition", cmd_materialize)
    mat.add_argument("asset")
    mat.add_argument("--partition", help="partition key, e.g. 2025-01-15 (omit when unpartitioned)")
    mat.add_argument("--all", action="store_true", help="also everything upstream, in dependency order")
    mat.add_argument("--wait", action="store_true", help="block until the run finished")
    _run_options(mat)

    back = commands.add("backfill", "materialize a range of partitions, following progress", cmd_backfill)
    back.add_argument("asset")
    back.add_argument("--from", dest="start", required=True, help="first partition key")
    back.add_argument("--to", dest="end", required=True, help="last partition key (included)")
    _run_options(back)

    lineage = commands.add(
        "lineage", "the latest materialization and what it read / what read it", cmd_lineage
    )
    lineage.add_argument("asset")
    lineage.add_argument("--partition", help="partition key (omit when unpartitioned)")


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="materialize even already successful partitions")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to follow the run (default 3600)"
    )


def _loaded(args: argparse.Namespace) -> FlowStone:
    """The app, once its module registered at least one asset."""
    app = _app(args)
    if not len(default_assets):
        raise UsageError("no assets are defined; pass --app module:attr naming the module that defines them")
    return app


# -- assets ls -------------------------------------------------------------------------


def cmd_assets_ls(args: argparse.Namespace) -> int:
    """Every asset in dependency order, with how many partitions' latest record is in each status."""
    app = _loaded(args)
    counts = app.execute(status_counts_plan(queries_for(app.schema)))
    assets = [default_assets.require(name) for name in default_assets.topological_order()]
    emit([_asset_row(a, counts.get(a.name, {}), args.json) for a in assets], args.json)
    return 0


def _asset_row(asset: Asset, latest: dict[str, int], as_json: bool) -> dict[str, Any]:
    if as_json:
        return {
            "asset": asset.name,
            "depends_on": list(asset.depends_on),
            "partitions": _partitions_text(asset.partitions),
            "io_manager": asset.io_manager,
            "latest": latest,
        }
    return {
        "asset": asset.name,
        "depends_on": ", ".join(asset.depends_on) or "-",
        "partitions": _partitions_text(asset.partitions) or "-",
        "io_manager": asset.io_manager,
        "latest": " ".join(f"{status}={n}" for status, n in latest.items()) or "never materialized",
    }


def _partitions_text(definition: PartitionsDefinition | None) -> str | None:
    """`daily(2025-01-01)`, `static(eu us)`: the kind and its defining values."""
    if definition is None:
        return None
    kind = type(definition).__name__.removesuffix("Partitions").lower()
    if not is_dataclass(definition):
        return kind
    values = [getattr(definition, f.name) for f in fields(definition)]
    shown = [" ".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values if v is not None]
    return f"{kind}({', '.join(shown)})"


# -- materialize and backfill ----------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A run's records by outcome (pending, running, success, skipped, failed)."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Records of the run."""
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        """Records that failed (or whose job ended without a result)."""
        return self.counts.get("failed", 0)

    @property
    def finished(self) -> int:
        """Records with a final outcome."""
        return self.failed + self.counts.get("success", 0) + self.counts.get("skipped", 0)

    def summary(self, run_id: str, asset: str) -> dict[str, Any]:
        """The totals printed when following ends."""
        return {
            "run_id": run_id,
            "asset": asset,
            "total": self.total,
            "success": self.counts.get("success", 0),
            "skipped": self.counts.get("skipped", 0),
            "failed": self.failed,
            "unfinished": self.total - self.finished,
        }


def cmd_materialize(args: argparse.Namespace) -> int:
    """Queue one partition (or, with --all, its upstream closure too); with --wait, block
    until it finished. Exit code 1 when it failed or did not finish in time."""
    app = _loaded(args)
    if args.all:
        return _materialize_all(app, args)
    try:
        result = materialize(
            args.asset, args.partition, force=args.force, wait=args.wait, timeout=args.timeout, fs=app
        )
    except FlowStoneError as error:
        if error.type != "timeout":
            raise
        print(f"flowstone: {error} (the job runs on)", file=sys.stderr)
        return 1
    row: dict[str, Any] = {
        "run_id": result.run_id,
        "asset": result.asset,
        "partition": result.partition,
        "status": result.status,
        "job_id": result.job_id,
        "error": None if result.error is None else str(result.error),
    }
    if args.json and result.materialization is not None:
        row["materialization"] = asdict(result.materialization)
    emit([row], args.json)
    return 1 if result.status == "failed" else 0


def _materialize_all(app: FlowStone, args: argparse.Namespace) -> int:
    if not args.wait:
        result = materialize_all(args.asset, args.partition, force=args.force, fs=app)
        emit([{"run_id": result.run_id, "status": result.status, "assets": result.assets}], args.json)
        return 0
    with _listening(app) as conn:
        run_id = materialize_all(args.asset, args.partition, force=args.force, fs=app).run_id
        return _report(run_id, args, _follow(app, conn, run_id, args.timeout))


def cmd_backfill(args: argparse.Namespace) -> int:
    """Queue every partition from --from to --to, draw progress on stderr until every job
    finished, print the totals; exit code 1 when any failed or the run did not finish."""
    app = _loaded(args)
    with _listening(app) as conn:
        run_id = backfill(args.asset, start=args.start, end=args.end, force=args.force, fs=app).run_id
        return _report(run_id, args, _follow(app, conn, run_id, args.timeout))


def _report(run_id: str, args: argparse.Namespace, progress: Progress) -> int:
    emit([progress.summary(run_id, args.asset)], args.json)
    if progress.finished < progress.total:
        print(
            f"flowstone: run {run_id} did not finish within {args.timeout:g} s (its jobs run on)",
            file=sys.stderr,
        )
    return 1 if progress.failed or progress.finished < progress.total else 0


@contextmanager
def _listening(app: FlowStone) -> Iterator[psycopg.Connection[Any]]:
    """A connection listening for finished records (before the run is queued, so no
    notification is missed)."""
    with app.connect(autocommit=True) as conn:
        conn.execute(queries_for(app.schema).listen)
        yield conn


def _follow(app: FlowStone, conn: psycopg.Connection[Any], run_id: str, timeout: float) -> Progress:
    """Re-count the run's records on each of its notifications until all finished or
    `timeout` seconds passed, drawing a progress bar on stderr."""
    deadline = time.monotonic() + timeout
    queries = queries_for(app.schema)
    drawn = ""
    while True:
        progress = Progress(app.execute(run_progress_plan(queries, run_id), conn))
        drawn = _draw(progress, drawn)
        remaining = deadline - time.monotonic()
        if progress.finished >= progress.total or remaining <= 0:
            sys.stderr.write("\n")
            return progress
        _next_notice(conn, run_id, min(remaining, RECHECK_SECONDS))


def _next_notice(conn: psycopg.Connection[Any], run_id: str, timeout: float) -> None:
    """Return when a record of `run_id` finished (or `timeout` passed), consuming the
    notifications already queued so that one re-count covers them all."""
    for notify in conn.notifies(timeout=timeout):
        if json.loads(notify.payload).get("run_id") == run_id:
            break
    for _ in conn.notifies(timeout=0):
        pass


def _draw(progress: Progress, drawn: str) -> str:
    """Redraw the bar on stderr when it changed; the bar drawn."""
    filled = BAR_WIDTH * progress.finished // max(progress.total, 1)
    bar = (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress.finished}/{progress.total} finished"
        f", {progress.failed} failed"
    )
    if bar != drawn:
        sys.stderr.write(f"\r{bar}")
        sys.stderr.flush()
    return bar


# -- lineage ---------------------------------------------------------------------------


def cmd_lineage(args: argparse.Namespace) -> int:
    """The latest record of an asset partition, the records it read and those that read it."""
    app = _loaded(args)
    store = Store(app)
    target = default_assets.require(args.asset)
    record = store.get(target, args.partition)
    if record is None:
        where = "" if args.partition is None else f" at partition {args.partition}"
        raise UsageError(f"asset {target.name!r} has no materialization{where}")
    upstream, downstream = store.upstream(record.id), store.downstream(record.id)
    if args.json:
        document = {"materialization": asdict(record), "upstream": [asdict(r) for r in upstream]}
        emit([{**document, "downstream": [asdict(r) for r in downstream]}], True)
        return 0
    emit([_record_row(record)], False, vertical=True)
    for title, records in (("upstream (what it read)", upstream), ("downstream (what read it)", downstream)):
        print(f"\n{title}:")
        emit([_record_row(r) for r in records], False)
    return 0


def _record_row(record: Materialization) -> dict[str, Any]:
    return {
        "id": record.id,
        "asset": record.asset,
        "partition": record.partition,
        "status": record.status.value,
        "run_id": record.run_id,
        "finished_at": record.finished_at,
        "duration": record.duration,
        "error": None if record.error is None else str(record.error),
    }
