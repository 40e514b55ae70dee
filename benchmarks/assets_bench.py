"""(e) asset backfill throughput and (f) chain latency, through one `flowstone worker`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from typing import Any

import psycopg

from benchmarks.workloads import ROOT, r, scalar

CONCURRENCY = 10
# Done when no asset job is left to run; each branch is served by a partial index (a
# count over the runs' records cost the server ~10 ms per poll, competing with the run).
UNFINISHED = (
    "SELECT EXISTS (SELECT 1 FROM flowstone.jobs WHERE state = 'available' AND queue = 'assets')"
    " OR EXISTS (SELECT 1 FROM flowstone.jobs WHERE state = 'executing')"
    " OR EXISTS (SELECT 1 FROM flowstone.jobs WHERE state IN ('scheduled', 'retryable'))"
)


class AssetWorker:
    """`flowstone worker --app benchmarks.asset_app:app --queues assets=C`."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "FLOWSTONE_DATABASE_URL": url}
        self.started = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowstone.cli",
                "worker",
                "--app",
                "benchmarks.asset_app:app",
                "--queues",
                f"assets={CONCURRENCY}",
                "--log-format",
                "json",
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self.started.wait(60):
            raise RuntimeError("asset worker did not start")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "node started" in line:
                self.started.set()

    def stop(self) -> int:
        """SIGTERM and wait for the graceful stop."""
        self.process.terminate()
        return self.process.wait(60)


def _app(url: str) -> Any:
    os.environ["FLOWSTONE_DATABASE_URL"] = url
    from benchmarks import asset_app

    asset_app.app = type(asset_app.app)(url)
    return asset_app


def _unfinished(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(UNFINISHED).fetchone()
        return bool(row and row[0])


def backfill(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Backfill `--partitions` days (10,000) of the 3-asset chain, upstream first; materializations/s."""
    module = _app(url)
    from flowstone import backfill as queue_backfill

    worker = AssetWorker(url)
    end = date(2000, 1, 1) + timedelta(days=args.partitions - 1)
    began = time.perf_counter()
    for defined in module.BACKFILL:
        queue_backfill(defined.name, start=date(2000, 1, 1), end=end, fs=module.app)
    queued = time.perf_counter() - began
    total = args.partitions * len(module.BACKFILL)
    while _unfinished(url):
        time.sleep(0.2)  # the harness's poll: completion is read at this resolution
    seconds = time.perf_counter() - began
    successes = scalar(url, "SELECT count(*) FROM flowstone.materializations WHERE status = 'success'")
    code = worker.stop()
    module.app.close()
    return {
        "materializations": total,
        "materializations_per_s": r(total / seconds, 1),
        "seconds": r(seconds),
        "enqueue_s": r(queued),
        "successes": successes,
        "count_ok": successes == total,
        "worker_exit": code,
    }


CHAIN_TIMEOUT_S = 30.0  # a run whose last success has not been announced by then failed


def chain(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """`materialize_all` of a 10-asset linear chain for one partition, to the last success
    (five runs; one not done within 30 s is a failure, not a measurement)."""
    module = _app(url)
    from flowstone import materialize_all

    worker = AssetWorker(url)
    time.sleep(2)  # settle, as the latency workload does
    last = module.CHAIN[-1].name
    timings, failed = [], 0
    for _ in range(5):
        with psycopg.connect(url, autocommit=True) as listener:
            listener.execute('LISTEN "flowstone.materializations"')
            began = time.perf_counter()
            run = materialize_all(last, force=True, fs=module.app)
            if announced(listener, (run.run_id, last), CHAIN_TIMEOUT_S):
                timings.append((time.perf_counter() - began) * 1000)
            else:
                failed += 1
    code = worker.stop()
    module.app.close()
    timings.sort()
    return {
        "chain_length": len(module.CHAIN),
        "chain_ms": r(timings[len(timings) // 2], 1) if timings else None,
        "chain_ms_runs": [r(t, 1) for t in timings],
        "failed_runs": failed,
        "count_ok": failed == 0,
        "worker_exit": code,
    }


def announced(listener: psycopg.Connection[Any], words: tuple[str, ...], timeout: float) -> bool:
    """Whether a notification naming every one of `words` arrives within `timeout` s."""
    return any(all(word in notify.payload for word in words) for notify in listener.notifies(timeout=timeout))
