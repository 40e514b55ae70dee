"""The asset commands: `assets ls`, `assets status`, `assets history`, `materialize`,
`backfill` and `lineage`.

Asset definitions live in the user's module, so these commands load `--app module:attr`
(importing it defines its assets). An unknown asset or a partition that does not fit is
a `FlowStoneError`, printed as one line with exit code 2. Following a run reads its
progress through the read layer, woken by notifications as records finish.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from flowstone.assets.api import backfill, materialize, materialize_all
from flowstone.assets.definitions import AssetRegistry, registry_of
from flowstone.assets.partitions import MultiPartitions
from flowstone.assets.records import Materialization
from flowstone.cli.common import Commands, UsageError, app_of, emit, emit_one
from flowstone.errors import FlowStoneError
from flowstone.insights import (
    OVERDUE,
    STATUSES,
    AssetOverview,
    Insights,
    PartitionGrid,
    PartitionStatus,
    RunProgress,
    partition_grid,
)
from flowstone.queue.instance import FlowStone

DEFAULT_TIMEOUT = 3600.0
"""How long `--wait` and `backfill` follow a run by default (the jobs run on regardless)."""

STOPPED_FOLLOWING = "stopped following; jobs keep running"
"""What Ctrl-C while following a run says (the jobs are in the database, workers run them)."""


def add_commands(commands: Commands) -> None:
    """Add the asset commands to `flowstone`'s command tree."""
    group = commands.group("assets", "inspect the asset graph")
    commands.add(
        "ls",
        "every asset: dependencies, partitions, IO manager, how many partitions are fresh, stale…",
        cmd_assets_ls,
        group,
    )
    status = commands.add(
        "status",
        "each partition of an asset: fresh, stale, missing, queued, running, failed or cancelled, and why",
        cmd_status,
        group,
    )
    status.add_argument("asset")
    status.add_argument("--from", dest="start", help="first partition key (default: every partition)")
    status.add_argument("--to", dest="end", help="last partition key (included)")

    history = commands.add(
        "history",
        "a partition's materializations, newest first (--logs: what each printed)",
        cmd_history,
        group,
    )
    history.add_argument("asset")
    history.add_argument("--partition", help="partition key (omit when unpartitioned)")
    history.add_argument("--limit", type=int, default=20, help="how many records (default 20)")
    history.add_argument("--logs", action="store_true", help="with each record's compute logs")

    mat = commands.add("materialize", "queue the materialization of an asset partition", cmd_materialize)
    mat.add_argument("asset")
    mat.add_argument("--partition", help="partition key, e.g. 2025-01-15 (omit when unpartitioned)")
    mat.add_argument("--all", action="store_true", help="also everything upstream, in dependency order")
    mat.add_argument("--wait", action="store_true", help="block until the run finished")
    _run_options(mat)

    back = commands.add("backfill", "materialize a range of partitions, following progress", cmd_backfill)
    back.epilog = (
        "a multi-dimensional asset takes a range per dimension instead of --from/--to: "
        "--date 2025-01-01..2025-01-07 --region eu"
    )
    back.set_defaults(dimension_options=True)
    back.add_argument("asset")
    back.add_argument("--from", dest="start", help="first partition key")
    back.add_argument("--to", dest="end", help="last partition key (included)")
    back.add_argument("--no-wait", action="store_true", help="queue the partitions and return at once")
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


def _loaded(args: argparse.Namespace) -> tuple[FlowStone, AssetRegistry]:
    """The app and its asset graph, once its module defined at least one asset."""
    app = app_of(args)
    graph = registry_of(app)
    if not len(graph):
        raise UsageError("no assets are defined; pass --app module:attr naming the module that defines them")
    return app, graph


# -- assets ls -------------------------------------------------------------------------


def cmd_assets_ls(args: argparse.Namespace) -> int:
    """Every asset in dependency order, with how many of its partitions are in each status."""
    app, graph = _loaded(args)
    overviews = Insights(app, graph).assets()
    emit([_asset_row(overview, args.json) for overview in overviews], args.json)
    return 0


def _asset_row(overview: AssetOverview, as_json: bool) -> dict[str, Any]:
    asset, counts = overview.asset, overview.counts
    if as_json:
        return {
            "asset": asset.name,
            "depends_on": list(asset.depends_on),
            "partitions": overview.partitions,
            "io_manager": asset.io_manager,
            "status": counts,
            "overdue": overview.overdue,
            "last_success": None if overview.freshness is None else overview.freshness.last_success,
        }
    return {
        "asset": asset.name,
        "depends_on": ", ".join(asset.depends_on) or "-",
        "partitions": overview.partitions or "-",
        "io_manager": asset.io_manager,
        "status": _tally(counts) or "no partition yet",
        "freshness": _freshness(overview),
    }


def _freshness(overview: AssetOverview) -> str:
    """`OVERDUE (2:00:00 old, policy 1:00:00)`, `ok`, or `-` without a policy."""
    seen = overview.freshness
    if seen is None:
        return "-"
    if not seen.overdue or seen.age is None:
        return "ok"
    return f"{OVERDUE.upper()} ({str(seen.age).split('.')[0]} old, policy {seen.policy})"


def _tally(counts: dict[str, int]) -> str:
    """`fresh=2 missing=5`: the statuses some partition is in, in the vocabulary's order."""
    return " ".join(f"{status}={counts[status]}" for status in STATUSES if counts.get(status))


# -- assets history --------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    """A partition's records, newest first; with --logs, what each printed and logged."""
    app, graph = _loaded(args)
    insights = Insights(app, graph)
    records = insights.history(args.asset, args.partition, limit=args.limit)
    logs = insights.logs([r.id for r in records]) if args.logs else {}
    if args.json:
        rows = [{**asdict(r), **({"logs": logs.get(r.id)} if args.logs else {})} for r in records]
        emit(rows, True)
        return 0
    if not args.logs:
        emit([_record_row(r) for r in records], False)
        return 0
    for record in records:
        emit_one(_record_row(record), False)
        print(f"--- logs of materialization {record.id} ---")
        print(logs.get(record.id, "(nothing printed or logged)").rstrip("\n"))
        print()
    return 0


# -- assets status ---------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """Each partition of an asset (--from..--to, or every one) with its status and why,
    then the totals."""
    app, graph = _loaded(args)
    found = Insights(app, graph).partitions(args.asset, start=args.start, end=args.end)
    grid = None if args.json else partition_grid(graph.require(args.asset).partitions, found)
    if grid is None:
        emit([_status_row(status, args.json) for status in found], args.json)
    else:
        emit(_grid_rows(grid), False)
    if not args.json:
        print("\n" + (_tally(Counter(p.status for p in found)) or "no partition"))
    return 0


def _grid_rows(grid: PartitionGrid) -> list[dict[str, Any]]:
    """A row per key of the first dimension, a column per key of the second, each cell
    the partition's status."""
    return [
        {grid.row_name: row, **{c: s.status if s else "" for c, s in zip(grid.columns, cells, strict=True)}}
        for row, cells in grid.rows
    ]


def _status_row(status: PartitionStatus, as_json: bool) -> dict[str, Any]:
    record = status.record
    row: dict[str, Any] = {
        "partition": status.partition,
        "status": status.status,
        "reason": status.reason,
        "finished_at": None if record is None else record.finished_at,
        "data_version": status.data_version,
    }
    if as_json:
        row["materialization_id"] = None if record is None else record.id
    return row


# -- materialize and backfill ----------------------------------------------------------


def cmd_materialize(args: argparse.Namespace) -> int:
    """Queue one partition (or, with --all, its upstream closure too); with --wait, block
    until it finished. Exit code 1 when it failed or did not finish in time."""
    app, _ = _loaded(args)
    if args.wait:
        args.on_interrupt = STOPPED_FOLLOWING
    if args.all:
        result = materialize_all(args.asset, args.partition, force=args.force, fs=app)
        if not args.wait:
            emit([{"run_id": result.run_id, "status": result.status, "assets": result.assets}], args.json)
            return 0
        return _follow(app, result.run_id, args)
    try:
        single = materialize(
            args.asset, args.partition, force=args.force, wait=args.wait, timeout=args.timeout, fs=app
        )
    except FlowStoneError as error:
        if error.type != "timeout":
            raise
        print(f"flowstone: {error} (the job runs on)", file=sys.stderr)
        return 1
    row: dict[str, Any] = {
        "run_id": single.run_id,
        "asset": single.asset,
        "partition": single.partition,
        "status": single.status,
        "job_id": single.job_id,
        "error": None if single.error is None else str(single.error),
    }
    if args.json and single.materialization is not None:
        row["materialization"] = asdict(single.materialization)
    emit([row], args.json)
    return 1 if single.status == "failed" else 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Queue every partition from --from to --to, draw progress on stderr until every job
    finished, print the totals; exit code 1 when any failed or the run did not finish.
    With --no-wait, print the run and return once the jobs are queued."""
    app, graph = _loaded(args)
    start, end = _backfill_range(args, graph)
    if not args.no_wait:
        args.on_interrupt = STOPPED_FOLLOWING
    result = backfill(args.asset, start=start, end=end, force=args.force, fs=app)
    if args.no_wait:
        emit(
            [{"run_id": result.run_id, "asset": args.asset, "total": result.total, "status": "queued"}],
            args.json,
        )
        return 0
    return _follow(app, result.run_id, args)


def _backfill_range(args: argparse.Namespace, graph: AssetRegistry) -> tuple[Any, Any]:
    """--from and --to, or (a multi-dimensional asset) the first and last key by dimension
    from a range per dimension: `--date 2025-01-01..2025-01-07 --region eu`."""
    ranges = _dimension_ranges(args.extra)
    if not ranges:
        if args.start is None or args.end is None:
            raise UsageError("backfill takes --from and --to (a multi-dimensional asset: --DIMENSION A..B)")
        return args.start, args.end
    if not isinstance(graph.require(args.asset).partitions, MultiPartitions):
        raise UsageError(f"asset {args.asset!r} is not multi-dimensional: give --from and --to")
    if args.start is not None or args.end is not None:
        raise UsageError("give either --from and --to or a range per dimension, not both")
    return {d: first for d, (first, _) in ranges.items()}, {d: last for d, (_, last) in ranges.items()}


def _dimension_ranges(extra: list[str]) -> dict[str, tuple[str, str]]:
    """`--NAME A..B` (or `--NAME=A..B`; `--NAME A`: that key alone) by dimension name."""
    found = {}
    items = iter(extra)
    for item in items:
        option, has_value, value = item.partition("=")
        if not option.startswith("--") or len(option) < 3:
            raise UsageError(f"unrecognized argument {item!r}; a dimension's range is --NAME A..B")
        if not has_value:
            value = next(items, "")
        if not value or value.startswith("--"):
            raise UsageError(f"{option} needs a key or a range A..B")
        first, _, last = value.partition("..")
        found[option[2:]] = (first, last or first)
    return found


def _follow(app: FlowStone, run_id: str, args: argparse.Namespace) -> int:
    """Draw the run's progress until it is done or the timeout passed; print the totals
    (exit code 1 when some failed or were cancelled, or the run is not done)."""
    progress = RunProgress(run_id, {})
    with _progress_bar() as bar:
        task = bar.add_task(args.asset, total=None, counts="")
        for progress in Insights(app).watch_run(run_id, args.timeout):
            counts = f"{progress.finished}/{progress.total} finished, {progress.failed} failed"
            counts += f", {progress.cancelled} cancelled" if progress.cancelled else ""
            bar.update(task, total=max(progress.total, 1), completed=progress.finished, counts=counts)
    emit([_summary(progress, args.asset)], args.json)
    if not progress.done:
        print(
            f"flowstone: run {run_id} did not finish within {args.timeout:g} s (its jobs run on)",
            file=sys.stderr,
        )
    return 1 if progress.failed or progress.cancelled or not progress.done else 0


def _summary(progress: RunProgress, asset: str) -> dict[str, Any]:
    """The totals printed when following ends."""
    return {
        "run_id": progress.run_id,
        "asset": asset,
        "total": progress.total,
        "success": progress.counts.get("success", 0),
        "skipped": progress.counts.get("skipped", 0),
        "failed": progress.failed,
        "cancelled": progress.cancelled,
        "unfinished": progress.total - progress.finished,
    }


def _progress_bar() -> Progress:
    """A progress bar on stderr: redrawn in place on a terminal; into a pipe or a file,
    only its final state, as one line (no carriage-return frames)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


# -- lineage ---------------------------------------------------------------------------


def cmd_lineage(args: argparse.Namespace) -> int:
    """The latest record of an asset partition, the records it read and those that read it."""
    app, graph = _loaded(args)
    found = Insights(app, graph).lineage(args.asset, args.partition)
    if found is None:
        where = "" if args.partition is None else f" at partition {args.partition}"
        raise UsageError(f"asset {graph.require(args.asset).name!r} has no materialization{where}")
    if args.json:
        document = asdict(found)
        emit_one({"materialization": document.pop("record"), **document}, True)
        return 0
    emit_one(_record_row(found.record), False)
    if found.source is not None:
        print(f"\nskipped (fresh): stands for materialization {found.source.id} of run {found.source.run_id}")
    for title, records in (
        ("upstream (what it read)", found.upstream),
        ("downstream (what read it)", found.downstream),
    ):
        print(f"\n{title}:")
        emit([_record_row(r) for r in records], False)
    if found.checks:
        print("\nchecks:")
        emit([{k: v for k, v in asdict(c).items() if k != "metadata"} for c in found.checks], False)
    return 0


def _record_row(record: Materialization) -> dict[str, Any]:
    return {
        "id": record.id,
        "asset": record.asset,
        "partition": record.partition,
        "status": record.status.value,
        "data_version": record.data_version,
        "run_id": record.run_id,
        "finished_at": record.finished_at,
        "duration": record.duration,
        "error": None if record.error is None else str(record.error),
    }
