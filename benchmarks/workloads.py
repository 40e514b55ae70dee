"""The workloads. Each takes the parsed arguments and returns a dict of results."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks import noop
from flowstone.queue.migrate import migrate

DEFAULT_DSN = os.environ.get("PEERBENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
REMAINING = "SELECT count(*) FROM flowstone.jobs WHERE state NOT IN ('completed','discarded','cancelled')"
COMPLETED = "SELECT count(*) FROM flowstone.jobs WHERE state = 'completed'"
XACTS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
POLL = 0.2
BACKLOG_ROWS = 1_000_000


def r(value: float | None, digits: int = 3) -> float | None:
    """Round for the report."""
    return None if value is None else round(value, digits)


def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank on the sorted values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def fresh_database(args: argparse.Namespace) -> str:
    """Drop and create the benchmark database, migrate it, return its URL."""
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db)))
    url = make_conninfo(args.dsn, dbname=args.db)
    migrate(url)
    return url


def scalar(url: str, query: str) -> Any:
    """One value on a fresh autocommit connection."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query)
        row = cursor.fetchone() if cursor.description else None
        return None if row is None else row[0]


class WorkerProcess:
    """`python -m benchmarks.worker`: spawn, wait for ready, stop with SIGTERM."""

    def __init__(self, url: str, args: argparse.Namespace, settings: dict[str, str] | None = None) -> None:
        """`settings`: FlowStone settings for the worker, passed as FLOWSTONE_* variables."""
        env = {
            **os.environ,
            **{f"FLOWSTONE_{name.upper()}": value for name, value in (settings or {}).items()},
        }
        self.stats_path = tempfile.mktemp(prefix="flowstone-bench-", suffix=".json")
        self.log = open(self.stats_path + ".log", "w")  # noqa: SIM115 - closed in stop()
        self.spawned = time.time()
        self.ready_at: float | None = None
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.worker",
                "--url",
                url,
                "--concurrency",
                str(args.concurrency),
                "--stats-out",
                self.stats_path,
                "--loop",
                args.loop,
                "--queue-options",
                args.queue_options,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if '"ready"' in line:
                self.ready_at = json.loads(line)["ready"]
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until the node runs."""
        if not self._ready.wait(timeout):
            raise RuntimeError(f"worker not ready; see {self.log.name}")

    def stop(self, grace: float = 30) -> dict[str, Any]:
        """SIGTERM, wait for the graceful stop (SIGKILL after `grace`), return its stats."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.log.close()
        with open(self.stats_path) as stats:
            return {**json.load(stats), "returncode": code}


def enqueue(url: str, args: argparse.Namespace, jobs: int, settings: dict[str, str] | None = None) -> float:
    """Bulk-insert `jobs` no-op jobs in calls of `batch`; return the seconds the calls took."""
    fs = noop.app(url, **(settings or {}))

    async def run() -> float:
        async with fs.aconnection():
            pass  # connection set-up is not timed
        began = time.perf_counter()
        for start in range(0, jobs, args.batch):
            count = min(args.batch, jobs - start)
            await fs.ainsert_all([noop.Noop.new({"i": start + i}) for i in range(count)])
        elapsed = time.perf_counter() - began
        await fs.aclose()
        return elapsed

    return anyio.run(run)


def drain(
    url: str, args: argparse.Namespace, jobs: int, through: tuple[str, dict[str, str]] | None = None
) -> dict[str, Any]:
    """One worker drains the table; the clock runs from its first execution to zero remaining.
    `through`: the URL and settings the worker uses instead of `url` (a pooler's)."""
    scalar(url, "CHECKPOINT")
    commits = scalar(url, XACTS)
    worker_url, settings = through or (url, None)
    worker = WorkerProcess(worker_url, args, settings)
    polls = 0
    while scalar(url, REMAINING) != 0:
        polls += 1
        if worker.process.poll() is not None:
            raise RuntimeError("worker exited early")
        time.sleep(POLL)  # the harness's 0.2 s poll: the drain's end is read at this resolution
    done = time.time()
    stats = worker.stop()
    time.sleep(0.5)  # backends flush their counters on exit
    commits = scalar(url, XACTS) - commits - polls - 3
    seconds = done - stats["first"]
    return {
        "processed_jobs_per_s": r(jobs / seconds, 1),
        "drain_s": r(seconds),
        "wall_jobs_per_s": r(jobs / (done - worker.spawned), 1),
        "executed_count": stats["count"],
        # N executions and N completed rows: every job ran exactly once.
        "count_ok": stats["count"] == jobs and scalar(url, COMPLETED) >= jobs,
        "db_completed": scalar(url, COMPLETED),
        "db_commits_per_job": r(commits / jobs),
        "worker_cpu_s": r(stats["cpu_s"], 2),
        "shutdown_s": r(stats.get("shutdown_s")),
        "rss": stats.get("rss"),
    }


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """(a) bulk enqueue of N jobs and (b) their drain by one worker at concurrency C."""
    url = fresh_database(args)
    seconds = enqueue(url, args, args.jobs)
    return {"jobs": args.jobs, "enqueue_jobs_per_s": r(args.jobs / seconds, 1), **drain(url, args, args.jobs)}


def pgbouncer(args: argparse.Namespace) -> dict[str, Any]:
    """(h) `throughput` through a PgBouncer in transaction mode that it starts in front of
    the server, LISTENing on `direct_url` and then polling without it, beside `throughput`
    direct. Headline figures: through PgBouncer with `direct_url`."""
    from flowstone.testing.pgbouncer import PgBouncer, version

    direct = throughput(args)
    with PgBouncer.start(args.dsn) as bouncer:
        bounced = {
            name: _bounced(args, bouncer.url_for(args.db), name == "listen") for name in ("listen", "polling")
        }
    figures = ("enqueue_jobs_per_s", "processed_jobs_per_s", "count_ok")
    return {
        "pgbouncer": version(),
        "pool_mode": "transaction",
        **bounced["listen"],
        **{
            f"{mode}_{key}": result[key]
            for mode, result in (("direct", direct), ("polling", bounced["polling"]))
            for key in figures
        },
    }


def _bounced(args: argparse.Namespace, through: str, listen: bool) -> dict[str, Any]:
    """`throughput` on a fresh database through the pooler at `through` (with `direct_url`
    for LISTEN when `listen`)."""
    url = fresh_database(args)
    settings = {"pooler": "transaction", **({"direct_url": url} if listen else {})}
    seconds = enqueue(through, args, args.jobs, settings)
    return {
        "jobs": args.jobs,
        "enqueue_jobs_per_s": r(args.jobs / seconds, 1),
        **drain(url, args, args.jobs, (through, settings)),
    }


def backlog(args: argparse.Namespace) -> dict[str, Any]:
    """(d) the same drain with 1,000,000 completed and scheduled rows already in the table."""
    url = fresh_database(args)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO flowstone.jobs (state, worker, queue, args, completed_at, scheduled_at) "
            "SELECT CASE WHEN n %% 2 = 0 THEN 'completed' ELSE 'scheduled' END::flowstone.job_state, "
            "'bench.Noop', 'default', jsonb_build_object('n', n), "
            "CASE WHEN n %% 2 = 0 THEN now() END, "
            "CASE WHEN n %% 2 = 0 THEN now() ELSE now() + interval '1 day' END "
            "FROM generate_series(1, %s) AS n",
            (BACKLOG_ROWS,),
        )
        conn.execute("VACUUM ANALYZE flowstone.jobs")
    seconds = enqueue(url, args, args.jobs)
    result = drain_backlog(url, args)
    return {
        "jobs": args.jobs,
        "backlog_rows": BACKLOG_ROWS,
        "enqueue_jobs_per_s": r(args.jobs / seconds, 1),
        **result,
    }


def drain_backlog(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Drain while the scheduled backlog stays scheduled (it counts as remaining otherwise)."""
    global REMAINING
    saved = REMAINING
    # Counted through the partial indexes: a scan of the 1,000,000 rows every poll cost
    # the server more CPU than the drain itself. A no-op job is never retried, and every
    # run still checks that exactly N jobs executed.
    REMAINING = (
        "SELECT (SELECT count(*) FROM flowstone.jobs WHERE state = 'available')"
        " + (SELECT count(*) FROM flowstone.jobs WHERE state = 'executing')"
    )
    try:
        return drain(url, args, args.jobs)
    finally:
        REMAINING = saved


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """(c) jobs inserted one at a time at a steady rate into an idle worker: insert→start."""
    url = fresh_database(args)
    scalar(url, "CHECKPOINT")
    worker = WorkerProcess(url, args)
    worker.wait_ready()
    time.sleep(2)  # the harness's settle time: start-up work (leader election) finishes
    calls = anyio.run(send_steadily, url, args)
    while scalar(url, REMAINING) != 0:
        time.sleep(POLL)
    stats = worker.stop()
    lat = [x * 1000 for x in stats["lat"]]
    return {
        "jobs": args.latency_jobs,
        "executed_count": stats["count"],
        "samples": len(lat),
        "count_ok": stats["count"] == args.latency_jobs,
        "p50_ms": r(pct(lat, 50), 2),
        "p95_ms": r(pct(lat, 95), 2),
        "p99_ms": r(pct(lat, 99), 2),
        "max_ms": r(max(lat), 2) if lat else None,
        "insert_call_p50_ms": r(pct(calls, 50), 2),
        "insert_call_p99_ms": r(pct(calls, 99), 2),
    }


async def send_steadily(url: str, args: argparse.Namespace) -> list[float]:
    """Insert `latency_jobs` jobs at `latency_rate` per second, each carrying its send time."""
    fs = noop.app(url)
    calls = []
    async with fs.aconnection():
        pass
    began = time.perf_counter()
    for i in range(args.latency_jobs):
        delay = began + i / args.latency_rate - time.perf_counter()
        if delay > 0:
            await anyio.sleep(delay)
        sent = time.time()
        call = time.perf_counter()
        await fs.ainsert(noop.Noop.new({"t": sent, "i": i}))
        calls.append((time.perf_counter() - call) * 1000)
    await fs.aclose()
    return calls


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """(g) worker RSS after 10k and after 200k jobs."""
    jobs = 200_000
    url = fresh_database(args)
    enqueue(url, args, jobs)
    result = drain(url, args, jobs)
    rss = result.pop("rss") or {}
    small, large = rss.get("10000"), rss.get("200000")
    return {
        "jobs": jobs,
        "rss_10k_mb": r(small / 2**20, 1) if small else None,
        "rss_200k_mb": r(large / 2**20, 1) if large else None,
        "rss_ratio": r(large / small) if small and large else None,
        **result,
    }


def assets_backfill(args: argparse.Namespace) -> dict[str, Any]:
    """(e) backfill of 10,000 daily partitions of a 3-asset chain, materializations per second."""
    from benchmarks import assets_bench

    return assets_bench.backfill(args, fresh_database(args))


def asset_chain(args: argparse.Namespace) -> dict[str, Any]:
    """(f) a 10-asset linear chain for one partition: materialize_all to the last success."""
    from benchmarks import assets_bench

    return assets_bench.chain(args, fresh_database(args))
