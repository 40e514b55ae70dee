"""How fast the dashboard renders on a big table: `python -m benchmarks.dashboard`.

Fills a fresh database with `--jobs` jobs (default 1,000,000: mostly completed, some
discarded, cancelled, available, scheduled, retryable and executing, over five queues
and thirteen workers) and `--records` materialization records (four daily assets), then
renders every page, its JSON twin and /metrics in process (ASGI, no network), each
`--repeat` times after two warm-ups, and prints the milliseconds per request: median,
p95 and max. Results: a dated file in docs/results/, the latest in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import anyio
import httpx
import psycopg

from benchmarks.workloads import DEFAULT_DSN, fresh_database, pct
from flowstone import AssetRegistry, DailyPartitions, FlowStone, asset
from flowstone.web import create_app

QUEUES = ["default", "mailers", "assets", "reports", "webhooks"]
ASSETS = ["orders", "cleaned", "revenue", "forecast"]
DAYS = DailyPartitions("2023-01-01")

# One statement: states by i % 1000 (90 % completed, 3 % discarded, 1 % cancelled, 4 %
# available, 1 % scheduled, 0.9 % retryable, 0.1 % executing), queues by another hash.
FILL_JOBS = """
INSERT INTO flowstone.jobs (state, queue, worker, args, tags, errors, attempt, max_attempts,
    inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by)
SELECT s.state::flowstone.job_state, s.queue, 'app.Worker' || (s.i %% 13),
    jsonb_build_object('n', s.i, 'to', 'user' || s.i || '@example.com'),
    CASE WHEN s.i %% 10 = 0 THEN ARRAY['billing'] ELSE '{}' END,
    CASE WHEN s.state IN ('discarded', 'retryable') THEN jsonb_build_array(jsonb_build_object(
        'attempt', 1, 'at', s.t, 'error', 'RuntimeError: boom',
        'traceback', 'Traceback (most recent call last): ...')) ELSE '[]' END,
    CASE WHEN s.state IN ('available', 'scheduled') THEN 0 ELSE 1 END, 3,
    s.t,
    CASE WHEN s.state = 'scheduled' THEN now() + interval '1 hour' ELSE s.t END,
    CASE WHEN s.state IN ('available', 'scheduled') THEN NULL ELSE s.t END,
    CASE WHEN s.state = 'completed' THEN s.t END,
    CASE WHEN s.state = 'discarded' THEN s.t END,
    CASE WHEN s.state = 'cancelled' THEN s.t END,
    CASE WHEN s.state IN ('available', 'scheduled') THEN NULL ELSE ARRAY['node-' || (s.i %% 3)] END
FROM (
    SELECT i, now() - make_interval(secs => (%(jobs)s - i) * 0.05) AS t,
        (%(queues)s::text[])[1 + (i::bigint * 7919 %% 5)] AS queue,
        CASE WHEN i %% 1000 < 900 THEN 'completed' WHEN i %% 1000 < 930 THEN 'discarded'
             WHEN i %% 1000 < 940 THEN 'cancelled' WHEN i %% 1000 < 980 THEN 'available'
             WHEN i %% 1000 < 990 THEN 'scheduled' WHEN i %% 1000 < 999 THEN 'retryable'
             ELSE 'executing' END AS state
    FROM generate_series(1, %(jobs)s) AS i
) AS s
"""

# Records: each asset x day materialized `runs` times (the last one failed on every 17th).
FILL_RECORDS = """
INSERT INTO flowstone.materializations (asset, partition, run_id, status, started_at, finished_at, attempt)
SELECT a, (date '2023-01-01' + d)::text, 'run-' || r,
    (CASE WHEN r = %(runs)s AND d %% 17 = 0 THEN 'failed' ELSE 'success' END)
        ::flowstone.materialization_status,
    now() - make_interval(days => %(days)s - d, mins => %(runs)s - r),
    now() - make_interval(days => %(days)s - d, mins => %(runs)s - r) + interval '2 seconds', 1
FROM unnest(%(assets)s::text[]) AS a, generate_series(0, %(days)s - 1) AS d, generate_series(1, %(runs)s) AS r
"""

HEARTBEATS = """
INSERT INTO flowstone.nodes (name, queues)
SELECT 'node-' || n, jsonb_build_object('default', '{"limit": 10, "paused": false, "running": 7}'::jsonb,
                                        'assets', '{"limit": 5, "paused": false, "running": 2}'::jsonb)
FROM generate_series(0, 2) AS n
"""


def fill(url: str, jobs: int, records: int) -> dict[str, float]:
    """Fill the tables; seconds each step took."""
    days = 730
    runs = max(1, records // (len(ASSETS) * days))
    took = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, statement, params in (
            ("jobs", FILL_JOBS, {"jobs": jobs, "queues": QUEUES}),
            ("records", FILL_RECORDS, {"assets": ASSETS, "days": days, "runs": runs}),
            ("nodes", HEARTBEATS, {}),
        ):
            started = time.perf_counter()
            conn.execute(statement, params)  # type: ignore[arg-type]
            took[f"fill_{name}_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE flowstone.jobs")
        conn.execute("VACUUM ANALYZE flowstone.materializations")
        took["vacuum_analyze_s"] = round(time.perf_counter() - started, 1)
    return took


def graph() -> AssetRegistry:
    """The four assets of the records, a chain."""
    registry = AssetRegistry()
    previous: list[str] = []
    for name in ASSETS:
        asset(name=name, depends_on=previous, partitions=DAYS, registry=registry)(lambda ctx, deps: None)
        previous = [name]
    return registry


def paths(url: str) -> list[str]:
    """Every page (and its JSON twin), with filters that use an index and some that cannot."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT max(id), min(id) FROM flowstone.jobs WHERE state = 'discarded'").fetchone()
    assert row is not None
    newest_discarded, _ = row
    return [
        "/queues",
        "/api/queues",
        "/jobs",
        "/api/jobs",
        "/jobs?state=discarded",
        "/jobs?state=executing",
        "/jobs?queue=mailers&state=completed",
        "/jobs?worker=app.Worker3",
        "/jobs?tag=billing",
        "/jobs?args=n%3D5",
        "/jobs?worker=no.such.Worker",
        "/jobs?before=500000",
        f"/jobs/{newest_discarded}",
        f"/api/jobs/{newest_discarded}",
        "/cron",
        "/assets",
        "/api/assets",
        "/assets/revenue?start=2024-11-01&end=2024-12-30",
        "/assets/revenue?start=2024-01-01&end=2024-12-30",
        "/api/assets/revenue/partitions?start=2024-01-01&end=2024-12-30",
        "/assets/revenue/history?partition=2024-06-01",
        "/runs/run-1",
        "/metrics",
    ]


async def measure(app: Any, targets: list[str], repeat: int) -> list[dict[str, Any]]:
    """Milliseconds per request of each path (after two warm-ups)."""
    results = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        for path in targets:
            times = []
            for attempt in range(repeat + 2):
                started = time.perf_counter()
                response = await client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
                if attempt >= 2:
                    times.append(elapsed)
            results.append(
                {
                    "path": path,
                    "median_ms": round(statistics.median(times), 1),
                    "p95_ms": round(pct(times, 95) or 0, 1),
                    "max_ms": round(max(times), 1),
                    "bytes": len(response.content),
                }
            )
    return results


def full_scan_ms(url: str) -> float:
    """What the per-state counts cost through the queue_stats view (a full scan), for comparison."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT * FROM flowstone.queue_stats").fetchall()
        started = time.perf_counter()
        conn.execute("SELECT * FROM flowstone.queue_stats").fetchall()
        return round((time.perf_counter() - started) * 1000, 1)


def main() -> None:
    """Fill, render, report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="server (its database runs DROP/CREATE)")
    parser.add_argument("--db", default="bench_dashboard")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    url = fresh_database(args)
    setup = fill(url, args.jobs, args.records)
    fs = FlowStone(url, assets=graph())
    try:
        results = anyio.run(measure, create_app(fs), paths(url), args.repeat)
    finally:
        fs.close()
    summary = {
        "jobs": args.jobs,
        "records": args.records,
        **setup,
        "queue_stats_full_scan_ms": full_scan_ms(url),
    }
    print(json.dumps(summary))
    print("| path | median ms | p95 ms | max ms |")
    print("|---|---|---|---|")
    for row in results:
        print(f"| `{row['path']}` | {row['median_ms']} | {row['p95_ms']} | {row['max_ms']} |")
    slowest = max(results, key=lambda row: row["max_ms"])
    print(f"slowest: {slowest['path']} at {slowest['max_ms']} ms (max of {args.repeat})")


if __name__ == "__main__":
    main()
