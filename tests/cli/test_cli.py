"""The operator's command line, run in-process (plus one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import runtime_workers as w
import structlog
from psycopg.rows import dict_row

from flowstone import FlowStone, __version__ as flowstone_version
from flowstone.cli import main

Run = Any


@pytest.fixture
def cli(flowstone_url: str, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `flowstone --database-url <test db> ARGS…`; return (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--database-url", flowstone_url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def as_json(out: str) -> Any:
    return json.loads(out)


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("flowstone: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


def controls(fs: FlowStone) -> list[dict[str, Any]]:
    with fs.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute('SELECT queue, node, paused, "limit" FROM flowstone.queue_controls ORDER BY node')
        return cursor.fetchall()


def test_migrate_creates_a_schema(cli: Run) -> None:
    code, out, _ = cli("--schema", "other", "migrate")
    assert code == 0 and "schema 'other' is at revision" in out
    assert cli("--schema", "other", "jobs", "ls", "--json")[:2] == (0, "[]\n")


def test_jobs_ls_filters_and_prints_json_or_a_table(cli: Run, flowstone: FlowStone) -> None:
    jobs = flowstone.insert_all([w.Echo.new({"n": 1}), w.SyncEcho.new(), w.Echo.new(queue="other")])
    for app in ([], ["--app", "apps.good:app"]):  # --database-url wins over the app's own
        code, out, _ = cli(*app, "jobs", "ls", "--json")
        assert code == 0 and [job["id"] for job in as_json(out)] == [job.id for job in reversed(jobs)]
    _, out, _ = cli("jobs", "ls", "--queue", "rt", "--worker", w.Echo.name, "--json")
    assert [(job["id"], job["args"]) for job in as_json(out)] == [(jobs[0].id, {"n": 1})]
    _, out, _ = cli("jobs", "ls", "--state", "completed", "--json")
    assert as_json(out) == []
    code, out, _ = cli("jobs", "ls", "--queue", "other")
    header, row = out.splitlines()
    assert code == 0 and header.split()[:4] == ["ID", "STATE", "QUEUE", "WORKER"]
    assert row.split()[:3] == [str(jobs[2].id), "available", "other"]


def test_jobs_ls_pages_newest_first(cli: Run, flowstone: FlowStone) -> None:
    jobs = flowstone.insert_all([w.Echo.new({"n": n}) for n in range(5)])
    code, out, _ = cli("jobs", "ls", "--limit", "2")
    assert code == 0 and out.splitlines()[-1] == f"(more: --before {jobs[3].id})"
    _, out, _ = cli("jobs", "ls", "--limit", "2", "--before", str(jobs[3].id), "--json")
    assert [job["id"] for job in as_json(out)] == [jobs[2].id, jobs[1].id]
    _, out, _ = cli("jobs", "ls", "--limit", "2", "--before", str(jobs[1].id))
    assert "(more:" not in out and str(jobs[0].id) in out


def test_jobs_show_retry_and_cancel(cli: Run, flowstone: FlowStone) -> None:
    job = flowstone.insert(w.Echo.new({"n": 7}))
    code, out, _ = cli("jobs", "show", str(job.id), "--json")
    assert code == 0 and json.loads(out)["args"] == {"n": 7}, "one job: an object, not a list"
    code, out, _ = cli("jobs", "show", str(job.id))
    assert code == 0 and any(line.split() == ["state", "available"] for line in out.splitlines())
    one_line_error(*cli("jobs", "retry", str(job.id))[::2], f"job {job.id} cannot be retried")
    code, out, _ = cli("jobs", "cancel", str(job.id), "--json")
    assert code == 0 and as_json(out)[0]["state"] == "cancelled"
    code, out, _ = cli("jobs", "retry", str(job.id), "--json")
    assert code == 0 and as_json(out)[0]["state"] == "available"
    one_line_error(*cli("jobs", "show", "999999")[::2], "no job with id 999999")


def test_queues_show_counts_and_steer_queues(cli: Run, flowstone: FlowStone) -> None:
    flowstone.insert_all([w.Echo.new(), w.Echo.new(), w.Echo.new(queue="other")])
    code, out, _ = cli("queues", "--json")
    counts = {row["queue"]: (row["available"], row["completed"]) for row in as_json(out)}
    assert code == 0 and counts == {"other": (1, 0), "rt": (2, 0)}
    code, out, _ = cli("queues")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["QUEUE", "AVAILABLE"]
    assert out.splitlines()[-1] == "leader: -; nodes alive: 0"
    code, out, _ = cli("queues", "pause", "rt", "--node", "n1", "--force", "--json")
    assert code == 0 and as_json(out) == [{"action": "pause", "queue": "rt", "node": "n1"}]
    assert cli("queues", "scale", "rt", "3")[:2] == (0, "scale rt on all nodes\n")
    assert controls(flowstone) == [
        {"queue": "rt", "node": "*", "paused": None, "limit": 3},
        {"queue": "rt", "node": "n1", "paused": True, "limit": None},
    ]
    assert cli("queues", "resume", "rt", "--json")[0] == 0
    assert [row["paused"] for row in controls(flowstone)] == [False, None]
    one_line_error(*cli("queues", "scale", "rt", "0")[::2], "limit must be an integer from 1 to 10000")


def test_queues_shows_stored_settings_and_reset_clears_them(cli: Run, flowstone: FlowStone) -> None:
    flowstone.insert(w.Echo.new())
    assert cli("queues", "scale", "rt", "3")[0] == 0
    assert cli("queues", "pause", "rt", "--node", "n1", "--force")[0] == 0
    code, out, _ = cli("queues")
    assert code == 0 and out.splitlines()[0].split()[-2:] == ["LIMIT", "CONFIGURED"]
    assert out.splitlines()[-3:-2] == [
        "stored settings, overriding what nodes are configured with (`flowstone queues reset QUEUE`):"
    ]
    assert [line.split(" (since")[0] for line in out.splitlines()[-2:]] == [
        "  rt: limit 3 on all nodes",
        "  rt: paused on node n1",
    ]
    [row] = as_json(cli("queues", "--json")[1])
    assert [(o["node"], o["limit"], o["paused"]) for o in row["overrides"]] == [
        ("*", 3, None),
        ("n1", None, True),
    ]

    assert cli("queues", "reset", "rt", "--node", "n1")[:2] == (
        0,
        "reset rt on node n1: cleared paused on node n1\n",
    )
    assert controls(flowstone) == [{"queue": "rt", "node": "*", "paused": None, "limit": 3}]
    code, out, _ = cli("queues", "reset", "rt", "--json")
    cleared = json.loads(out)["cleared"]
    assert (
        code == 0 and [(c["node"], c["limit"]) for c in cleared] == [("*", 3)] and controls(flowstone) == []
    )
    assert cli("queues", "reset", "rt")[:2] == (0, "nothing was stored for rt on all nodes\n")


def test_unknown_queues_and_nodes_are_refused_unless_forced(cli: Run, flowstone: FlowStone) -> None:
    flowstone.insert(w.Echo.new())
    for action in (["pause", "rt_typo"], ["resume", "rt_typo"], ["scale", "rt_typo", "2"]):
        one_line_error(*cli("queues", *action)[::2], "unknown queue 'rt_typo'", "known: ", "rt", "--force")
    one_line_error(*cli("queues", "pause", "rt", "--node", "nope")[::2], "unknown node 'nope' (nodes: none)")
    assert controls(flowstone) == []
    assert cli("queues", "pause", "later", "--force")[:2] == (0, "pause later on all nodes\n")
    assert [row["queue"] for row in controls(flowstone)] == ["later"]


def test_jobs_delete(cli: Run, flowstone: FlowStone) -> None:
    waiting, running = flowstone.insert_all([w.Echo.new(), w.Echo.new()])
    with flowstone.connection() as conn:
        conn.execute("UPDATE flowstone.jobs SET state = 'executing' WHERE id = %s", (running.id,))
    assert cli("jobs", "delete", str(waiting.id))[:2] == (0, f"deleted job {waiting.id}\n")
    assert flowstone.get_job(waiting.id) is None
    one_line_error(*cli("jobs", "delete", str(running.id))[::2], f"job {running.id} cannot be deleted")
    one_line_error(*cli("jobs", "delete", str(waiting.id))[::2], "missing, or executing: cancel it first")


def test_version_and_migrate_json(cli: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"flowstone {flowstone_version}\n"
    code, out, _ = cli("--schema", "fresh", "migrate", "--json")
    [first] = as_json(out)
    assert code == 0 and first["schema"] == "fresh" and first["previous"] is None and first["revision"]
    code, out, _ = cli("--schema", "fresh", "migrate", "--json")
    assert as_json(out) == [{**first, "previous": first["revision"]}]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--app", "no_such_module:app"], ["cannot import app module 'no_such_module'"]),
        (["--app", "apps.good"], ["--app must look like 'module:attribute'"]),
        (["--app", "apps.good:missing"], ["apps.good:missing is not a FlowStone instance"]),
        (["--app", "apps.good:app", "--queues", "rt=2,nope=1"], ["unknown queue(s) nope", "known: rt"]),
        (["--app", "apps.good:app", "--queues", "rt=abc"], ["limit for 'rt' must be a positive integer"]),
        (["--app", "apps.good:app", "--queues", "rt=0"], ["limit for 'rt' must be a positive integer"]),
        (["--app", "apps.good:app", "--queues", "rt"], ["entry 'rt' must look like name=limit"]),
        (
            ["--app", "apps.good:app", "--queues", "rt=1", "--node", " "],
            ["node: node must not be empty"],
        ),
        (["--app", "apps.bad_cron:app", "--queues", "rt=1"], ["cron expression '0 25 * * *'"]),
        (
            ["--app", "apps.good:app", "--queues", "rt=1", "--chaos", "1.5"],
            ["--chaos must be a share of jobs from 0 to 1", "got 1.5"],
        ),
    ],
)
def test_bad_worker_input_exits_2_with_one_line(
    cli: Run, argv: list[str], fragments: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FlowStone, "run", lambda *args: pytest.fail("the worker started"))
    one_line_error(*cli("worker", *argv)[::2], *fragments)


def test_the_installed_command_runs_in_a_process_of_its_own(flowstone_url: str, flowstone: FlowStone) -> None:
    job = flowstone.insert(w.Echo.new())
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    command = [sys.executable, "-m", "flowstone.cli", "--database-url", flowstone_url]
    listed = subprocess.run(
        [*command, "jobs", "ls", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert listed.returncode == 0 and [j["id"] for j in json.loads(listed.stdout)] == [job.id]
    bad = subprocess.run(
        [*command, "worker", "--app", "apps.bad_cron:app", "--queues", "rt=1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'0 25 * * *'" in bad.stderr


def test_log_lines_go_to_stderr_never_into_the_output(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """`flowstone … --json | jq` must get JSON only, whatever the library logs meanwhile."""
    from flowstone.insights import Insights

    overview = Insights.overview

    def noisy(self: Insights) -> Any:
        structlog.get_logger("flowstone.test").warning("something worth a warning")
        return overview(self)

    monkeypatch.setattr(Insights, "overview", noisy)
    code, out, err = cli("queues", "--json")
    assert code == 0 and as_json(out) == []
    assert "something worth a warning" in err
