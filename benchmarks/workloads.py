"""The workloads. Each takes the parsed arguments and returns a dict of results."""

from __future__ import annotations

import argparse
import json
import os
import queue
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
from flowstone import Worker
from flowstone.queue.migrate import migrate

DEFAULT_DSN = os.environ.get("PEERBENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
REMAINING = "SELECT count(*) FROM flowstone.jobs WHERE state NOT IN ('completed','discarded','cancelled')"
COMPLETED = "SELECT count(*) FROM flowstone.jobs WHERE state = 'completed'"
XACTS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
POLL = 0.2
REMAINING_BY_INDEX = (
    "SELECT (SELECT count(*) FROM flowstone.jobs WHERE state = 'available')"
    " + (SELECT count(*) FROM flowstone.jobs WHERE state = 'executing')"
)
BACKLOG_ROWS = 1_000_000
DEFAULT_CONCURRENCY = 10
DEFAULT_JOBS = 20_000


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


def emit(result: dict[str, Any], append: str | None) -> None:
    """Print one result as a JSON line (and append it to `append`, when given)."""
    line = json.dumps(result)
    print(line, flush=True)
    if append:
        with open(append, "a") as out:
            out.write(line + "\n")


def scalar(url: str, query: str) -> Any:
    """One value on a fresh autocommit connection."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query)
        row = cursor.fetchone() if cursor.description else None
        return None if row is None else row[0]


def rows(url: str, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    """Every row of `query` on a fresh autocommit connection."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


class WorkerProcess:
    """A worker subprocess: `command --stats-out FILE`; spawn, wait for its ready line,
    stop with SIGTERM and read the counters it wrote. Its other JSON lines (the soak's
    reports) wait in `lines`."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.stats_path = tempfile.mktemp(prefix="flowstone-bench-", suffix=".json")
        self.log = open(self.stats_path + ".log", "w")  # noqa: SIM115 - closed in stop()
        self.spawned = time.time()
        self.ready_at: float | None = None
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [*command, "--stats-out", self.stats_path],
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
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if "ready" in message:
                self.ready_at = message["ready"]
                self._ready.set()
            else:
                self.lines.put(message)

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
        if not os.path.exists(self.stats_path):
            raise RuntimeError(f"worker exited ({code}) without its counters; see {self.log.name}")
        with open(self.stats_path) as stats:
            return {**json.load(stats), "returncode": code}


def flowstone_worker(
    url: str,
    args: argparse.Namespace,
    concurrency: int,
    *extra: str,
    paused: bool = False,
    settings: dict[str, str] | None = None,
) -> WorkerProcess:
    """`python -m benchmarks.worker` on `url`, queue `default` at `concurrency` (paused
    until resumed, if so asked), with `settings` as its FLOWSTONE_* variables."""
    options = {**json.loads(args.queue_options), **({"paused": True} if paused else {})}
    env = {**os.environ, **{f"FLOWSTONE_{name.upper()}": value for name, value in (settings or {}).items()}}
    return WorkerProcess(
        [
            sys.executable,
            "-m",
            "benchmarks.worker",
            "--url",
            url,
            "--concurrency",
            str(concurrency),
            "--loop",
            args.loop,
            "--queue-options",
            json.dumps(options),
            *extra,
        ],
        env,
    )


def concurrency(args: argparse.Namespace, default: int = DEFAULT_CONCURRENCY) -> int:
    """The worker's concurrency: `--concurrency`, else the workload's own default."""
    return int(args.concurrency or default)


def job_count(args: argparse.Namespace, default: int = DEFAULT_JOBS) -> int:
    """N: `--jobs`, else the workload's own default."""
    return int(args.jobs or default)


def enqueue(
    url: str,
    args: argparse.Namespace,
    jobs: int,
    kind: type[Worker] = noop.Noop,
    settings: dict[str, str] | None = None,
) -> float:
    """Bulk-insert `jobs` jobs of `kind` in calls of `batch`; return the seconds the calls took."""
    fs = noop.app(url, **(settings or {}))

    async def run() -> float:
        async with fs.aconnection():
            pass  # connection set-up is not timed
        began = time.perf_counter()
        for start in range(0, jobs, args.batch):
            count = min(args.batch, jobs - start)
            await fs.ainsert_all([kind.new({"i": start + i}) for i in range(count)])
        elapsed = time.perf_counter() - began
        await fs.aclose()
        return elapsed

    return anyio.run(run)


def wait_drained(
    url: str, workers: list[WorkerProcess], remaining: str, timeout: float | None = None
) -> tuple[float, int]:
    """Poll `remaining` until it reads zero; return that time and the number of polls."""
    polls, began = 0, time.time()
    while (left := scalar(url, remaining)) != 0:
        polls += 1
        if any(worker.process.poll() is not None for worker in workers):
            raise RuntimeError("worker exited early")
        if timeout is not None and time.time() - began > timeout:
            raise RuntimeError(f"{left} jobs left after {timeout} s")
        time.sleep(POLL)  # the harness's 0.2 s poll: the drain's end is read at this resolution
    return time.time(), polls


def drain(
    url: str,
    args: argparse.Namespace,
    jobs: int,
    *extra: str,
    processes: int = 1,
    remaining: str = REMAINING,
    limit: int | None = None,
    together: bool = False,
    through: tuple[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """`processes` workers drain the table; the clock runs from the first execution to zero
    remaining. `together`: they start paused and the queue resumes once all of them run,
    so none has a head start. `through`: the URL and settings the workers use instead of
    `url` (a pooler's). `per_process` holds each worker's own counters."""
    scalar(url, "CHECKPOINT")
    completed = scalar(url, COMPLETED)  # before the drain: a backlog's completed rows
    commits = scalar(url, XACTS)
    size = limit or concurrency(args)
    worker_url, settings = through or (url, None)
    workers = [
        flowstone_worker(worker_url, args, size, *extra, paused=together, settings=settings)
        for _ in range(processes)
    ]
    if together:
        for worker in workers:
            worker.wait_ready()
        resume(url)
    try:
        done, polls = wait_drained(url, workers, remaining)
    finally:
        stats = [worker.stop() for worker in workers]
    time.sleep(0.5)  # backends flush their counters on exit
    commits = scalar(url, XACTS) - commits - polls - 3 - int(together)
    completed = scalar(url, COMPLETED) - completed
    first = min(s["first"] for s in stats if s["first"] is not None)
    last = max(s["last"] for s in stats if s["last"] is not None)
    executed = sum(s["count"] for s in stats)
    seconds = done - first
    return {
        "processed_jobs_per_s": r(jobs / seconds, 1),
        "drain_s": r(seconds),
        # the span of the executions' starts: the drain without the poll's 0.2 s resolution
        "exec_span_s": r(last - first),
        "wall_jobs_per_s": r(jobs / (done - min(worker.spawned for worker in workers)), 1),
        "executed_count": executed,
        # N executions, and N rows completed by this drain: every job ran exactly once.
        "count_ok": executed == jobs and completed == jobs,
        "db_completed": completed,
        "db_commits_per_job": r(commits / jobs),
        "worker_cpu_s": r(sum(s["cpu_s"] for s in stats), 2),
        "shutdown_s": r(max(s.get("shutdown_s") or 0 for s in stats)),
        "rss": stats[0].get("rss"),
        "per_process": stats,
    }


def resume(url: str) -> None:
    """Resume the benchmark's queue on every node."""
    fs = noop.app(url)
    fs.resume_queue(noop.QUEUE)
    fs.close()


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """A drain's result without its per-process counters (for the one-worker workloads)."""
    return {key: value for key, value in result.items() if key != "per_process"}


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """(a) bulk enqueue of N jobs and (b) their drain by one worker at concurrency C."""
    url, jobs = fresh_database(args), job_count(args)
    seconds = enqueue(url, args, jobs)
    return {"jobs": jobs, "enqueue_jobs_per_s": r(jobs / seconds, 1), **summary(drain(url, args, jobs))}


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
    url, jobs = fresh_database(args), job_count(args)
    settings = {"pooler": "transaction", **({"direct_url": url} if listen else {})}
    seconds = enqueue(through, args, jobs, settings=settings)
    return {
        "jobs": jobs,
        "enqueue_jobs_per_s": r(jobs / seconds, 1),
        **summary(drain(url, args, jobs, through=(through, settings))),
    }


def backlog(args: argparse.Namespace) -> dict[str, Any]:
    """(d) the same drain with 1,000,000 completed and scheduled rows already in the table."""
    url, jobs = fresh_database(args), job_count(args)
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
    seconds = enqueue(url, args, jobs)
    # Counted through the partial indexes: a scan of the 1,000,000 rows every poll cost
    # the server more CPU than the drain itself; the scheduled backlog stays scheduled.
    # A no-op job is never retried, and every run still checks that N jobs executed.
    result = summary(drain(url, args, jobs, remaining=REMAINING_BY_INDEX))
    return {
        "jobs": jobs,
        "backlog_rows": BACKLOG_ROWS,
        "enqueue_jobs_per_s": r(jobs / seconds, 1),
        **result,
    }


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """(c) jobs inserted one at a time at a steady rate into an idle worker: insert→start."""
    url = fresh_database(args)
    scalar(url, "CHECKPOINT")
    worker = flowstone_worker(url, args, concurrency(args))
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
    result = summary(drain(url, args, jobs))
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
