"""Dagster beside FlowStone's asset workloads; JSON lines in the format of `python -m benchmarks`.

    benchmarks/dagster/setup.sh
    /tmp/dagsterbench/bin/python benchmarks/dagster/run.py [variant …] [--append FILE] 2>dagster.log

Variants (all by default), each on a fresh database where it uses Postgres:
- `materialize-ephemeral`, `materialize-postgres`: `materialize()` of the 3-asset daily
  chain once per day, in process, on an ephemeral instance or on Postgres storage;
- `backfill-daemon`, `backfill-daemon-single-run`: an asset backfill of the daily chain
  handed to `dagster-daemon` (default backfill policy, or `BackfillPolicy.single_run()`),
  timed from the launch to the last materialization event;
- `chain-ephemeral`, `chain-postgres`, `chain-launched`: the 10-asset chain, median of
  `--chain-runs`: `materialize()` in process, or a run of its job launched with
  `dagster job launch` and run by the daemon (timed from the run's creation to the last
  asset's materialization event, and from the command's start).

Dagster's console logger stays on (its default); send stderr to a file.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import urlsplit

import dagster
import defs
import psycopg2
from dagster import AssetKey, AssetsDefinition, DagsterInstance, DagsterRunStatus, RunsFilter, materialize
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DAEMONS = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}
POLL = 0.2  # the FlowStone harness's poll
ENDED = {BulkActionStatus.FAILED, BulkActionStatus.CANCELED, BulkActionStatus.COMPLETED_FAILED}


def r(value: float, digits: int = 3) -> float:
    """Round for the report."""
    return round(value, digits)


def keys(assets: Sequence[AssetsDefinition]) -> list[AssetKey]:
    """The assets' keys, upstream first."""
    return [a.key for a in assets]


class Home:
    """A temporary DAGSTER_HOME on Postgres storage, a fresh database, and its workspace.yaml."""

    def __init__(self, args: argparse.Namespace) -> None:
        conn = psycopg2.connect(args.dsn)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{args.db}"')
        conn.close()
        url = urlsplit(args.dsn)._replace(path=f"/{args.db}").geturl()
        self.dir = Path(tempfile.mkdtemp(prefix="dagsterbench-"))
        (self.dir / "dagster.yaml").write_text(
            f"storage:\n  postgres:\n    postgres_url: {url}\ntelemetry:\n  enabled: false\n"
        )
        (self.dir / "workspace.yaml").write_text(
            "load_from:\n"
            + "".join(
                f"  - python_file:\n      relative_path: {HERE / 'defs.py'}\n"
                f"      attribute: {name}\n      location_name: {name}\n"
                for name in ("defaults", "single_run")
            )
        )
        self.instance = DagsterInstance.from_config(str(self.dir))

    def close(self) -> None:
        """Dispose of the instance (its connection pool) and remove the directory."""
        self.instance.dispose()
        shutil.rmtree(self.dir)


class Daemon:
    """`dagster-daemon run` in its own process group, ready once the daemons we need beat."""

    def __init__(self, home: Home) -> None:
        self.log = open(home.dir / "daemon.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [BIN / "dagster-daemon", "run", "-w", home.dir / "workspace.yaml"],
            cwd=home.dir,
            env={**os.environ, "DAGSTER_HOME": str(home.dir)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not set(home.instance.get_daemon_heartbeats()) >= DAEMONS:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"dagster-daemon did not start; see {self.log.name}")
            time.sleep(POLL)

    def stop(self) -> int:
        """SIGTERM to the daemon's process group (its code servers and runs), then wait."""
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        self.log.close()
        return code


def materialized(instance: DagsterInstance, assets: Sequence[AssetsDefinition]) -> int:
    """Materialized (asset, partition) pairs among `assets`."""
    return sum(len(instance.get_materialized_partitions(key)) for key in keys(assets))


def last_success(instance: DagsterInstance, assets: Sequence[AssetsDefinition]) -> float:
    """Timestamp of the newest materialization event among `assets`."""
    events = [instance.get_latest_materialization_event(key) for key in keys(assets)]
    return max(event.timestamp for event in events if event is not None)


def materialize_days(instance: DagsterInstance, days: int) -> dict[str, Any]:
    """`materialize()` the daily chain for each of `days` days in turn; materializations/s."""
    partitions = defs.DAYS.get_partition_keys()[:days]
    began = time.perf_counter()
    for key in partitions:
        result = materialize(
            defs.BACKFILL,
            partition_key=key,
            instance=instance,
            resources={"io_manager": dagster.mem_io_manager},
        )
        assert result.success, key
    seconds = time.perf_counter() - began
    return backfill_figures(instance, defs.BACKFILL, days, seconds)


def backfill_figures(
    instance: DagsterInstance, assets: Sequence[AssetsDefinition], days: int, seconds: float
) -> dict[str, Any]:
    """The figures FlowStone's backfill workload reports."""
    total = days * len(assets)
    successes = materialized(instance, assets)
    return {
        "partitions": days,
        "materializations": total,
        "materializations_per_s": r(total / seconds, 2),
        "seconds": r(seconds),
        "successes": successes,
        "count_ok": successes == total,
    }


def backfill_daemon(
    args: argparse.Namespace, assets: Sequence[AssetsDefinition], days: int
) -> dict[str, Any]:
    """An asset backfill of `days` days of `assets`, run by the daemon; launch → last success."""
    home = Home(args)
    daemon = Daemon(home)
    instance = home.instance
    backfill_id = make_new_backfill_id()
    total = days * len(assets)
    launched = time.time()
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=dagster.Definitions(assets=assets).resolve_asset_graph(),
            partition_names=defs.DAYS.get_partition_keys()[:days],
            asset_selection=keys(assets),
            backfill_timestamp=launched,
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
    )
    deadline = time.monotonic() + args.timeout
    while materialized(instance, assets) < total and time.monotonic() < deadline:
        backfill = instance.get_backfill(backfill_id)
        if backfill is not None and backfill.status in ENDED:
            break
        time.sleep(POLL)
    figures = backfill_figures(instance, assets, days, last_success(instance, assets) - launched)
    runs = instance.get_run_records(RunsFilter.for_backfill(backfill_id))
    figures["runs"] = len(runs)
    figures["first_run_after_s"] = r(min(run.create_timestamp.timestamp() for run in runs) - launched)
    figures["daemon_exit"] = daemon.stop()
    home.close()
    return figures


def chain_timings(run_once: Callable[[], float], runs: int) -> dict[str, Any]:
    """Median and all of `runs` timings (ms) of the 10-asset chain."""
    timings = sorted(run_once() for _ in range(runs))
    return {
        "chain_length": len(defs.CHAIN),
        "chain_ms": r(median(timings), 1),
        "chain_ms_runs": [r(t, 1) for t in timings],
    }


def chain_in_process(instance: DagsterInstance, runs: int) -> dict[str, Any]:
    """`materialize()` of the 10-asset chain, call to return (the last asset has succeeded)."""

    def once() -> float:
        began = time.perf_counter()
        assert materialize(
            defs.CHAIN, instance=instance, resources={"io_manager": dagster.mem_io_manager}
        ).success
        return (time.perf_counter() - began) * 1000

    return chain_timings(once, runs)


def chain_launched(args: argparse.Namespace) -> dict[str, Any]:
    """`dagster job launch` of the chain's job, run by the daemon, to the last asset's success."""
    home = Home(args)
    daemon = Daemon(home)
    command: list[float] = []

    def once() -> float:
        began = time.time()
        subprocess.run(
            [
                BIN / "dagster",
                "job",
                "launch",
                "-w",
                home.dir / "workspace.yaml",
                "-l",
                "defaults",
                "-j",
                defs.CHAIN_JOB,
            ],
            env={**os.environ, "DAGSTER_HOME": str(home.dir)},
            check=True,
            capture_output=True,
        )
        record = home.instance.get_run_records(RunsFilter(job_name=defs.CHAIN_JOB), limit=1)[0]
        status = wait_for_run(home.instance, record.dagster_run.run_id, args.timeout)
        assert status == DagsterRunStatus.SUCCESS, status
        done = last_success(home.instance, defs.CHAIN[-1:])
        command.append((done - began) * 1000)
        return (done - record.create_timestamp.timestamp()) * 1000

    figures = chain_timings(once, args.chain_runs)
    figures["with_command_ms"] = r(median(command), 1)
    figures["with_command_ms_runs"] = [r(t, 1) for t in sorted(command)]
    figures["daemon_exit"] = daemon.stop()
    home.close()
    return figures


def wait_for_run(instance: DagsterInstance, run_id: str, timeout: float) -> DagsterRunStatus:
    """Poll the run until it has finished (or `timeout` s passed); its last status."""
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        if run.is_finished or time.monotonic() > deadline:
            return run.status
        time.sleep(POLL)


def on_postgres(
    args: argparse.Namespace, work: Callable[[DagsterInstance], dict[str, Any]]
) -> dict[str, Any]:
    """Run `work` in process on an instance with Postgres storage, on a fresh database."""
    home = Home(args)
    try:
        return work(home.instance)
    finally:
        home.close()


@dataclass(frozen=True)
class Variant:
    """A measured configuration: the FlowStone workload it sits beside, how it runs, its settings."""

    workload: str
    run: Callable[[argparse.Namespace], dict[str, Any]]
    settings: dict[str, Any]
    concurrency: int = 1  # in process: one run at a time; through the daemon: its default run limit


IN_PROCESS = {"io_manager": "mem", "executor": "in_process"}
EPHEMERAL = {"storage": "ephemeral", **IN_PROCESS}
POSTGRES = {"storage": "postgres", **IN_PROCESS}
DAEMON = {"storage": "postgres", "run_coordinator": "queued, max_concurrent_runs 10 (default)"}
DEFAULTS = {"io_manager": "fs", "executor": "multiprocess"}
VARIANTS = {
    "materialize-ephemeral": Variant(
        "assets", lambda a: materialize_days(DagsterInstance.ephemeral(), a.days_ephemeral), EPHEMERAL
    ),
    "materialize-postgres": Variant(
        "assets", lambda a: on_postgres(a, lambda i: materialize_days(i, a.days_postgres)), POSTGRES
    ),
    "backfill-daemon": Variant(
        "assets",
        lambda a: backfill_daemon(a, defs.BACKFILL, a.days_daemon),
        {**DAEMON, "backfill_policy": "default (a run per partition, its 3 assets in it)", **DEFAULTS},
        10,
    ),
    "backfill-daemon-single-run": Variant(
        "assets",
        lambda a: backfill_daemon(a, defs.SINGLE_RUN, a.days_single_run),
        {**DAEMON, "backfill_policy": "single_run", **IN_PROCESS},
        10,
    ),
    "chain-ephemeral": Variant(
        "chain", lambda a: chain_in_process(DagsterInstance.ephemeral(), a.chain_runs), EPHEMERAL
    ),
    "chain-postgres": Variant(
        "chain", lambda a: on_postgres(a, lambda i: chain_in_process(i, a.chain_runs)), POSTGRES
    ),
    "chain-launched": Variant("chain", chain_launched, {**DAEMON, **DEFAULTS}, 10),
}


def main() -> None:
    """Parse arguments, run each variant, print (and append) one JSON line each."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variants", nargs="*", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db", default="bench_dagster", help="dropped and created for each Postgres variant")
    parser.add_argument("--days-ephemeral", type=int, default=500)
    parser.add_argument("--days-postgres", type=int, default=100)
    parser.add_argument("--days-daemon", type=int, default=10)
    parser.add_argument("--days-single-run", type=int, default=100)
    parser.add_argument("--chain-runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600, help="s to wait for a daemon's backfill or run")
    parser.add_argument("--append", help="also append each JSON line to this file")
    args = parser.parse_args()
    for name in args.variants or VARIANTS:
        variant = VARIANTS[name]
        result = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "peer": "dagster",
            "version": dagster.__version__,
            "workload": variant.workload,
            "variant": name,
            "concurrency": variant.concurrency,
            "python": platform.python_version(),
            "settings": variant.settings,
            **variant.run(args),
        }
        line = json.dumps(result)
        print(line, flush=True)
        if args.append:
            with open(args.append, "a") as out:
                out.write(line + "\n")


if __name__ == "__main__":
    main()
