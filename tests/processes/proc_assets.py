"""The assets that process-level tests materialize in real `flowstone worker` processes
(`--app proc_assets:app`; the app is proc_app's, configured from the environment).

proc_a → proc_b → proc_c, daily, and proc_week (a weekly roll-up of proc_a), stored by
the postgres IO manager so the test process reads what the workers wrote. Every run of an
asset function is recorded in `public.asset_runs` (asset, partition, started, finished);
with PROC_HOLD=1 a run keeps its partition busy until every job of that partition has
been tried (so that they meet on its lock). proc_a fails for good on the partitions
listed in PROC_FAIL (comma-separated), takes PROC_SLOW seconds, and a blocking check
fails it on the partitions listed in PROC_BAD_DATA. PROC_DEP_TIMEOUT bounds proc_b's wait
for a dependency nothing materializes. In the workers only: PROC_EAGER=1 adds proc_eager
(eager on proc_a), PROC_SCHEDULE=1 adds proc_clock (unpartitioned, every minute),
PROC_FRESH=1 adds proc_fresh (FRESH_ASSET: unpartitioned, a 1-second freshness policy)
and records each `asset.overdue` telemetry event in `public.overdue_events`;
PROC_OBSERVED=1 adds OBSERVED: proc_source, a source observed as the text in
`public.source_version`, and proc_follower, its eager dependent.
"""

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from proc_app import app

from flowstone import (
    Asset,
    AssetRegistry,
    Context,
    DailyPartitions,
    FlowStoneError,
    WeeklyPartitions,
    source_asset,
)
from flowstone.assets import AssetCheck, CheckResult, default_assets
from flowstone.assets.freshness import OVERDUE_EVENT
from flowstone.queue import telemetry

__all__ = ["ASSETS", "FRESH_ASSET", "OBSERVED", "app", "register"]

DAYS = DailyPartitions("2025-01-01")


HOLD_DEADLINE = 10.0  # seconds a held run waits for the other jobs of its partition
UNTRIED = (
    "SELECT count(*) FROM flowstone.jobs"
    " WHERE args->>'asset_name' = %s AND args->>'partition' = %s AND attempted_at IS NULL"
)


def _hold(ctx: Context) -> None:
    """With PROC_HOLD=1: return once every job of this partition has been claimed at least
    once (the others then found the partition locked), or at the deadline."""
    if os.environ.get("PROC_HOLD") != "1":
        return
    deadline = time.monotonic() + HOLD_DEADLINE
    while time.monotonic() < deadline:
        with app.connection() as conn:
            row = conn.execute(UNTRIED, (ctx.asset, ctx.partition_key)).fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(0.02)  # polling interval of the wait on the jobs' state


def _ran(ctx: Context, value: dict[str, int]) -> dict[str, int]:
    """Do the asset's work, note this run in public.asset_runs, return `value`."""
    started = datetime.now(UTC)
    _hold(ctx)
    with app.connection() as conn:
        conn.execute(
            "INSERT INTO public.asset_runs VALUES (%s, %s, %s, %s)",
            (ctx.asset, ctx.partition_key or "", started, datetime.now(UTC)),
        )
    return value


def proc_a(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """The source: the day of the month, unless the partition's data is 'corrupt' (then it
    prints and logs what it found: its compute log)."""
    if ctx.partition_key in os.environ.get("PROC_FAIL", "").split(","):
        print(f"reading the source of {ctx.partition_key}")
        ctx.log.error("checksum mismatch in %s", ctx.partition_key)
        raise FlowStoneError(
            "execution_error", f"source data of {ctx.partition_key} is corrupt", retryable=False
        )
    time.sleep(float(os.environ.get("PROC_SLOW", "0")))  # the source's slow work
    return _ran(ctx, {"rows": ctx.partition.day})


def rows_are_plausible(ctx: Context, value: dict[str, int]) -> CheckResult:
    """Fails on the partitions listed in PROC_BAD_DATA."""
    bad = ctx.partition_key in os.environ.get("PROC_BAD_DATA", "").split(",")
    return CheckResult(not bad, "implausible row count" if bad else None)


def proc_b(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """Twice proc_a."""
    return _ran(ctx, {"rows": deps["proc_a"]["rows"] * 2})


def proc_c(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """proc_b plus one."""
    return _ran(ctx, {"rows": deps["proc_b"]["rows"] + 1})


def proc_week(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """The week's proc_a rows."""
    return _ran(ctx, {"rows": sum(day["rows"] for day in deps["proc_a"].values())})


def proc_eager(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """proc_a again, kept up to date by eager automation."""
    return _ran(ctx, dict(deps["proc_a"]))


def proc_clock(ctx: Context, deps: dict[str, Any]) -> dict[str, int]:
    """A scheduled source."""
    return _ran(ctx, {"rows": 1})


def proc_fresh(ctx: Context, deps: dict[str, Any]) -> int:
    """A source that must be no older than a second."""
    return 1


FRESH_ASSET = Asset(
    name="proc_fresh", execute_fn=proc_fresh, io_manager="postgres", freshness=timedelta(seconds=1)
)


def _note_overdue(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
    """Record an `asset.overdue` event (in the worker) where the test reads it."""
    with app.connection() as conn:
        conn.execute("INSERT INTO public.overdue_events VALUES (%s)", (metadata["asset"],))


def proc_source(ctx: Context) -> str:
    """The outside data's version: what another system wrote in public.source_version."""
    with app.connection() as conn:
        row = conn.execute("SELECT version FROM public.source_version").fetchone()
    return str(row[0])


def proc_follower(ctx: Context, deps: dict[str, Any]) -> dict[str, Any]:
    """Recomputed when the source's observed version changes."""
    return _ran(ctx, dict(deps["proc_source"]))


OBSERVED = [
    source_asset(observe=proc_source, schedule=None, registry=AssetRegistry()),
    Asset(
        name="proc_follower",
        depends_on=("proc_source",),
        execute_fn=proc_follower,
        io_manager="postgres",
        automation="eager",
    ),
]


def _assets() -> list[Asset]:
    dep_timeout = float(os.environ.get("PROC_DEP_TIMEOUT", "600"))
    defined = [
        Asset(name="proc_a", execute_fn=proc_a, io_manager="postgres", partitions=DAYS),
        Asset(
            name="proc_b",
            depends_on=("proc_a",),
            execute_fn=proc_b,
            io_manager="postgres",
            partitions=DAYS,
            dependency_timeout=dep_timeout,
        ),
        Asset(
            name="proc_c", depends_on=("proc_b",), execute_fn=proc_c, io_manager="postgres", partitions=DAYS
        ),
        Asset(
            name="proc_week",
            depends_on=("proc_a",),
            execute_fn=proc_week,
            io_manager="postgres",
            partitions=WeeklyPartitions("2025-01-06"),
        ),
    ]
    if os.environ.get("PROC_EAGER") == "1":
        defined.append(
            Asset(
                name="proc_eager",
                depends_on=("proc_a",),
                execute_fn=proc_eager,
                io_manager="postgres",
                partitions=DAYS,
                automation="eager",
            )
        )
    if os.environ.get("PROC_SCHEDULE") == "1":
        defined.append(
            Asset(name="proc_clock", execute_fn=proc_clock, io_manager="postgres", schedule="* * * * *")
        )
    if os.environ.get("PROC_OBSERVED") == "1":
        defined.extend(OBSERVED)
    if os.environ.get("PROC_FRESH") == "1":
        defined.append(FRESH_ASSET)
        telemetry.attach(OVERDUE_EVENT, _note_overdue)
    return defined


ASSETS = _assets()
CHECK = AssetCheck(name="rows_are_plausible", asset="proc_a", check_fn=rows_are_plausible, blocking=True)


def register() -> None:
    """Register the assets missing from the default registry (the asset tests clear it
    between tests while this module stays imported), and proc_a's check."""
    missing = [a for a in ASSETS if a.name not in default_assets]
    if missing:
        default_assets.register_all(missing)
    if not default_assets.checks("proc_a"):
        default_assets.register_check(CHECK)


register()
