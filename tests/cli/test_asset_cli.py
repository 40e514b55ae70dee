"""The asset commands of `flowstone`: assets ls, materialize, backfill, lineage.

Commands run in-process (`flowstone.cli.main`) and load their assets with `--app`; the
jobs they queue are run by a real `flowstone worker` process on the test's database (or,
where the command does not wait, drained in-process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import wait_until

from flowstone import DailyPartitions, FlowStone, backfill
from flowstone.cli import main
from flowstone.insights import STATUSES
from flowstone.queue.instance import set_default
from flowstone.testing import drain_queue

APPS = Path(__file__).parent / "apps"
APP = "cli_assets_app:app"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def app_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--app cli_assets_app:app` is importable in this process."""
    monkeypatch.syspath_prepend(str(APPS))


@pytest.fixture
def cli(flowstone: FlowStone, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `flowstone ARGS --app … --database-url …`: exit code, stdout, stderr."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--app", APP, "--database-url", flowstone.database_url])
        set_default(flowstone)  # main installed (and closed) the command's own instance
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def worker(flowstone_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `flowstone worker` for the app's assets; it picks jobs up once it started."""
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": flowstone_url, "PYTHONPATH": str(APPS)}
    command = ["worker", "--app", APP, "--queues", "assets=4", "--log-level", "warning"]
    with open(tmp_path / "worker.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "flowstone.cli", *command], env=env, stderr=log)
    yield process
    process.terminate()
    assert process.wait(30) == 0, (tmp_path / "worker.log").read_text()


def test_materialize_queues_the_job_and_prints_the_run(cli: Cli, flowstone: FlowStone) -> None:
    code, out, _ = cli("materialize", "cli_orders", "--partition", "2025-01-02", "--json")
    assert code == 0
    [row] = json.loads(out)
    assert (row["status"], row["asset"], row["partition"]) == ("queued", "cli_orders", "2025-01-02")
    job = flowstone.get_job(row["job_id"])
    assert job is not None and job.worker == "flowstone.AssetWorker"
    assert job.args == {
        "asset_name": "cli_orders",
        "partition": "2025-01-02",
        "run_id": row["run_id"],
        "force": False,
    }

    code, out, _ = cli("materialize", "cli_revenue", "--partition", "2025-01-02", "--all")
    assert code == 0
    assert "queued" in out and '["cli_orders", "cli_revenue"]' in out


def test_materialize_wait_reports_completed_and_failed(cli: Cli, worker: subprocess.Popen[bytes]) -> None:
    code, out, _ = cli(
        "materialize", "cli_orders", "--partition", "2025-01-03", "--wait", "--timeout", "60", "--json"
    )
    assert code == 0
    [row] = json.loads(out)
    assert row["status"] == "completed" and row["materialization"]["status"] == "success"

    code, out, _ = cli("materialize", "cli_flaky", "--partition", "2025-01-03", "--wait", "--timeout", "60")
    assert code == 1
    assert "failed" in out and "execution_error: RuntimeError: odd day 2025-01-03" in out


def test_materialize_all_wait_follows_the_run_and_lineage_shows_it(
    cli: Cli, worker: subprocess.Popen[bytes]
) -> None:
    code, out, err = cli(
        "materialize", "cli_revenue", "--partition", "2025-01-05", "--all", "--wait", "--json"
    )
    assert code == 0, err
    [totals] = json.loads(out)
    assert (totals["total"], totals["success"], totals["failed"]) == (2, 2, 0)
    assert "2/2 finished, 0 failed" in err

    code, out, _ = cli("lineage", "cli_revenue", "--partition", "2025-01-05", "--json")
    assert code == 0
    lineage = json.loads(out)
    assert lineage["materialization"]["run_id"] == totals["run_id"]
    assert [(r["asset"], r["partition"], r["run_id"]) for r in lineage["upstream"]] == [
        ("cli_orders", "2025-01-05", totals["run_id"])
    ]
    code, out, _ = cli("lineage", "cli_orders", "--partition", "2025-01-05")
    assert code == 0
    assert "upstream (what it read):\n(none)" in out
    assert out.split("downstream (what read it):")[1].count("cli_revenue") == 1


def test_backfill_follows_progress_to_the_end_and_fails_on_failures(
    cli: Cli, worker: subprocess.Popen[bytes]
) -> None:
    code, out, err = cli("backfill", "cli_flaky", "--from", "2025-01-01", "--to", "2025-01-06", "--json")
    assert code == 1
    [totals] = json.loads(out)
    assert {k: totals[k] for k in ("total", "success", "failed", "unfinished")} == {
        "total": 6,
        "success": 3,
        "failed": 3,
        "unfinished": 0,
    }
    assert "6/6 finished, 3 failed" in err and "\r" not in err, "one final line into a pipe, no frames"

    args = ("backfill", "cli_orders", "--from", "2025-01-01", "--to", "2025-01-04", "--json")
    outcomes = []
    for extra in ((), (), ("--force",)):
        code, out, _ = cli(*args, *extra)
        assert code == 0
        [totals] = json.loads(out)
        outcomes.append((totals["success"], totals["skipped"]))
    assert outcomes == [(4, 0), (0, 4), (4, 0)], "a second backfill skips; --force redoes"


def test_a_week_of_one_region_runs_on_a_worker_reading_each_day(
    cli: Cli, flowstone: FlowStone, worker: subprocess.Popen[bytes]
) -> None:
    code, _, _ = cli("backfill", "cli_orders", "--from", "2025-01-01", "--to", "2025-01-07", "--json")
    assert code == 0
    week = ("--date=2025-01-01..2025-01-07", "--region", "eu")
    code, out, _ = cli("backfill", "cli_regional", *week, "--json")
    [totals] = json.loads(out)
    assert code == 0 and (totals["total"], totals["success"]) == (7, 7)
    code, out, _ = cli("assets", "status", "cli_regional", "--from", "2025-01-01|eu", "--to", "2025-01-07|us")
    assert [line.split()[1:] for line in out.splitlines()[1:8]] == [["fresh", "missing"]] * 7
    with flowstone.session() as conn:
        value = conn.execute(
            "SELECT value FROM flowstone_assets.cli_regional WHERE partition = '2025-01-03|eu'"
        )
        assert value.fetchone() == ({"total": 6},), "the day's two orders of 3"


def test_backfill_stops_following_at_the_timeout(cli: Cli) -> None:
    code, out, err = cli(
        "backfill", "cli_orders", "--from", "2025-01-01", "--to", "2025-01-03", "--timeout", "0.2"
    )
    assert code == 1
    assert "did not finish within 0.2 s (its jobs run on)" in err
    assert "0/3 finished" in err and "unfinished" in out.splitlines()[0].lower()


def test_materialize_wait_timeout_exits_1(cli: Cli) -> None:
    code, _, err = cli("materialize", "cli_orders", "--partition", "2025-01-02", "--wait", "--timeout", "0.2")
    assert code == 1
    assert "timeout: materialization of 'cli_orders'" in err and "the job runs on" in err


def test_assets_ls_counts_each_assets_partitions_by_status(cli: Cli, flowstone: FlowStone) -> None:
    __import__("cli_assets_app").register()
    backfill("cli_flaky", start="2025-01-01", end="2025-01-05")
    backfill("cli_retried", start="2025-01-01", end="2025-01-02")
    drain_queue("assets")  # 2025-01-01 of cli_retried fails its first attempt: retried in 30 s
    days = len(DailyPartitions("2025-01-01").all_keys(datetime.now(UTC)))  # closed by now
    none = dict.fromkeys(STATUSES, 0)

    code, out, _ = cli("assets", "ls", "--json")
    assert code == 0
    rows = {row["asset"]: row for row in json.loads(out)}
    assert list(rows) == ["cli_flaky", "cli_orders", "cli_retried", "cli_regional", "cli_revenue"]
    assert rows["cli_regional"]["partitions"] == "multi(date: daily(2025-01-01), region: static(eu us))"
    assert rows["cli_revenue"] == {
        "asset": "cli_revenue",
        "depends_on": ["cli_orders"],
        "partitions": "daily(2025-01-01)",
        "io_manager": "postgres",
        "status": {**none, "missing": days},
        "overdue": False,
        "last_success": None,
    }
    assert rows["cli_flaky"]["status"] == {**none, "fresh": 2, "missing": days - 5, "failed": 3}
    assert rows["cli_retried"]["status"] == {**none, "fresh": 1, "missing": days - 2, "queued": 1}, (
        "a partition in retry backoff is queued, not running"
    )

    code, out, _ = cli("assets", "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ASSET", "DEPENDS_ON", "PARTITIONS", "IO_MANAGER", "STATUS", "FRESHNESS"]
    assert f"fresh=2 missing={days - 5} failed=3" in lines[1] and f"missing={days}" in lines[5]
    assert f"fresh=1 missing={days - 2} queued=1" in lines[3]
    assert f"missing={2 * days}" in lines[4]


def test_assets_status_shows_each_partition_and_why_and_lineage_follows_a_skip(
    cli: Cli, flowstone: FlowStone
) -> None:
    __import__("cli_assets_app").register()
    backfill("cli_orders", start="2025-01-01", end="2025-01-02")
    backfill("cli_revenue", start="2025-01-01", end="2025-01-02")
    drain_queue("assets", with_scheduled=True)
    backfill("cli_orders", ["2025-01-02"], force=True)  # new data for one day
    drain_queue("assets")

    code, out, _ = cli(
        "assets", "status", "cli_revenue", "--from", "2025-01-01", "--to", "2025-01-03", "--json"
    )
    assert code == 0
    rows = [(r["partition"], r["status"], r["reason"]) for r in json.loads(out)]
    assert rows == [
        ("2025-01-01", "fresh", None),
        ("2025-01-02", "stale", "upstream cli_orders partition 2025-01-02 changed"),
        ("2025-01-03", "missing", None),
    ]
    code, out, _ = cli("assets", "status", "cli_revenue", "--from", "2025-01-01", "--to", "2025-01-03")
    assert code == 0 and out.splitlines()[-1] == "fresh=1 stale=1 missing=1"

    backfill("cli_orders", ["2025-01-01"])  # fresh: skipped
    drain_queue("assets")
    code, out, _ = cli("lineage", "cli_orders", "--partition", "2025-01-01")
    assert code == 0 and "skipped (fresh): stands for materialization" in out
    assert out.split("downstream (what read it):")[1].count("cli_revenue") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("materialize", "cli_order", "--partition", "2025-01-02"),
            "asset_not_found: no asset named 'cli_order'; did you mean 'cli_orders'?",
        ),
        (("materialize", "cli_orders", "--partition", "2025-13-40"), "validation_error: "),
        (("materialize", "cli_orders"), "validation_error: asset 'cli_orders' is partitioned"),
        (
            ("backfill", "cli_revenu", "--from", "2025-01-01", "--to", "2025-01-02"),
            "did you mean 'cli_revenue'?",
        ),
        (("backfill", "cli_orders", "--from", "2025-01-05", "--to", "yesterday"), "validation_error: "),
        (("backfill", "cli_orders", "--date", "2025-01-05"), "'cli_orders' is not multi-dimensional"),
        (("backfill", "cli_regional", "--date", "2025-01-05"), "exactly ['date', 'region']; got ['date']"),
        (("backfill", "cli_regional", "--date", "--region", "eu"), "--date needs a key or a range A..B"),
        (("backfill", "cli_regional"), "backfill takes --from and --to"),
        (
            ("lineage", "cli_orders", "--partition", "2025-01-02"),
            "asset 'cli_orders' has no materialization at partition 2025-01-02",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, argv: tuple[str, ...], message: str) -> None:
    code, out, err = cli(*argv)
    assert code == 2
    assert out == "" and err.count("\n") == 1
    assert err.startswith("flowstone: error: ") and message in err


def test_without_app_there_are_no_assets(flowstone: FlowStone, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "ls", "--database-url", flowstone.database_url]) == 2
    assert "no assets are defined; pass --app module:attr" in capsys.readouterr().err


def test_backfill_no_wait_queues_and_returns(cli: Cli, flowstone: FlowStone) -> None:
    code, out, err = cli(
        "backfill", "cli_orders", "--from", "2025-01-01", "--to", "2025-01-03", "--no-wait", "--json"
    )
    [row] = json.loads(out)
    assert code == 0 and err == "" and (row["total"], row["status"]) == (3, "queued")
    assert len(flowstone.list_jobs(queue="assets")) == 3


def test_backfill_takes_a_range_per_dimension(cli: Cli, flowstone: FlowStone) -> None:
    __import__("cli_assets_app").register()
    backfill("cli_orders", start="2025-01-01", end="2025-01-07")
    argv = ("backfill", "cli_regional", "--date", "2025-01-01..2025-01-07", "--region=eu", "--no-wait")
    code, out, err = cli(*argv, "--json")
    [row] = json.loads(out)
    assert code == 0 and err == "" and (row["total"], row["status"]) == (7, "queued")
    jobs = flowstone.list_jobs(queue="assets")
    regional = [job.args["partition"] for job in jobs if job.args["asset_name"] == "cli_regional"]
    assert sorted(regional) == [f"2025-01-0{d}|eu" for d in range(1, 8)]
    assert drain_queue("assets").completed == 14


def test_status_of_two_dimensions_is_a_table_of_them(cli: Cli, flowstone: FlowStone) -> None:
    __import__("cli_assets_app").register()
    backfill("cli_orders", start="2025-01-01", end="2025-01-02")
    backfill("cli_regional", ["2025-01-01|eu", "2025-01-02|us"])
    drain_queue("assets")
    code, out, _ = cli("assets", "status", "cli_regional", "--from", "2025-01-01|eu", "--to", "2025-01-03|us")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["DATE", "EU", "US"],
        ["2025-01-01", "fresh", "missing"],
        ["2025-01-02", "missing", "fresh"],
        ["2025-01-03", "missing", "missing"],
        [],
        ["fresh=2", "missing=4"],
    ]
    one_day = ("--from", "2025-01-01|eu", "--to", "2025-01-01|us", "--json")
    code, out, _ = cli("assets", "status", "cli_regional", *one_day)
    assert [(row["partition"], row["status"]) for row in json.loads(out)] == [
        ("2025-01-01|eu", "fresh"),
        ("2025-01-01|us", "missing"),
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "cli_orders", "--from", "2025-01-01", "--to", "2025-01-03"],
        ["materialize", "cli_orders", "--partition", "2025-01-02", "--wait"],
        ["materialize", "cli_revenue", "--partition", "2025-01-02", "--all", "--wait"],
    ],
    ids=["backfill", "materialize", "materialize-all"],
)
def test_ctrl_c_stops_following_in_one_line_and_the_jobs_stay(
    flowstone: FlowStone, flowstone_url: str, argv: list[str]
) -> None:
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": flowstone_url, "PYTHONPATH": str(APPS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "flowstone.cli", *argv, "--app", APP],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: flowstone.list_jobs(queue="assets"), 30, "the queued jobs")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert (
        err.splitlines()[-1] == "flowstone: stopped following; jobs keep running" and "Traceback" not in err
    )
    assert all(job.state == "available" for job in flowstone.list_jobs(queue="assets"))
