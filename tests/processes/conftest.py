"""Fixtures starting real `flowstone worker` processes against the test's database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from process_support import WorkerProcess


@pytest.fixture
def workers(flowstone_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes on this test's database; all are killed at the end."""
    started: list[WorkerProcess] = []
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.executions (job_id bigint NOT NULL, node text NOT NULL)")

    def start(node: str, url: str = flowstone_url, queues: str = "work=10", **env: str) -> WorkerProcess:
        process = WorkerProcess(url, node, queues, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
