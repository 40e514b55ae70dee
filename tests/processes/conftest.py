"""Fixtures starting real `flowstone worker` processes against the test's database."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import proc_assets
import psycopg
import pytest
from process_support import StartWorkers, WorkerProcess

from flowstone import FlowStone


@pytest.fixture
def workers(flowstone_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes on this test's database; all are killed at the end."""
    started: list[WorkerProcess] = []
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.executions (job_id bigint NOT NULL, node text NOT NULL)")

    def start(
        node: str, url: str = flowstone_url, queues: str = "work=10", argv: Sequence[str] = (), **env: str
    ) -> WorkerProcess:
        process = WorkerProcess(url, node, queues, argv=argv, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def asset_workers(
    flowstone: FlowStone, flowstone_url: str, workers: Callable[..., WorkerProcess]
) -> StartWorkers:
    """Start `count` worker nodes running proc_assets (its environment options), once the
    run log table exists; returns them started."""
    proc_assets.register()
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.asset_runs (asset text NOT NULL, partition text NOT NULL,"
            " started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL)"
        )

    def start(count: int, **env: str) -> list[WorkerProcess]:
        nodes = [
            workers(f"assets{i}", queues="assets=10", app="proc_assets:app", **env) for i in range(count)
        ]
        for node in nodes:
            node.wait_started()
        return nodes

    return start


@pytest.fixture
def isolated(flowstone_url: str, workers: Callable[..., WorkerProcess]) -> Callable[..., WorkerProcess]:
    """Start a node running `proc_isolated` (queues iso and chaos); returns it started."""
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.children (job_id bigint NOT NULL, pid int NOT NULL,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )

    def start(node: str = "iso", argv: tuple[str, ...] = (), **env: str) -> WorkerProcess:
        process = workers(node, queues="iso=2,chaos=10", app="proc_isolated:app", argv=argv, **env)
        process.wait_started()
        return process

    return start
