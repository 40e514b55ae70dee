"""The default IO manager works in the deployment shape docs/guides/deployment.md
recommends: several worker processes, a dependent reading what another process computed;
and a materialization whose worker died on its last attempt is settled `cancelled` by
another's lifeline."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from process_support import WorkerProcess, rows, settled
from support import wait_until

from flowstone import FlowStone, backfill
from flowstone.insights import Insights

pytestmark = pytest.mark.process

RECORDS = "SELECT asset, partition, status::text, error_message FROM flowstone.materializations ORDER BY 1, 2"
TOTALS = "SELECT partition, value FROM flowstone_assets.shard_totals ORDER BY 1"
SHARDS = [f"p{n}" for n in range(8)]


def _paused_on(fs: FlowStone, node: str) -> bool:
    return any(n.name == node and n.queues["assets"]["paused"] for n in fs.nodes() if n.alive)


def _only_on(fs: FlowStone, url: str, asset: str, running: str, paused: str, settle: int) -> None:
    """Backfill every shard of `asset` for node `running` alone (the queue paused on the
    other node first, and the nodes' heartbeats saying so), until `settle` jobs ended."""
    fs.pause_queue("assets", node=paused)
    fs.resume_queue("assets", node=running)
    wait_until(lambda: _paused_on(fs, paused) and not _paused_on(fs, running), 20, f"{paused} to pause")
    backfill(asset, partitions=SHARDS, fs=fs)
    wait_until(lambda: settled(url, settle), 60, f"the {asset} jobs to finish")


def _run_chain(url: str, workers: Callable[..., WorkerProcess], **env: str) -> None:
    """Two worker nodes (io1, io2); every shard computed on io1, then every total on io2:
    each total reads a shard another process computed."""
    import proc_default_io

    for node in [workers(f"io{n}", queues="assets=4", app="proc_default_io:app", **env) for n in (1, 2)]:
        node.wait_started()
    with FlowStone(url, assets=proc_default_io.graph) as fs:
        _only_on(fs, url, "shards", running="io1", paused="io2", settle=8)
        _only_on(fs, url, "shard_totals", running="io2", paused="io1", settle=16)


def test_a_chain_over_8_partitions_crosses_two_worker_processes_with_the_default_io_manager(
    flowstone_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    import proc_default_io

    assert proc_default_io.shards.io_manager == "postgres", "the default, named by no one"
    _run_chain(flowstone_url, workers)
    records = rows(flowstone_url, RECORDS)
    assert [(a, p, s) for a, p, s, _ in records] == [
        (asset, shard, "success") for asset in ("shard_totals", "shards") for shard in SHARDS
    ], records
    totals: list[tuple[str, dict[str, Any]]] = rows(flowstone_url, TOTALS)
    assert totals == [
        (shard, {"total": n * 10, "read_from": "io1", "node": "io2"}) for n, shard in enumerate(SHARDS)
    ]


def test_the_chain_queued_at_once_on_two_worker_processes_materializes_completely(
    flowstone_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    import proc_default_io

    for node in [workers(f"io{n}", queues="assets=4", app="proc_default_io:app") for n in (1, 2)]:
        node.wait_started()
    with FlowStone(flowstone_url, assets=proc_default_io.graph) as fs:
        backfill("shards", partitions=SHARDS, fs=fs)
        backfill("shard_totals", partitions=SHARDS, fs=fs)
        wait_until(lambda: settled(flowstone_url, 16), 60, "the 16 jobs to finish")
    assert {s for _, _, s, _ in rows(flowstone_url, RECORDS)} == {"success"}
    assert [value["total"] for _, value in rows(flowstone_url, TOTALS)] == [n * 10 for n in range(8)]


def test_a_memory_upstream_read_in_another_process_fails_naming_the_fix(
    flowstone_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    _run_chain(flowstone_url, workers, PROC_IO="memory")
    failed = [(a, p, s, e) for a, p, s, e in rows(flowstone_url, RECORDS) if a == "shard_totals"]
    assert {s for _, _, s, _ in failed} == {"failed"}
    message = failed[0][3]
    assert "stored by the memory IO manager" in message and "has no data" not in message
    assert 'io_manager="postgres" (the default) or "filesystem"' in message


def test_a_materialization_whose_node_died_on_its_last_attempt_is_cancelled_by_the_lifeline(
    flowstone_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    import proc_default_io

    doomed = workers("io1", queues="assets=4", app="proc_default_io:app", PROC_SLOW="120")
    doomed.wait_started()
    with FlowStone(flowstone_url, assets=proc_default_io.graph) as fs:
        backfill("shards", partitions=SHARDS[:1], fs=fs)
        wait_until(lambda: rows(flowstone_url, RECORDS)[0][2] == "running", 20, "the shard to start")
        doomed.signal(signal.SIGKILL)
        doomed.wait(10)
        workers("io2", queues="assets=4", app="proc_default_io:app").wait_started()
        wait_until(lambda: rows(flowstone_url, RECORDS)[0][2] != "running", 30, "the lifeline of io2")
        [(_, _, status, message)] = rows(flowstone_url, RECORDS)
        assert status == "cancelled", message
        assert "ended discarded without a result: rescued by the lifeline: node io1" in message
        [shown] = Insights(fs).partitions("shards", SHARDS[:1])
        assert (shown.status, shown.reason) == ("cancelled", message)
