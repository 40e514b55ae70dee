"""How to enforce a global limit in the claim: `python -m benchmarks.limits`.

Measures the claim path alone (no executor, no worker process): C clients (asyncio
tasks, a connection each) play nodes, each cycling on one transaction that acknowledges
the jobs it claimed in its previous cycle (completed) and claims up to `--demand` more,
until N jobs are done; every cycle is one round trip (a pipeline), as in the runtime.

- `plain`: FlowStone's one-statement ack+claim (no limit), for reference;
- `lock`: what FlowStone does for a globally limited queue: the queue's transaction-level
  advisory lock, the acknowledgement, then a claim that counts the executing jobs;
- `row`: the alternative, a counting row per queue: the acknowledgement lowering the
  row's count by what finished (its row lock serializes the claimers), then a claim of
  at most what the count leaves, raising it by what it claimed.

Prints jobs/s per strategy and client count (medians of `--repeat` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import psycopg

from benchmarks.noop import QUEUE, Noop, app
from benchmarks.workloads import DEFAULT_DSN, fresh_database
from flowstone.queue.config import QueueConfig
from flowstone.queue.engine import ack_plan, claim_plan, cycle_plans
from flowstone.queue.job import Job, JobState
from flowstone.queue.outcomes import Outcome
from flowstone.queue.plan import Plan, Row, arun_together

# The row strategy's claim: the candidates as in the plain claim (a constant LIMIT keeps
# its index plan), then as many of them as the count leaves.
ROOM = """FOR UPDATE SKIP LOCKED
), claimed AS (
    SELECT id FROM candidates
    LIMIT GREATEST(0, LEAST(%(limit)s, %(global_limit)s
                            - (SELECT executing FROM public.queue_slots WHERE queue = %(queue)s)))
)"""
SLOTS = "CREATE TABLE public.queue_slots (queue text PRIMARY KEY, executing integer NOT NULL)"
FILL = "INSERT INTO public.queue_slots VALUES (%s, 0)"
# The acknowledgement, then the count lowered by what it acknowledged (the row locked).
LOWER = """
WITH acked AS ({ack})
UPDATE public.queue_slots SET executing = executing - (SELECT count(*) FROM acked)
WHERE queue = %(queue)s
"""
# The claim of what the count leaves, the count raised by what it claimed.
CLAIM = """
WITH claimed AS ({claim}), raised AS (
    UPDATE public.queue_slots SET executing = executing + (SELECT count(*) FROM claimed)
    WHERE queue = %(queue)s
)
SELECT * FROM claimed
"""


def statement(plan: Plan[Any]) -> tuple[str, dict[str, Any]]:
    """The one statement of a one-statement plan, and its parameters."""
    query, params = next(plan)
    return query, dict(params)


def counting_row_plans(
    fs: Any, outcomes: list[Outcome], demand: int, limit: int, claimer: list[str]
) -> list[Plan[Any]]:
    """The `row` strategy's cycle as two one-statement plans."""
    ack, ack_params = (
        statement(ack_plan(fs.database.statements.jobs, outcomes))
        if outcomes
        else ("SELECT 1 WHERE false", {})
    )
    claim, claim_params = statement(claim_plan(fs.database.statements.jobs, QUEUE, demand, claimer))
    claim = claim.replace("claimed AS (", "candidates AS (", 1).replace("FOR UPDATE SKIP LOCKED\n)", ROOM, 1)

    def lower() -> Plan[None]:
        yield LOWER.format(ack=ack), {**ack_params, "queue": QUEUE}

    def claimed() -> Plan[list[Row]]:
        rows = yield CLAIM.format(claim=claim), {**claim_params, "global_limit": limit}
        return rows

    return [lower(), claimed()]


async def client(strategy: str, url: str, node: str, args: argparse.Namespace, remaining: list[int]) -> None:
    """Cycle until every job was claimed and this client's last ones acknowledged."""
    fs = app(url)
    limited = QueueConfig(limit=args.demand, global_limit=None if strategy == "plain" else args.global_limit)
    claimer = [node, "1"]
    async with await fs.aconnect(autocommit=True) as conn:
        claimed: list[Any] = []
        while True:
            outcomes = [Outcome(_job(row), JobState.COMPLETED) for row in claimed]
            if strategy == "row":
                plans = counting_row_plans(fs, outcomes, args.demand, args.global_limit, claimer)
            else:
                plans = cycle_plans(
                    fs.database.statements.jobs, outcomes, QUEUE, args.demand, claimer, limited
                )
            claimed = (await arun_together(conn, plans))[-1]
            remaining[0] -= len(claimed)
            if remaining[0] <= 0 and not claimed:
                return


def _job(row: Any) -> Job:
    return row if isinstance(row, Job) else Job.from_row(row)


def measure(strategy: str, clients: int, args: argparse.Namespace) -> float:
    """Jobs/s of `clients` clients draining a fresh table with `strategy`."""
    url = fresh_database(args)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SLOTS)
        conn.execute(FILL, (QUEUE,))
        fs = app(url)
        fs.insert_all([Noop.new({"i": i}) for i in range(args.jobs)])
        fs.close()
        conn.execute("VACUUM ANALYZE flowstone.jobs")

    async def drain() -> float:
        remaining = [args.jobs]  # one event loop: no lock needed
        began = time.perf_counter()
        await asyncio.gather(*(client(strategy, url, f"c{n}", args, remaining) for n in range(clients)))
        return args.jobs / (time.perf_counter() - began)

    return asyncio.run(drain())


def main() -> None:
    """Parse the options, print each strategy's rate per client count."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--db", default="bench_flowstone_limits")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--demand", type=int, default=50, help="jobs one client claims per cycle at most")
    parser.add_argument("--global-limit", type=int, default=50)
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for clients in map(int, args.clients.split(",")):
        for strategy in ("plain", "lock", "row"):
            rates = [measure(strategy, clients, args) for _ in range(args.repeat)]
            shown = ", ".join(f"{rate:,.0f}" for rate in rates)
            print(
                f"{strategy:5} clients={clients}: median {statistics.median(rates):,.0f} jobs/s ({shown})",
                flush=True,
            )


if __name__ == "__main__":
    main()
