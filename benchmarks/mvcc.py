"""Failure by MVCC: a steady load while another connection pins the xmin horizon.

The soak's load (one worker at concurrency C drains what the driver inserts, at a fixed
`--insert-rate` here, with the pruner at `--prune-max-age`) on a server of its own with
autovacuum on, in three phases: `--baseline-minutes` unpinned, `--pin-minutes` with a
REPEATABLE READ snapshot held open on another connection (so no dead row of the jobs
table can be vacuumed: every claimed job's entry stays in the claim index), and
`--release-minutes` after it is released. Every `--sample-every` seconds a JSON line:
pickup p50/p99, jobs/s, dead tuples, table and index sizes (the soak's sample, with its
phase), and with `--statements` the statements that took the server's time in the window
(pg_stat_statements). The result compares each phase with the baseline: a queue that does not care
keeps its p99 within 1.5 times and its throughput through the pin, and stops growing after.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
import psycopg

from benchmarks import noop
from benchmarks.server import temporary_server
from benchmarks.soak import SETTINGS, SHOW, STATES, Load, log, stretch
from benchmarks.workloads import concurrency, fresh_database, r, rows

PHASES = ("baseline", "pinned", "released")
# The statements that took the most server time since the last sample, then a reset.
STATEMENTS = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 100), calls,
       round(total_exec_time::numeric, 1), round(max_exec_time::numeric, 1)
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC LIMIT 6
"""


def mvcc(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, run the three phases, summarize the samples per phase."""
    out = args.samples_out or time.strftime("/tmp/flowstone-mvcc-%Y%m%d-%H%M%S.jsonl")
    minutes = args.baseline_minutes + args.pin_minutes + args.release_minutes
    with temporary_server("pg_stat_statements" if args.statements else "") as dsn:
        local = argparse.Namespace(**{**vars(args), "dsn": dsn, "minutes": minutes})
        server = dict(rows(dsn, SHOW, (list(SETTINGS),)))
        log(f"inserting {args.insert_rate:.0f} jobs/s; pinned after {args.baseline_minutes} min")
        load = PinnedLoad(fresh_database(local), local, args.insert_rate, out)
        load.run()
        census = dict(rows(load.url, STATES))
    return {
        "rate": args.insert_rate,
        "concurrency": concurrency(args),
        "baseline_minutes": args.baseline_minutes,
        "pin_minutes": args.pin_minutes,
        "release_minutes": args.release_minutes,
        "prune_max_age_s": args.prune_max_age,
        "server": server,
        "samples_out": out,
        **load.phases(),
        "states_at_end": census,
    }


class PinnedLoad(Load):
    """The soak's load, with a snapshot pinned through the middle phase."""

    def __init__(self, url: str, args: argparse.Namespace, rate: float, out: str) -> None:
        super().__init__(url, args, rate, out)
        if args.statements:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.phase = PHASES[0]
        self.lat_by_sample: list[list[float]] = []

    async def _load(self, began: float, previous: dict[str, Any]) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._pin, began)
            await super()._load(began, previous)

    async def _pin(self, began: float) -> None:
        """Hold a REPEATABLE READ snapshot from the end of the baseline for the pin."""
        await anyio.sleep(max(0.0, began + self.args.baseline_minutes * 60 - time.monotonic()))
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await conn.execute("SELECT count(*) FROM flowstone.jobs WHERE id < 0")  # takes the snapshot
            self.phase = PHASES[1]
            log("snapshot pinned")
            await anyio.sleep(self.args.pin_minutes * 60)
            await conn.rollback()
        self.phase = PHASES[2]
        log("snapshot released")

    def _sample(self, began: float, previous: dict[str, Any]) -> dict[str, Any]:
        phase = self.phase  # the phase the window ends in
        now = super()._sample(began, previous)
        self.samples[-1]["phase"] = phase
        if self.args.statements:
            self.samples[-1]["statements"] = [
                {"query": query, "calls": calls, "total_ms": float(total), "max_ms": float(most)}
                for query, calls, total, most in rows(self.url, STATEMENTS)
            ]
            rows(self.url, "SELECT pg_stat_statements_reset()")
        self.lat_by_sample.append(now["lat_ms"])
        return now

    def phases(self) -> dict[str, Any]:
        """Per phase: pooled figures, and the worst sample against the baseline."""
        result: dict[str, Any] = {"samples": len(self.samples), "inserted": self.inserted}
        figures = {}
        for phase in PHASES:
            picked = [i for i, sample in enumerate(self.samples) if sample["phase"] == phase]
            if not picked:
                continue
            samples = [self.samples[i] for i in picked]
            figures[phase] = {
                **stretch(samples, [self.lat_by_sample[i] for i in picked]),
                "p99_ms_max_sample": max(sample["p99_ms"] or 0 for sample in samples),
                "dead_rows_max": max(sample["dead_rows"] for sample in samples),
                "total_mb_last": samples[-1]["total_mb"],
                "pending_max": max(sample["pending"] for sample in samples),
            }
        result.update(figures)
        base = figures.get("baseline")
        pinned = figures.get("pinned")
        if base and pinned and base["p99_ms"]:
            result["pinned_p99_ratio"] = r(pinned["p99_ms"] / base["p99_ms"])
            result["pinned_worst_sample_p99_ratio"] = r(pinned["p99_ms_max_sample"] / base["p99_ms"])
            result["pinned_throughput_ratio"] = r(pinned["jobs_per_s"] / base["jobs_per_s"])
        runs = noop.Runs.from_json(self.stats["runs"])
        result["drained"] = self.drained
        # every job once, by ids: the jobs run are the jobs inserted, none twice
        result["count_ok"] = self.drained and runs.number() == self.inserted_ids.number() and not runs.twice
        return result
