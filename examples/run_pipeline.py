"""FlowStone's main demo: materialize the orders pipeline through a real worker process.

    python examples/run_pipeline.py

1. migrates the database (FLOWSTONE_DATABASE_URL, or the embedded PostgreSQL in a per-user directory),
2. starts `flowstone worker --app pipeline:app --queues assets=4` as a separate process,
3. queues every day's `daily_revenue` with its upstream closure (materialize_all),
4. waits for the materializations, prints them with their lineage and the SQL to look
   at them yourself, and stops the worker with SIGTERM (a graceful shutdown).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "orders"))

import pipeline  # noqa: E402

from flowstone import MaterializationRecords, materialize_all  # noqa: E402
from flowstone.assets import Materialization  # noqa: E402
from flowstone.insights import Insights  # noqa: E402

DEADLINE = 120


def start_worker(url: str) -> subprocess.Popen[str]:
    """A real `flowstone worker` process on the same database; returns once it runs."""
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": url, "PYTHONPATH": str(HERE / "orders")}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowstone.cli",
            "worker",
            "--app",
            "pipeline:app",
            "--queues",
            "assets=4",
            "--log-format",
            "json",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = threading.Event()

    def follow() -> None:
        assert worker.stderr is not None
        for line in worker.stderr:
            if "node started" in line:
                started.set()
            elif '"level": "warning"' in line or '"level": "error"' in line:
                sys.stderr.write(f"  worker: {line}")

    threading.Thread(target=follow, daemon=True).start()
    if not started.wait(DEADLINE):
        worker.kill()
        raise SystemExit(f"the worker did not start (exit code {worker.poll()})")
    return worker


def wait_for_jobs(job_ids: list[int]) -> None:
    """Until every job has finished (completed, discarded or cancelled)."""
    deadline = time.monotonic() + DEADLINE
    pending = set(job_ids)
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for jobs {sorted(pending)}")
        pending = {
            i
            for i in pending
            if (job := pipeline.app.get_job(i))
            and job.state.value not in ("completed", "discarded", "cancelled")
        }
        time.sleep(0.1)  # a demo's progress check; the worker itself is woken by NOTIFY


def report(url: str, schema: str) -> None:
    """What was materialized, its lineage, and how to look at it with SQL."""
    store = MaterializationRecords(pipeline.app)
    print(f"\n{'asset':<16}{'partition':<12}{'status':<9}{'ms':>6}  result")
    for day in pipeline.DAYS.keys(pipeline.DAYS.start, pipeline.DAYS.end or pipeline.DAYS.start):
        for name in ("raw_orders", "cleaned_orders", "daily_revenue"):
            record = store.get(name, day)
            assert record is not None, f"{name} {day} was not materialized"
            value = {"raw_orders": "rows read", "cleaned_orders": "cleaned", "daily_revenue": ""}[name]
            shown = record.metadata if name != "daily_revenue" else _revenue(day.isoformat())
            millis = record.duration.total_seconds() * 1000 if record.duration else 0
            line = f"{name:<16}{day.isoformat():<12}{record.status.value:<9}{millis:>6.1f}  {value} {shown}"
            print(line.rstrip())
    last = store.get("daily_revenue", pipeline.DAYS.end)
    assert last is not None
    chain = " ← ".join(f"{m.asset}#{m.id}" for m in [last, *_upstream(Insights(pipeline.app), last.id)])
    print(f"\nlineage of daily_revenue {pipeline.DAYS.end}: {chain}")
    print(f'\nLook at it yourself (psql "{url}"):')
    for query in (  # shown to the reader, not run here
        f"SELECT state, count(*) FROM {schema}.jobs GROUP BY 1;",  # noqa: S608
        f"SELECT asset, partition, status, duration FROM {schema}.latest_materializations ORDER BY 2, 1;",  # noqa: S608
        "SELECT partition, value FROM flowstone_assets.daily_revenue ORDER BY 1;",
    ):
        print(f"  {query}")


def _revenue(day: str) -> str:
    with pipeline.app.connection() as conn:
        row = conn.execute("SELECT value FROM flowstone_assets.daily_revenue WHERE partition = %s", (day,))
        value = row.fetchone()
    return "" if value is None else str(value[0])


def _upstream(insights: Insights, record_id: int) -> list[Materialization]:
    """The first record each record read, down the chain from `record_id`."""
    chain: list[Materialization] = []
    lineage = insights.record(record_id)
    while lineage is not None and lineage.upstream:
        chain.append(lineage.upstream[0])
        lineage = insights.record(lineage.upstream[0].id)
    return chain


def main() -> None:
    """Run the demo end to end."""
    app = pipeline.app
    print(f"database: {app.database_url}")
    app.migrate()
    worker = start_worker(app.database_url)
    try:
        days = pipeline.DAYS.keys(pipeline.DAYS.start, pipeline.DAYS.end or pipeline.DAYS.start)
        began = time.perf_counter()
        job_ids: list[int] = []
        for day in days:
            run = materialize_all("daily_revenue", partition=day, force=True, fs=app)
            job_ids += run.job_ids
        print(
            f"queued {len(job_ids)} materializations ({len(days)} days x raw_orders → cleaned_orders → "
            "daily_revenue) for the worker process"
        )
        wait_for_jobs(job_ids)
        print(f"all materialized in {time.perf_counter() - began:.2f} s")
        report(app.database_url, app.schema)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
        print(f"\nworker stopped gracefully (exit code {code})")
        app.close()


if __name__ == "__main__":
    main()
