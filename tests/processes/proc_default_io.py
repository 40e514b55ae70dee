"""Two assets that name no IO manager (the default), for real worker processes
(`--app proc_default_io:app`): `shards` → `shard_totals` over 8 static partitions. Each
value says which node computed it, so a test sees a dependent read what another process
stored. PROC_IO names an IO manager for both instead (e.g. `memory`); a shard takes
PROC_SLOW seconds."""

import os
import time
from typing import Any

from flowstone import AssetRegistry, Context, FlowStone, StaticPartitions, asset

SHARDS = StaticPartitions([f"p{n}" for n in range(8)])
graph = AssetRegistry()
app = FlowStone(
    os.environ.get("FLOWSTONE_DATABASE_URL"),  # set for the worker processes
    assets=graph,
    stage_interval=0.2,
    heartbeat_interval=0.2,
    node_expiry=2.0,
    leader_lease=2.0,
)
chosen: dict[str, Any] = {"io_manager": os.environ["PROC_IO"]} if os.environ.get("PROC_IO") else {}


@asset(partitions=SHARDS, registry=graph, max_attempts=1, **chosen)
def shards(ctx: Context, deps: dict[str, Any]) -> dict[str, Any]:
    """The shard's number, and the node that computed it."""
    time.sleep(float(os.environ.get("PROC_SLOW", "0")))  # the shard's slow work
    return {"n": int(ctx.partition_key[1:]), "node": app.settings.node}


@asset(depends_on=["shards"], partitions=SHARDS, registry=graph, max_attempts=1, **chosen)
def shard_totals(ctx: Context, deps: dict[str, Any]) -> dict[str, Any]:
    """Ten times the shard, with the node that computed the shard and this node."""
    shard = deps["shards"]
    return {"total": shard["n"] * 10, "read_from": shard["node"], "node": app.settings.node}
