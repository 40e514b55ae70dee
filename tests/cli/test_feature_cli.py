"""The command line of the queue features: bulk operations by filter, workflows, progress."""

from __future__ import annotations

import json

import feature_workers as fw
from test_cli import Run, cli, one_line_error  # noqa: F401 - `cli` is a fixture

from flowstone import Batch, FlowStone, Workflow
from flowstone.testing import drain_queue


def test_bulk_commands_count_on_a_dry_run_then_act(cli: Run, flowstone: FlowStone) -> None:  # noqa: F811 - the fixture
    jobs = flowstone.insert_all([fw.Timed.new({"tenant": t}) for t in ("a", "a", "b")])
    code, out, _ = cli("jobs", "cancel-all", "--args", '{"tenant": "a"}', "--dry-run")
    assert (code, out) == (0, "2 job(s) would be cancelled\n")
    assert {job.state for job in flowstone.list_jobs()} == {"available"}
    code, out, _ = cli("jobs", "cancel-all", "--args", '{"tenant": "a"}', "--reason", "tenant gone", "--json")
    assert code == 0 and json.loads(out) == [
        {"action": "cancel", "dry_run": False, "count": 2, "args": {"tenant": "a"}}
    ]
    assert [flowstone.get_job(job.id).state for job in jobs] == ["cancelled", "cancelled", "available"]
    assert cli("jobs", "retry-all", "--state", "cancelled", "--batch-size", "1")[1] == "2 job(s) retried\n"
    assert cli("jobs", "delete-all", "--queue", fw.QUEUE)[1] == "3 job(s) deleted\n"
    one_line_error(*_code_err(cli("jobs", "delete-all", "--args", "[1]")), "--args must be a JSON object")


def test_bulk_commands_never_widen_an_empty_filter_to_every_job(cli: Run, flowstone: FlowStone) -> None:  # noqa: F811 - the fixture
    jobs = flowstone.insert_all([fw.Timed.new({"tenant": "a"}) for _ in range(5)])
    empties = [("--queue", ""), ("--worker", " "), ("--tag", ""), ("--args", ""), ("--args", "{}")]
    for command in ("cancel-all", "retry-all", "delete-all"):
        for option, value in empties:
            for dry in ((), ("--dry-run",)):
                code, err = _code_err(cli("jobs", command, option, value, *dry))
                one_line_error(code, err, "empty" if value != "{}" else "at least one key")
        one_line_error(*_code_err(cli("jobs", command)), "with no filter would act on every job")
        one_line_error(*_code_err(cli("jobs", command, "--all", "--queue", fw.QUEUE)), "not both")
    one_line_error(*_code_err(cli("jobs", "ls", "--queue", "")), "queue must not be empty")
    one_line_error(*_code_err(cli("jobs", "ls", "--worker", "")), "worker filter must not be empty")
    assert {flowstone.get_job(job.id).state for job in jobs} == {"available"}, "nothing was touched"
    assert cli("jobs", "cancel-all", "--all", "--dry-run")[1] == "5 job(s) would be cancelled\n"
    assert cli("jobs", "delete-all", "--all")[1] == "5 job(s) deleted\n"


def _code_err(result: tuple[int, str, str]) -> tuple[int, str]:
    return result[0], result[2]


def test_workflows_show_lists_jobs_dependencies_and_batch_counts(cli: Run, flowstone: FlowStone) -> None:  # noqa: F811 - the fixture
    wf = Workflow().add("a", fw.Timed.new()).add("b", fw.Timed.new(), deps=["a"])
    flowstone.insert_workflow(wf)
    code, out, _ = cli("workflows", "show", wf.id)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "STATE", "DEPS", "WAITING_ON", "PROGRESS"]
    assert lines[1].split()[::2] == ["a", "available", "0"] and lines[2].split()[2:5] == [
        "scheduled",
        "a",
        "1",
    ]
    assert lines[-1] == f'workflow {wf.id}: {{"available": 1, "scheduled": 1}}; running'
    batch = Batch(callback=fw.Report.new()).add(fw.Timed.new())
    flowstone.insert_batch(batch)
    code, out, _ = cli("workflows", "show", batch.id)
    assert out.splitlines()[-1].endswith('batch of 1: {"available": 1}, callback scheduled')
    code, out, _ = cli("workflows", "show", batch.id, "--json")
    assert json.loads(out)["counts"] == {"available": 1, "scheduled": 1}
    one_line_error(*_code_err(cli("workflows", "show", "nope")), "no workflow or batch with id 'nope'")


def test_jobs_show_includes_the_recorded_result(cli: Run, flowstone: FlowStone) -> None:  # noqa: F811 - the fixture
    job = flowstone.insert(fw.Answer.new({"n": 4}))
    drain_queue(fw.QUEUE)
    code, out, _ = cli("jobs", "show", str(job.id), "--json")
    assert code == 0 and json.loads(out)["result"] == {"answer": 8}


def test_workflows_retry_re_arms_what_a_failure_cancelled(cli: Run, flowstone: FlowStone) -> None:  # noqa: F811 - the fixture
    wf = Workflow().add("a", fw.Timed.new()).add("b", fw.Timed.new(), deps=["a"])
    jobs = flowstone.insert_workflow(wf)
    flowstone.cancel_job(jobs["a"].id)
    assert flowstone.get_job(jobs["b"].id).state == "cancelled"
    code, out, _ = cli("workflows", "retry", wf.id, "--json")
    assert code == 0
    assert [(row["id"], row["state"]) for row in json.loads(out)] == [
        (jobs["a"].id, "available"),
        (jobs["b"].id, "scheduled"),
    ]
    assert cli("workflows", "retry", wf.id)[1] == "(none)\n"
    one_line_error(*_code_err(cli("workflows", "retry", "nope")), "no workflow or batch with id 'nope'")
