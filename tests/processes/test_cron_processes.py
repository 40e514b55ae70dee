"""Cron entries added with the command line, run by real worker processes: each tick of
an active entry is inserted once across two nodes; a paused entry inserts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from proc_app import Work
from process_support import HERE, WorkerProcess
from support import wait_until

from flowstone import FlowStone


def flowstone_cli(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": url, "PYTHONPATH": str(HERE)}
    command = [sys.executable, "-m", "flowstone.cli", "--app", "proc_app:app", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_cli_added_entry_fires_once_per_tick_across_two_nodes(
    flowstone: FlowStone, flowstone_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    added = flowstone_cli(
        flowstone_url, "cron", "add", "every-minute", "* * * * *", Work.name, "--args", '{"max_ms": 0}'
    )
    assert added.returncode == 0, added.stderr
    paused = flowstone_cli(flowstone_url, "cron", "add", "held", "* * * * *", Work.name, "--paused")
    assert paused.returncode == 0, paused.stderr
    refused = flowstone_cli(flowstone_url, "cron", "add", "typo", "* * * * *", "proc_app.Wrok")
    assert refused.returncode == 2 and "is not registered" in refused.stderr
    for node in ("alpha", "beta"):
        workers(node).wait_started()
    wait_until(lambda: flowstone.list_jobs(worker=Work.name), 30, "the stored entry's tick")
    jobs = flowstone.list_jobs(worker=Work.name)
    names = [job.meta["cron_name"] for job in jobs]
    ticks = [job.meta["cron_tick"] for job in jobs]
    assert set(names) == {"every-minute"}, "the paused entry inserts nothing"
    assert len(ticks) == len(set(ticks)), "each tick is inserted once across the two nodes"
    assert jobs[0].args == {"max_ms": 0}
