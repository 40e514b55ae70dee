"""Every job runs on the instance that claimed it: two instances on two schemas of one
database, in one process, with no default instance, each keep to their own schema."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from psycopg.rows import dict_row
from support import wait_for

from flowstone import AssetRegistry, Context, FlowStone, Worker, amaterialize, asset
from flowstone.assets.io import builtin_io_managers
from flowstone.queue.instance import configured_default
from flowstone.queue.job import Job
from flowstone.queue.worker import WorkerRegistry

FAST = {"poll_interval": 0.2, "stage_interval": 0.05, "heartbeat_interval": 0.1, "shutdown_grace": 2.0}


def chain(factor: int) -> AssetRegistry:
    """A 2-asset chain in a graph of its own, stored by the default IO manager (postgres, in
    the schema of the instance that runs it)."""
    graph = AssetRegistry(builtin_io_managers())

    @asset(registry=graph)
    def source(ctx: Context, deps: dict[str, Any]) -> int:
        return factor

    @asset(registry=graph, depends_on=["source"])
    def doubled(ctx: Context, deps: dict[str, Any]) -> int:
        return deps["source"] * 2

    return graph


def counts(url: str, schema: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url, row_factory=dict_row) as conn:
        jobs = conn.execute(f'SELECT state::text, count(*) FROM "{schema}".jobs GROUP BY 1').fetchall()  # noqa: S608
        records = conn.execute(
            f'SELECT asset, status::text FROM "{schema}".materializations ORDER BY asset'  # noqa: S608
        ).fetchall()
    return {"jobs": {row["state"]: row["count"] for row in jobs}, "records": records}


@pytest.mark.anyio
async def test_two_instances_on_two_schemas_keep_to_their_own(flowstone_url: str) -> None:
    assert configured_default() is None
    graphs = {"tenant_a": chain(1), "tenant_b": chain(10)}
    instances = {
        schema: FlowStone(flowstone_url, schema=schema, assets=graph, node=schema, **FAST)
        for schema, graph in graphs.items()
    }
    try:
        for fs in instances.values():
            await anyio.to_thread.run_sync(fs.migrate)
            await fs.start({"assets": 4})
        for fs in instances.values():
            for name in ("source", "doubled"):
                result = await amaterialize(name, wait=True, timeout=20, fs=fs)
                assert result.status == "completed", result.error
        for schema, graph in graphs.items():
            stored = graph.io_managers.get("postgres")
            ctx = Context("doubled", fs=instances[schema])  # reads <schema>_assets.doubled
            assert await anyio.to_thread.run_sync(stored.load, ctx) == (2 if schema == "tenant_a" else 20)
            # the record finishes before the job's acknowledgement is written
            await wait_for(
                lambda schema=schema: counts(flowstone_url, schema)["jobs"] == {"completed": 2}, 20
            )
            assert counts(flowstone_url, schema) == {
                "jobs": {"completed": 2},
                "records": [
                    {"asset": "doubled", "status": "success"},
                    {"asset": "source", "status": "success"},
                ],
            }
        assert counts(flowstone_url, "flowstone") == {"jobs": {}, "records": []}
        assert configured_default() is None
    finally:
        for fs in instances.values():
            await fs.stop()
            await fs.aclose()


class Relay(Worker):
    """Enqueues a follow-up job from inside `perform`, without naming an instance."""

    register = False
    queue = "relay"

    def perform(self, job: Job) -> None:
        if not job.args.get("followed"):
            Relay.enqueue({"followed": True})


async def _two(found: Any) -> list[Job] | None:
    jobs: list[Job] = await found
    return jobs if len(jobs) == 2 else None


@pytest.mark.anyio
async def test_a_job_enqueues_through_the_instance_running_it(flowstone_url: str) -> None:
    registry = WorkerRegistry()
    registry.register(Relay)
    fs = FlowStone(flowstone_url, schema="tenant_c", registry=registry, node="c", **FAST)
    try:
        await anyio.to_thread.run_sync(fs.migrate)
        await fs.start({"relay": 2})
        first = await fs.ainsert(Relay.new())
        done = await wait_for(
            lambda: _two(fs.alist_jobs(state="completed")), timeout=10, message="both jobs to complete"
        )
        assert [job.args for job in done] == [{}, {"followed": True}] and done[0].id == first.id
        assert configured_default() is None
    finally:
        await fs.stop()
        await fs.aclose()
