"""Run FlowStone's benchmarks: `python -m benchmarks [workload …] [--jobs N] [--append FILE]`.

Workloads mirror the side-by-side peer harness that docs/benchmarks.md describes (same
N, concurrency, batch, polling and counting), so their numbers sit beside the peers':
enqueue+drain (`throughput`), `latency`,
`backlog` (drain with 1,000,000 rows already in the table), `memory` (worker RSS after
10k and 200k jobs), `pgbouncer` (throughput through a PgBouncer in transaction mode, beside
direct), and the asset workloads `assets` (backfill) and `chain`. Beyond the harness:
`realistic` (jobs of 5 ms of I/O at concurrency 100), `scaleout` (1, 2 and 4 worker
processes), `soak` (a steady load for `--minutes` on a server of its own with
autovacuum on) and `mvcc` (the soak's load at `--insert-rate` while a snapshot is
pinned for `--pin-minutes`, between an unpinned baseline and a release), `mvcc-leader`
(EXPLAIN of the stager's, pruner's and lifeline's statements after such a pin).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

import psycopg

import flowstone
from benchmarks import mvcc, mvcc_leader, scaling, soak, workloads

WORKLOADS = {
    "throughput": workloads.throughput,
    "latency": workloads.latency,
    "backlog": workloads.backlog,
    "memory": workloads.memory,
    "pgbouncer": workloads.pgbouncer,
    "assets": workloads.assets_backfill,
    "chain": workloads.asset_chain,
    "realistic": scaling.realistic,
    "scaleout": scaling.scaleout,
    "soak": soak.soak,
    "mvcc": mvcc.mvcc,
    "mvcc-leader": mvcc_leader.mvcc_leader,
}


def main() -> None:
    """Parse arguments, run each workload, print JSON lines and a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workloads", nargs="*", default=["throughput", "latency"], choices=list(WORKLOADS))
    parser.add_argument("--dsn", default=workloads.DEFAULT_DSN, help="server (its database runs DROP/CREATE)")
    parser.add_argument("--db", default="bench_flowstone")
    parser.add_argument("--jobs", type=int, help="N (default 20,000; scaleout: 50,000)")
    parser.add_argument("--concurrency", type=int, help="per worker (default 10; realistic: 100)")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--latency-jobs", type=int, default=500)
    parser.add_argument("--latency-rate", type=float, default=50.0)
    parser.add_argument("--partitions", type=int, default=10_000, help="days in the asset backfill")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--queue-options",
        default="{}",
        help="JSON of the queue's cluster-wide options, e.g. '{\"global_limit\": 50}' (default none)",
    )
    parser.add_argument("--processes", default="1,2,4", help="scaleout: worker process counts")
    parser.add_argument("--minutes", type=float, default=30.0, help="soak: how long it runs")
    parser.add_argument("--rate", type=float, help="soak: max rate (jobs/s); it inserts at half")
    parser.add_argument("--prune-max-age", type=float, default=60.0, help="soak: the pruner's horizon (s)")
    parser.add_argument(
        "--sample-every", type=float, default=30.0, help="soak, mvcc: seconds between samples"
    )
    parser.add_argument(
        "--samples-out", help="soak: the samples' JSON lines (default /tmp/flowstone-soak-*.jsonl)"
    )
    parser.add_argument("--insert-rate", type=float, default=1000.0, help="mvcc: jobs/s inserted")
    parser.add_argument("--baseline-minutes", type=float, default=2.0, help="mvcc: unpinned, before the pin")
    parser.add_argument("--pin-minutes", type=float, default=30.0, help="mvcc: how long the snapshot is held")
    parser.add_argument("--release-minutes", type=float, default=2.0, help="mvcc: after the pin is released")
    parser.add_argument(
        "--statements", action="store_true", help="mvcc: sample pg_stat_statements in each window"
    )
    parser.add_argument("--append", help="also append each JSON line to this file")
    args = parser.parse_args()
    rows = []
    for name in args.workloads:
        result: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "peer": "flowstone",
            "version": flowstone.__version__,
            "workload": name,
            "concurrency": workloads.concurrency(args),
            "python": platform.python_version(),
            "loop": args.loop,
            "rate": args.latency_rate,
            "settings": {"driver": f"psycopg {psycopg.__version__}", "queue": json.loads(args.queue_options)},
            **WORKLOADS[name](args),
        }
        workloads.emit(result, args.append)
        rows.append(result)
    print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    """The headline figures of each run."""
    keys = [
        "workload",
        "enqueue_jobs_per_s",
        "processed_jobs_per_s",
        "direct_processed_jobs_per_s",
        "p50_ms",
        "p99_ms",
        "materializations_per_s",
        "chain_ms",
        "rss_ratio",
        "fraction_of_ideal",
        "pinned_p99_ratio",
        "jobs_per_s_by_processes",
        "count_ok",
    ]
    print("| " + " | ".join(keys) + " |", file=sys.stderr)
    print("|" + "---|" * len(keys), file=sys.stderr)
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |", file=sys.stderr)


if __name__ == "__main__":
    main()
