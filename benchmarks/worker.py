"""The worker process of a benchmark: one node, queue `default` at concurrency C.

Prints a JSON `ready` line once it runs; on SIGTERM it writes its counters (and RSS
samples) to `--stats-out` and stops through the normal graceful path. On SIGUSR1 it
prints a `report` line: executions so far, the insert-to-start latencies (ms) since the
last report, and RSS (the soak workload samples it so).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import time
from typing import Any

import anyio

from benchmarks import noop

RSS_MARKS = (10_000, 200_000)


def rss_bytes() -> int:
    """Current resident set size."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def dump(path: str, extra: dict[str, Any]) -> None:
    """Write the counters atomically."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    data = {
        **noop.STATS,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "runs": noop.RUNS and noop.RUNS.to_json(),
        **extra,
    }
    with open(path + ".tmp", "w") as out:
        json.dump(data, out)
    os.replace(path + ".tmp", path)


async def sample_rss(marks: dict[int, int]) -> None:
    """Record RSS as the execution count passes each mark."""
    for mark in RSS_MARKS:
        while noop.STATS["count"] < mark:
            await anyio.sleep(0.05)
        marks[mark] = rss_bytes()


async def report_on_signal() -> None:
    """Print one report line per SIGUSR1; the latencies reported are dropped."""
    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            lat = [round(x * 1000, 3) for x in noop.STATS["lat"]]
            noop.STATS["lat"] = []
            line = {"report": time.time(), "count": noop.STATS["count"], "lat_ms": lat, "rss": rss_bytes()}
            print(json.dumps(line), flush=True)


async def main(args: argparse.Namespace) -> None:
    if args.record_ids:
        noop.RUNS = noop.Runs()
    fs = noop.app(args.url, **json.loads(args.settings))
    node = fs.node({noop.QUEUE: {"limit": args.concurrency, **json.loads(args.queue_options)}})
    marks: dict[int, int] = {}
    stopped_at: list[float] = []

    async def stop_on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stopped_at.append(time.time())
                dump(args.stats_out, {"phase": "pre-shutdown", "rss": marks})
                node.stop()
                return

    async def announce() -> None:
        await node.started.wait()
        print(json.dumps({"ready": time.time()}), flush=True)

    async with anyio.create_task_group() as group:
        group.start_soon(stop_on_signal)
        group.start_soon(announce)
        group.start_soon(sample_rss, marks)
        group.start_soon(report_on_signal)
        await node.run()
        group.cancel_scope.cancel()
    await fs.aclose()
    shutdown = time.time() - stopped_at[0] if stopped_at else None
    dump(args.stats_out, {"phase": "stopped", "shutdown_s": shutdown, "rss": marks})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--stats-out", required=True)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--queue-options", default="{}", help="JSON: the queue's other options")
    parser.add_argument("--settings", default="{}", help="JSON: FlowStone settings, e.g. prune_max_age")
    parser.add_argument("--record-ids", action="store_true", help="keep the ids of the jobs run")
    options = parser.parse_args()
    anyio.run(main, options, backend_options={"use_uvloop": options.loop == "uvloop"})
