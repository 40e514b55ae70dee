"""Drains beyond the peer harness's one no-op worker at concurrency 10.

- `realistic`: jobs that each wait 5 ms (I/O), one worker at concurrency 100, against
  the ideal C / 5 ms and against what the same worker drains of no-op jobs (the ceiling
  this server and machine allow at that concurrency);
- `scaleout`: 1, 2 and 4 worker processes on one database: total jobs/s, no job run
  twice, and how evenly the nodes shared the jobs.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import noop
from benchmarks.workloads import (
    concurrency,
    drain,
    enqueue,
    fresh_database,
    job_count,
    r,
    rows,
    scalar,
    summary,
)

REALISTIC_CONCURRENCY = 100
# Two processes drained 20,000 no-op jobs in 1.7 s here: each run should last >= 3 s.
SCALEOUT_JOBS = 50_000
PER_NODE = "SELECT attempted_by[1] AS node, count(*) FROM flowstone.jobs WHERE state = 'completed' GROUP BY 1"
NOT_FIRST_ATTEMPT = "SELECT count(*) FROM flowstone.jobs WHERE attempt <> 1"


def realistic(args: argparse.Namespace) -> dict[str, Any]:
    """N jobs of 5 ms of I/O each through one worker at concurrency C (default 100)."""
    limit, jobs = concurrency(args, REALISTIC_CONCURRENCY), job_count(args)
    ideal = limit / noop.SLEEP_S
    url = fresh_database(args)
    enqueue(url, args, jobs, noop.Sleep)
    slept = summary(drain(url, args, jobs, limit=limit))
    slept.pop("rss")
    url = fresh_database(args)
    enqueue(url, args, jobs)
    ceiling = summary(drain(url, args, jobs, limit=limit))
    rate = slept["processed_jobs_per_s"]
    allowed = min(ideal, ceiling["processed_jobs_per_s"])
    return {
        "jobs": jobs,
        "concurrency": limit,
        "sleep_ms": noop.SLEEP_S * 1000,
        **slept,
        # from the first start to the last start's end: without the poll's resolution
        "exec_jobs_per_s": r(jobs / (slept["exec_span_s"] + noop.SLEEP_S), 1),
        "ideal_jobs_per_s": ideal,
        "fraction_of_ideal": r(rate / ideal),
        "noop_jobs_per_s": ceiling["processed_jobs_per_s"],
        "noop_count_ok": ceiling["count_ok"],
        "fraction_of_allowed": r(rate / allowed),
    }


def scaleout(args: argparse.Namespace) -> dict[str, Any]:
    """The same N no-op jobs drained by each count of worker processes in turn."""
    jobs = job_count(args, SCALEOUT_JOBS)
    runs = [scaleout_run(args, jobs, int(count)) for count in args.processes.split(",")]
    return {
        "jobs": jobs,
        "jobs_per_s_by_processes": {str(run["processes"]): run["processed_jobs_per_s"] for run in runs},
        "count_ok": all(run["exactly_once"] for run in runs),
        "runs": runs,
    }


def scaleout_run(args: argparse.Namespace, jobs: int, processes: int) -> dict[str, Any]:
    """`processes` workers at concurrency C each drain N jobs, started together; every job
    must run once, on one of them."""
    url = fresh_database(args)
    enqueue(url, args, jobs)
    result = drain(url, args, jobs, "--record-ids", processes=processes, together=True)
    per_process = result.pop("per_process")
    runs = noop.Runs.union(noop.Runs.from_json(stats["runs"]) for stats in per_process)
    per_node = dict(rows(url, PER_NODE))
    shares = [count / jobs for count in per_node.values()]
    twice = len(set(runs.twice))
    not_first = scalar(url, NOT_FIRST_ATTEMPT)
    result.pop("rss")
    return {
        "processes": processes,
        **result,
        "executed_per_process": [stats["count"] for stats in per_process],
        "distinct_jobs_run": len(runs),
        "jobs_run_twice": twice,
        "rows_not_first_attempt": not_first,
        "exactly_once": result["count_ok"] and twice == 0 and len(runs) == jobs and not_first == 0,
        "completed_per_node": per_node,
        "share_min": r(min(shares)),
        "share_max": r(max(shares)),
    }
