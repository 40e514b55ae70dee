"""Dagster definitions mirroring FlowStone's asset benchmarks (`benchmarks/asset_app.py`).

The same shapes: a 3-asset chain `bf_a → bf_b → bf_c` partitioned by day from 2000-01-01,
and a 10-asset linear chain `chain_0 → … → chain_9`, unpartitioned. Each asset is a no-op
that loads its upstream value through the IO manager and returns how many it loaded.

Code locations for the daemon (`workspace.yaml`, one attribute each):
- `defaults`: the daily chain and the 10-asset chain with Dagster's defaults (default
  backfill policy: a run per partition, holding its three assets; multiprocess executor;
  filesystem IO manager, since steps and runs are separate processes).
- `single_run`: the daily chain with `BackfillPolicy.single_run()`, the whole backfill in
  one run; in-process executor and memory IO manager (one process holds every value).

`chain` is the 10-asset chain's job, for `dagster job launch`. The in-process runs pass
Dagster's memory IO manager, as FlowStone's runs use its memory one.
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation at run time.
import warnings

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    AssetSelection,
    BackfillPolicy,
    BetaWarning,
    DailyPartitionsDefinition,
    Definitions,
    asset,
    define_asset_job,
    in_process_executor,
    mem_io_manager,
)

# `backfill_policy` is a beta parameter: its warning would fill every process's log.
warnings.filterwarnings("ignore", category=BetaWarning)

DAYS = DailyPartitionsDefinition(start_date="2000-01-01")
CHAIN_LENGTH = 10


def define(
    name: str,
    upstream: str | None,
    partitions: DailyPartitionsDefinition | None = None,
    policy: BackfillPolicy | None = None,
) -> AssetsDefinition:
    """A no-op asset loading `upstream`'s value (if any) and returning how many it loaded."""
    if upstream is None:

        @asset(name=name, partitions_def=partitions, backfill_policy=policy)
        def source(context: AssetExecutionContext) -> int:
            return 0

        return source

    @asset(
        name=name, ins={"upstream": AssetIn(key=upstream)}, partitions_def=partitions, backfill_policy=policy
    )
    def dependent(context: AssetExecutionContext, upstream: int) -> int:
        return 1

    return dependent


def daily_chain(prefix: str, policy: BackfillPolicy | None = None) -> list[AssetsDefinition]:
    """`{prefix}_a → {prefix}_b → {prefix}_c`, daily partitions."""
    names = [f"{prefix}_{suffix}" for suffix in "abc"]
    return [define(name, names[i - 1] if i else None, DAYS, policy) for i, name in enumerate(names)]


BACKFILL = daily_chain("bf")
SINGLE_RUN = daily_chain("sr", BackfillPolicy.single_run())
CHAIN = [define(f"chain_{i}", f"chain_{i - 1}" if i else None) for i in range(CHAIN_LENGTH)]

CHAIN_JOB = "chain"

defaults = Definitions(
    assets=[*BACKFILL, *CHAIN],
    jobs=[define_asset_job(CHAIN_JOB, selection=AssetSelection.assets(*CHAIN))],
)
single_run = Definitions(
    assets=SINGLE_RUN, executor=in_process_executor, resources={"io_manager": mem_io_manager}
)
