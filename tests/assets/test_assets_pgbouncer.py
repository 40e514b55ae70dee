"""Assets behind PgBouncer in transaction mode: their partition locks live on a session,
so materializations run with `direct_url` and fail, saying why, without it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from psycopg.conninfo import conninfo_to_dict

from flowstone import AssetRegistry, Context, FlowStone, amaterialize, asset
from flowstone.assets.io import builtin_io_managers
from flowstone.testing.pgbouncer import PgBouncer

FAST = {"poll_interval": 0.2, "stage_interval": 0.05, "heartbeat_interval": 0.1, "shutdown_grace": 2.0}


def chain() -> AssetRegistry:
    """source → doubled, in a graph of its own."""
    graph = AssetRegistry(builtin_io_managers())

    @asset(registry=graph)
    def source(ctx: Context, deps: dict[str, Any]) -> int:
        return 21

    @asset(registry=graph, depends_on=["source"])
    def doubled(ctx: Context, deps: dict[str, Any]) -> int:
        return deps["source"] * 2

    return graph


@pytest.mark.anyio
@pytest.mark.parametrize("direct", [True, False])
async def test_materializations_behind_pgbouncer(
    bouncer: PgBouncer, flowstone_url: str, direct: bool
) -> None:
    graph = chain()
    through = bouncer.url_for(str(conninfo_to_dict(flowstone_url)["dbname"]))
    given = {"direct_url": flowstone_url} if direct else {}
    fs = FlowStone(through, pooler="transaction", assets=graph, **given, **FAST)
    try:
        with anyio.fail_after(10):
            await fs.start({"assets": 2})
        if direct:
            for name in ("source", "doubled"):
                result = await amaterialize(name, wait=True, timeout=10, fs=fs)
                assert result.status == "completed", result.error
            stored = graph.io_managers.get("postgres")  # the default, through the pooler
            assert await anyio.to_thread.run_sync(stored.load, Context("doubled", fs=fs)) == 42
        else:
            result = await amaterialize("source", wait=True, timeout=10, fs=fs)
            assert result.status == "failed"
            assert result.error is not None and "direct_url" in str(result.error)
    finally:
        with anyio.fail_after(15):
            await fs.stop()
        await fs.aclose()
