"""The periodic statements under a pinned snapshot: EXPLAIN (ANALYZE, BUFFERS) of the
stager's, the pruner's and the lifeline's orphan search, from the head of their indexes
(a full pass) and from their cursors, on a database of their own.

The history of a pin of `--pin-minutes` at a steady rate, in a few statements: `--jobs`
jobs scheduled evenly over the pin (5 in 19 through `scheduled`, the rest inserted
available), and while a REPEATABLE READ snapshot is held on another connection
(so no entry of their earlier versions can leave the indexes): staged, claimed by a live
node, completed, and the oldest four fifths pruned (`--prune-max-age` is set from that).
Five jobs of a dead node are executing. Each statement runs three times in a transaction
rolled back, with its parameters (a custom plan) and prepared (`plan_cache_mode =
force_generic_plan`, as psycopg's prepared statements may run it); the result has the
medians.
"""

from __future__ import annotations

import argparse
import re
import statistics
from datetime import datetime, timedelta
from typing import Any

import psycopg

from benchmarks.workloads import fresh_database
from flowstone.queue.queries.jobs import JobQueries

PRUNED_SHARE = 150 / 190  # and 50 in 190 (5 in 19) go through `scheduled`
LIVE = ["bench/live", "bench/*"]
MARGIN = 60.0  # the cursors' margin at the default statement_timeout (not imported: main has none)

HISTORY = """
INSERT INTO flowstone.jobs (state, queue, worker, args, scheduled_at)
SELECT CASE WHEN n %% 19 < 5 THEN 'scheduled' ELSE 'available' END::flowstone.job_state, 'q', 'w', '{}',
       now() - make_interval(secs => %(span)s * (1 - n::float8 / %(jobs)s))
FROM generate_series(1, %(jobs)s) AS n
"""
ORPHANS = """
INSERT INTO flowstone.jobs (state, queue, worker, args, attempt, attempted_at, attempted_by)
SELECT 'executing', 'q', 'w', '{}', 1, now() - interval '1 hour', ARRAY['gone', 'old']
FROM generate_series(1, 5)
"""
PINNED = (
    "UPDATE flowstone.jobs SET state = 'available' WHERE state = 'scheduled'",
    "UPDATE flowstone.jobs SET state = 'executing', attempt = 1, attempted_at = scheduled_at,"
    " attempted_by = ARRAY['bench', 'live'] WHERE state = 'available'",
    "UPDATE flowstone.jobs SET state = 'completed', completed_at = attempted_at"
    " WHERE state = 'executing' AND attempted_by[1] = 'bench'",
    "DELETE FROM flowstone.jobs WHERE state = 'completed'"
    " AND completed_at < now() - make_interval(secs => %(max_age)s)",
)


def mvcc_leader(args: argparse.Namespace) -> dict[str, Any]:
    """Build the pinned history, then EXPLAIN each statement from the head and its cursor."""
    jobs = args.jobs or 190_000
    span = args.pin_minutes * 60
    max_age = span * (1 - PRUNED_SHARE)
    url = fresh_database(args)
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as pin:
        conn.execute(HISTORY, {"jobs": jobs, "span": span})
        conn.execute(ORPHANS)
        pin.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        pin.execute("SELECT count(*) FROM flowstone.jobs WHERE id < 0")  # takes the snapshot
        for statement in PINNED:
            conn.execute(statement, {"max_age": max_age})
        conn.execute("ANALYZE flowstone.jobs")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        [now] = conn.execute("SELECT now()").fetchone() or [None]
        return {"jobs": jobs, "pin_s": span, "prune_max_age_s": max_age, **_explained(conn, now, max_age)}


def _explained(conn: psycopg.Connection[Any], now: datetime, max_age: float) -> dict[str, Any]:
    """Each statement's median time and buffers, full and from its cursor (one tick after
    a pass that caught up: the stager 1 s, the pruner 30 s)."""
    queries = JobQueries.for_schema("flowstone")
    margin = timedelta(seconds=MARGIN)
    stage = {"until": None, "queue": None, "limit": 5000}
    prune = {"max_age": max_age, "limit": 10_000}
    cases = {
        "stager_full": (queries.stage, {**stage, "after": None}),
        "stager_cursor": (queries.stage, {**stage, "after": now - timedelta(seconds=1) - margin}),
        "pruner_full": (queries.prune, {**prune, "after": None}),
        "pruner_cursor": (
            queries.prune,
            {**prune, "after": now - timedelta(seconds=30 + max_age) - margin},
        ),
        "lifeline": (queries.orphans, {"alive": LIVE, "grace": 10.0, "limit": 5000}),
    }
    return {
        f"{name}_{plan}": _median(conn, statement, params, plan == "generic")
        for name, (statement, params) in cases.items()
        for plan in ("custom", "generic")
    }


def _median(
    conn: psycopg.Connection[Any], statement: str, params: dict[str, Any], generic: bool
) -> dict[str, Any]:
    runs = [_explain(conn, statement, params, generic) for _ in range(3)]
    return {
        "ms": statistics.median(ms for ms, _, _ in runs),
        "buffers": statistics.median(buffers for _, buffers, _ in runs),
        "index_conds": runs[0][2],
    }


def _explain(
    conn: psycopg.Connection[Any], statement: str, params: dict[str, Any], generic: bool
) -> tuple[float, int, list[str]]:
    """(execution ms, shared buffers hit + read, the plan's Index Conds) of one run, undone."""
    with conn.transaction(force_rollback=True):
        if generic:
            names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
            numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", statement)
            conn.execute(f"PREPARE measured AS {numbered}")
            explained = f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE measured({', '.join(['%s'] * len(names))})"
            cursor = psycopg.ClientCursor(conn).execute(explained, [params[name] for name in names])
        else:
            cursor = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        lines = [row[0] for row in cursor]
        conn.execute("DEALLOCATE ALL")
    text = "\n".join(lines)
    ms = float(re.findall(r"Execution Time: ([\d.]+) ms", text)[0])
    top = next(line for line in lines if "Buffers:" in line)
    buffers = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", top))
    return ms, buffers, sorted({cond.strip() for cond in re.findall(r"Index Cond: (.*)", text)})
