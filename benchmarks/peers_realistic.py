"""The `realistic` workload for the peers of ../shared/bench, measured as FlowStone's is.

`python -m benchmarks.peers_realistic [--peers oban,pgqueuer-asyncpg,...]` (in the peers'
virtualenv): for each peer, N no-op jobs bulk-enqueued through its adapter, then one
worker at concurrency 100 drains them while the driver polls the adapter's remaining
count every 0.2 s — the harness's throughput method — except that each task, after
counting itself, waits 5 ms (`asyncio.sleep`). The harness has no such workload and its
adapters take no job body, so the worker here imports an adapter unchanged and wraps its
task before the harness's own worker role (`run.py`'s `worker_main`) starts it: oban's
`NoopWorker.process`, procrastinate's task function, the function pgqueuer registers as
its entrypoint, chancy's `noop` (which chancy looks up by name when it runs a job), and
the FlowStone adapter's `perform`. One JSON line per peer, as the harness prints.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.workloads import DEFAULT_DSN, ROOT, WorkerProcess, emit, r, scalar, wait_drained

BENCH = Path(os.environ.get("PEERBENCH_DIR", ROOT.parent / "shared" / "bench"))
PEERS = "oban,procrastinate,pgqueuer,pgqueuer-asyncpg,chancy,flowstone"
SLEEP_S = 0.005
CONCURRENCY = 100
TIMEOUT_S = 300.0  # the harness's drain timeout

WRAPPED = {
    "oban": "NoopWorker.process",
    "procrastinate": "noop.func, the task's function",
    "pgqueuer": "the function PgQueuer.entrypoint registers",
    "chancy": "peer_chancy.noop, looked up by name per job",
    "flowstone": "NoopWorker.perform",
}

AsyncFunction = Callable[..., Awaitable[Any]]


def harness(name: str) -> ModuleType:
    """A module of the peer harness (`run`, `common`, `peer_*`), imported from its directory."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def sleeping(task: AsyncFunction) -> AsyncFunction:
    """`task`, then 5 ms of (simulated) I/O."""

    @functools.wraps(task)
    async def run(*args: Any, **kwargs: Any) -> Any:
        result = await task(*args, **kwargs)
        await asyncio.sleep(SLEEP_S)
        return result

    return run


def patch(peer: str, adapter: Any) -> None:
    """Wrap the adapter's task in `sleeping` (where: `WRAPPED`)."""
    if peer == "oban":
        adapter.NoopWorker.process = sleeping(adapter.NoopWorker.process)
    elif peer == "procrastinate":
        adapter.noop.func = sleeping(adapter.noop.func)
    elif peer == "chancy":
        adapter.noop = sleeping(adapter.noop)
    elif peer == "flowstone":
        adapter.NoopWorker.perform = sleeping(adapter.NoopWorker.perform)
    else:  # pgqueuer, pgqueuer-asyncpg: the entrypoint is registered inside run_worker
        adapter.PgQueuer = sleeping_entrypoints(adapter.PgQueuer)


def sleeping_entrypoints(queue_class: type) -> type:
    """A PgQueuer whose `entrypoint` decorator registers the function wrapped."""

    class Sleeping(queue_class):  # type: ignore[misc]
        def entrypoint(self, name: str, **options: Any) -> Callable[[AsyncFunction], AsyncFunction]:
            register = super().entrypoint(name, **options)
            return lambda task: register(sleeping(task))

    return Sleeping


def worker(args: argparse.Namespace) -> None:
    """The worker role: the adapter patched, then the harness's own worker main."""
    run = harness("run")
    patch(args.peer, run.load_peer(args.peer))
    run.worker_main(
        argparse.Namespace(
            peer=args.peer,
            dsn=args.dsn,
            db=args.db,
            concurrency=args.concurrency,
            workload="throughput",  # chancy: eager polling, as for the harness's backlog drain
            loop=args.loop,
            stats_out=args.stats_out,
        )
    )


def measure(args: argparse.Namespace, peer: str) -> dict[str, Any]:
    """Enqueue N jobs through the adapter, drain them with one patched worker."""
    run, common = harness("run"), harness("common")
    adapter = run.load_peer(peer)
    db = "peerbench_" + peer.replace("-", "_") + "_realistic"
    dsn = common.dsn_for(db, args.dsn)
    enqueue_s = asyncio.run(prepare(args, adapter, db, dsn))
    scalar(dsn, "CHECKPOINT")
    command = [sys.executable, "-m", "benchmarks.peers_realistic", "--role", "worker", "--peer", peer]
    options = ["--db", db, "--concurrency", str(args.concurrency), "--loop", args.loop]
    process = WorkerProcess([*command, *options], env={**os.environ, "PEERBENCH_DSN": args.dsn})
    try:
        done, _ = wait_drained(dsn, [process], adapter.REMAINING_SQL, TIMEOUT_S)
    finally:
        stats = process.stop()
    drain_s, span = done - stats["first"], stats["last"] - stats["first"]
    ideal = args.concurrency / SLEEP_S
    return {
        "version": adapter.VERSION,
        "enqueue_jobs_per_s": r(args.jobs / enqueue_s, 1),
        "processed_jobs_per_s": r(args.jobs / drain_s, 1),
        "drain_s": r(drain_s),
        "exec_span_s": r(span),
        "exec_jobs_per_s": r(args.jobs / (span + SLEEP_S), 1),
        "ideal_jobs_per_s": ideal,
        "fraction_of_ideal": r(args.jobs / drain_s / ideal),
        "executed_count": stats["count"],
        "count_ok": stats["count"] == args.jobs,
        "db_succeeded": scalar(dsn, adapter.SUCCEEDED_SQL),
        "worker_cpu_s": r(stats["cpu_user_s"] + stats["cpu_sys_s"], 2),
        "shutdown_s": r(stats.get("shutdown_s")),
        "returncode": stats["returncode"],
        "wrapped": WRAPPED.get(peer, WRAPPED["pgqueuer"]),
        "settings": adapter.settings("throughput", args.concurrency, args.batch),
    }


async def prepare(args: argparse.Namespace, adapter: Any, db: str, dsn: str) -> float:
    """Fresh database and schema, then N jobs in bulk calls; return the calls' seconds."""
    await harness("run").recreate_db(args, db)
    await adapter.install(dsn)
    async with adapter.client(dsn) as client:
        began = time.perf_counter()
        for start in range(0, args.jobs, args.batch):
            await client.bulk(start, min(args.jobs, start + args.batch))
        return time.perf_counter() - began


def main() -> None:
    """Parse the options; run the worker role, or each peer in turn."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", default=PEERS, help="comma-separated peer names of the harness")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="server (each peer's database runs DROP/CREATE)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--append", help="also append each JSON line to this file")
    parser.add_argument("--role", choices=["driver", "worker"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--stats-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "worker":
        return worker(args)
    for peer in args.peers.split(","):
        head = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "peer": peer, "workload": "realistic"}
        head |= {"concurrency": args.concurrency, "jobs": args.jobs, "sleep_ms": SLEEP_S * 1000}
        head |= {"python": platform.python_version(), "loop": args.loop}
        try:
            body = measure(args, peer)
        except Exception as error:  # report, do not hide; go on with the next peer
            body = {"error": f"{type(error).__name__}: {error}"}
        emit({**head, **body}, args.append)


if __name__ == "__main__":
    main()
