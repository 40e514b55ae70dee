"""The soak: a steady load for `--minutes` on a server of its own with autovacuum on.

One worker (concurrency C) drains what the driver inserts at a steady rate — half of
`--rate`, by default half of what a quick drain of N jobs measures on the same server —
while the pruner deletes the jobs finished more than `--prune-max-age` seconds ago.
Every `--sample-every` seconds it writes one JSON line: jobs/s processed in the window,
insert-to-start latency p50/p99 (the insert call included, as in `latency`), the jobs
table's heap, index and total sizes, its rows and backlog, autovacuum's runs, and the
worker's RSS. The result compares the first and the last stretch (5 minutes, or half a
shorter run) and the table's size at half time with its size at the end: once the
pruner's horizon is behind, a table that autovacuum keeps should stop growing.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from collections import deque
from typing import Any

import anyio

from benchmarks import noop
from benchmarks.server import temporary_server
from benchmarks.workloads import (
    REMAINING_BY_INDEX,
    WorkerProcess,
    concurrency,
    drain,
    enqueue,
    flowstone_worker,
    fresh_database,
    job_count,
    pct,
    r,
    rows,
    summary,
    wait_drained,
)

DRAIN_TIMEOUT_S = 120.0  # after the load: what is left must drain within this
TICK = 0.05  # the inserter's period: each tick inserts the jobs due since the last
EDGE_S = 300.0  # the first and last stretches compared
SETTINGS = ("server_version", "autovacuum", "autovacuum_naptime", "shared_buffers", "synchronous_commit")
# What is left in the table at the end, by state (finished jobs younger than the pruner's
# horizon, and any job that did not finish).
STATES = "SELECT state::text, count(*) FROM flowstone.jobs GROUP BY 1"

# From the statistics, not by counting: a count walks every dead row and index entry,
# which under a pinned snapshot is seconds of the server's time every sample (the
# backlog is what was inserted less what the worker ran).
SIZES = """
SELECT pg_relation_size(s.relid), pg_indexes_size(s.relid), pg_total_relation_size(s.relid),
       s.n_live_tup, s.n_dead_tup, s.autovacuum_count
FROM pg_stat_user_tables AS s WHERE s.relid = 'flowstone.jobs'::regclass
"""
SHOW = "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)"
MB = 2**20


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, find the rate, run the load, summarize the samples."""
    out = args.samples_out or time.strftime("/tmp/flowstone-soak-%Y%m%d-%H%M%S.jsonl")
    with temporary_server() as dsn:
        local = argparse.Namespace(**{**vars(args), "dsn": dsn})
        server = dict(rows(dsn, SHOW, (list(SETTINGS),)))
        max_rate = args.rate or quick_rate(local)
        log(f"max rate {max_rate:.0f} jobs/s; inserting at {max_rate / 2:.0f} for {args.minutes} min")
        load = Load(fresh_database(local), local, max_rate / 2, out)
        load.run()
        census = dict(rows(load.url, STATES))
    return {
        "minutes": args.minutes,
        "concurrency": concurrency(args),
        "max_rate": r(max_rate, 1),
        "rate": r(max_rate / 2, 1),
        "prune_max_age_s": args.prune_max_age,
        "server": server,
        "samples_out": out,
        **load.result(),
        "states_at_end": census,
    }


def quick_rate(args: argparse.Namespace) -> float:
    """Processed jobs/s of one drain of N no-op jobs on this server."""
    url = fresh_database(args)
    jobs = job_count(args)
    enqueue(url, args, jobs)
    return float(summary(drain(url, args, jobs))["processed_jobs_per_s"])


class Load:
    """One soak run: the inserter, the worker, the samples."""

    def __init__(self, url: str, args: argparse.Namespace, rate: float, out: str) -> None:
        self.url, self.args, self.rate, self.out = url, args, rate, out
        self.inserted = self.processed = 0
        self.inserted_ids = noop.Runs()
        self.samples: list[dict[str, Any]] = []
        edge = max(1, round(min(EDGE_S, args.minutes * 30) / args.sample_every))
        self.first_lat: list[list[float]] = []
        self.last_lat: deque[list[float]] = deque(maxlen=edge)
        self.edge = edge
        settings = json.dumps({"prune_max_age": args.prune_max_age})
        self.worker = flowstone_worker(url, args, concurrency(args), "--settings", settings, "--record-ids")
        self.stats: dict[str, Any] = {}
        self.drained = False

    def run(self) -> None:
        """Insert and sample until the time is up, then let the worker finish and stop it."""
        self.worker.wait_ready()
        time.sleep(2)  # start-up work (leader election) finishes, as in `latency`
        try:
            previous = report(self.worker)
            began = time.monotonic()
            anyio.run(self._load, began, previous)
            wait_drained(self.url, [self.worker], REMAINING_BY_INDEX, DRAIN_TIMEOUT_S)
            self.drained = True
        except RuntimeError as error:  # a worker that fell behind: the samples still tell
            log(f"not drained: {error}")
        finally:
            self.stats = self.worker.stop()

    async def _load(self, began: float, previous: dict[str, Any]) -> None:
        deadline = began + self.args.minutes * 60
        async with anyio.create_task_group() as group:
            group.start_soon(self._insert, deadline)
            with open(self.out, "w") as out:
                at = began + self.args.sample_every
                while at <= deadline + 1e-6:
                    await anyio.sleep(at - time.monotonic())
                    previous = await anyio.to_thread.run_sync(self._sample, began, previous)
                    line = json.dumps(self.samples[-1])
                    out.write(line + "\n")
                    out.flush()
                    log(line)
                    at += self.args.sample_every

    async def _insert(self, deadline: float) -> None:
        """Insert the jobs due at `rate` every tick, each carrying its send time."""
        fs = noop.app(self.url)
        async with fs.aconnection():
            pass
        began = time.monotonic()
        while (now := time.monotonic()) < deadline:
            due = int((now - began) * self.rate) - self.inserted
            if due > 0:
                sent = time.time()
                jobs = await fs.ainsert_all([noop.Noop.new({"t": sent}) for _ in range(due)])
                for job in jobs:
                    self.inserted_ids.add(job.id)
                self.inserted += due
            await anyio.sleep(TICK)
        await fs.aclose()

    def _sample(self, began: float, previous: dict[str, Any]) -> dict[str, Any]:
        """One sample: the worker's report for the window, then the table's figures."""
        now = report(self.worker)
        lat = now["lat_ms"]
        window = now["report"] - previous["report"]
        heap, indexes, total, count, dead, vacuums = rows(self.url, SIZES)[0]
        self.processed += now["count"] - previous["count"]
        self.samples.append(
            {
                "t_s": r(time.monotonic() - began, 1),
                "window_s": r(window, 2),
                "inserted": self.inserted,
                "processed": now["count"] - previous["count"],
                "jobs_per_s": r((now["count"] - previous["count"]) / window, 1),
                "p50_ms": r(pct(lat, 50), 2),
                "p99_ms": r(pct(lat, 99), 2),
                "max_ms": r(max(lat), 2) if lat else None,
                "table_mb": r(heap / MB, 2),
                "indexes_mb": r(indexes / MB, 2),
                "total_mb": r(total / MB, 2),
                "rows": count,
                "pending": self.inserted - self.processed,
                "dead_rows": dead,
                "autovacuums": vacuums,
                "rss_mb": r(now["rss"] / MB, 1),
            }
        )
        if len(self.first_lat) < self.edge:
            self.first_lat.append(lat)
        self.last_lat.append(lat)
        return now

    def result(self) -> dict[str, Any]:
        """First against last stretch, size at half time against the end, RSS."""
        first, last = self.samples[: self.edge], self.samples[-self.edge :]
        half = self.samples[max(0, len(self.samples) // 2 - 1)]  # sample i ends at (i + 1) * every
        head, tail = stretch(first, self.first_lat), stretch(last, list(self.last_lat))
        runs = noop.Runs.from_json(self.stats["runs"])
        return {
            "samples": len(self.samples),
            "inserted": self.inserted,
            "executed_count": self.stats["count"],
            "distinct_jobs_run": len(runs),
            "jobs_run_twice": len(set(runs.twice)),
            "drained": self.drained,
            # every job once, by ids: the jobs run are the jobs inserted, none twice
            "count_ok": self.drained and runs.number() == self.inserted_ids.number() and not runs.twice,
            "pending_max": max(sample["pending"] for sample in self.samples),
            "pending_last": self.samples[-1]["pending"],
            "edge_minutes": r(self.edge * self.args.sample_every / 60, 1),
            "first": head,
            "last": tail,
            "throughput_ratio": r(tail["jobs_per_s"] / head["jobs_per_s"]),
            "p99_ratio": r(tail["p99_ms"] / head["p99_ms"]) if head["p99_ms"] else None,
            "total_mb_series": [sample["total_mb"] for sample in self.samples],
            "total_mb_half": half["total_mb"],
            "total_mb_last": self.samples[-1]["total_mb"],
            "size_growth_second_half": r(self.samples[-1]["total_mb"] / half["total_mb"]),
            "rows_last": self.samples[-1]["rows"],
            "autovacuums": self.samples[-1]["autovacuums"],
            "rss_first_mb": self.samples[0]["rss_mb"],
            "rss_last_mb": self.samples[-1]["rss_mb"],
            "rss_ratio": r(self.samples[-1]["rss_mb"] / self.samples[0]["rss_mb"]),
            "worker_cpu_s": r(self.stats["cpu_s"], 1),
        }


def log(message: str) -> None:
    """Progress on stderr (a soak runs for half an hour)."""
    print(f"soak {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def report(worker: WorkerProcess) -> dict[str, Any]:
    """Ask the worker for its report (SIGUSR1) and wait for the line."""
    worker.process.send_signal(signal.SIGUSR1)
    message: dict[str, Any] = worker.lines.get(timeout=30)
    return message


def stretch(samples: list[dict[str, Any]], lat: list[list[float]]) -> dict[str, Any]:
    """Jobs/s and pooled latency percentiles over consecutive samples."""
    pooled = [x for window in lat for x in window]
    seconds = sum(sample["window_s"] for sample in samples)
    return {
        "jobs_per_s": r(sum(sample["processed"] for sample in samples) / seconds, 1),
        "p50_ms": r(pct(pooled, 50), 2),
        "p99_ms": r(pct(pooled, 99), 2),
        "total_mb_median": r(statistics.median(sample["total_mb"] for sample in samples), 2),
    }
