"""The process executor on real `flowstone worker` processes: sync jobs in child processes,
killed at their timeout, on cancel and at shutdown; crashes fail one job; children recycled."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import proc_isolated
import pytest
from process_support import WorkerProcess, rows, scalar
from support import wait_until

from flowstone import FlowStone, Job
from flowstone.queue.job import JobState

pytestmark = pytest.mark.process

Start = Callable[..., WorkerProcess]


def child_of(url: str, job: Job) -> int:
    """The pid of the child that started `job` (once it has)."""
    found = wait_until(
        lambda: scalar(url, "SELECT pid FROM public.children WHERE job_id = %s", (job.id,)), 30, "job started"
    )
    return int(found)


def ended(fs: FlowStone, job: Job, timeout: float = 30) -> Job:
    """The job, once it no longer executes."""

    def done() -> Job | None:
        current = fs.get_job(job.id)
        running = current is None or current.state.value in ("executing", "available")
        return None if running else current

    return wait_until(done, timeout, f"job {job.id} to end")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie no parent reaped yet does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def last_error(job: Job) -> str:
    return str(job.errors[-1]["error"])


def test_a_60_s_sleep_with_a_1_s_timeout_fails_within_2_s_and_its_process_is_gone(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated()
    job = flowstone.insert(proc_isolated.Sleep.new({"seconds": 60, "timeout": 1}))
    pid = child_of(flowstone_url, job)
    seen = time.monotonic()  # perform has begun: it recorded its pid first
    result = ended(flowstone, job, timeout=10)
    assert time.monotonic() - seen < 2.0
    assert result.state.value == "discarded"
    said = f"JobTimeoutError: perform exceeded its timeout of 1.0 s; its process (pid {pid}) was killed"
    assert last_error(result) == said
    took = scalar(
        flowstone_url,
        "SELECT extract(epoch FROM (j.errors -> -1 ->> 'at')::timestamptz - c.at) "
        "FROM flowstone.jobs j JOIN public.children c ON c.job_id = j.id WHERE j.id = %s",
        (job.id,),
    )
    assert 0.5 < float(took) < 2.0, "recorded within 2 s of perform's start (its pid row came after)"
    assert not alive(pid), "the timed-out job's process is gone"


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("segfault", "was killed by SIGSEGV (signal 11)"),
        ("exit", "exited with code 3"),
        ("sigkill", "was killed by SIGKILL (signal 9) (the kernel's OOM killer"),
    ],
)
def test_a_crashing_job_fails_alone_and_the_next_job_gets_a_new_process(
    flowstone: FlowStone, flowstone_url: str, isolated: Start, how: str, said: str
) -> None:
    isolated()
    neighbour = flowstone.insert(proc_isolated.Sleep.new({"seconds": 1}))
    child_of(flowstone_url, neighbour)
    crash = flowstone.insert(proc_isolated.Crash.new({"how": how}))
    crashed_in = child_of(flowstone_url, crash)
    failed = ended(flowstone, crash)
    assert failed.state.value == "discarded"
    died = f"ChildProcessDiedError: the job's process (pid {crashed_in}) {said}"
    assert last_error(failed).startswith(died)
    assert ended(flowstone, neighbour).state.value == "completed", "the other job's process was not touched"
    after = flowstone.insert(proc_isolated.Pid.new({}))
    assert ended(flowstone, after).state.value == "completed"
    assert child_of(flowstone_url, after) != crashed_in


def test_cancel_job_kills_the_running_process_at_once(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated()
    job = flowstone.insert(proc_isolated.Sleep.new({"seconds": 60}))
    pid = child_of(flowstone_url, job)
    flowstone.cancel_job(job.id)
    wait_until(lambda: not alive(pid), 5, "the cancelled job's process to be gone")
    assert flowstone.get_job(job.id).state.value == "cancelled"  # type: ignore[union-attr]
    again = flowstone.insert(proc_isolated.Pid.new({}))
    assert ended(flowstone, again).state.value == "completed", "the slot was given back"


def test_max_tasks_per_child_recycles_the_process(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated(FS_MAX_TASKS="2")
    pids = []
    for _ in range(4):  # one after the other: each job may reuse the idle child
        job = flowstone.insert(proc_isolated.Pid.new({}))
        pids.append(ended(flowstone, job).result)
    assert pids[0] == pids[1] and pids[2] == pids[3], "a child runs up to 2 jobs"
    assert pids[1] != pids[2], "then it is replaced"
    wait_until(lambda: not alive(pids[0]), 5, "the recycled process to exit")


def test_a_child_above_the_memory_ceiling_is_recycled_after_its_job(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated(FS_MAX_MEMORY="150")
    first = ended(flowstone, flowstone.insert(proc_isolated.Pid.new({}))).result
    second = ended(flowstone, flowstone.insert(proc_isolated.Pid.new({}))).result
    assert first == second, "a child under the ceiling is kept"
    hog = ended(flowstone, flowstone.insert(proc_isolated.Hog.new({"mib": 200})))
    assert hog.state.value == "completed" and hog.result == first
    wait_until(lambda: not alive(first), 5, "the process above the ceiling to exit")
    after = ended(flowstone, flowstone.insert(proc_isolated.Pid.new({}))).result
    assert after != first


def test_errors_tracebacks_and_job_fs_cross_the_process_boundary(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated()
    failed = ended(flowstone, flowstone.insert(proc_isolated.Fails.new({"what": "a free lunch"})))
    assert last_error(failed) == "ValueError: no such thing as a free lunch"
    trace = failed.errors[-1]["traceback"]
    assert "proc_isolated.py" in trace and "raise ValueError" in trace, "the child's traceback"
    parent = flowstone.insert(proc_isolated.FollowUp.new({}))
    assert ended(flowstone, parent).state.value == "completed"
    query = "SELECT id FROM flowstone.jobs WHERE args ->> 'from' = %s"
    [(follow_up,)] = rows(flowstone_url, query, (str(parent.id),))
    assert ended(flowstone, Job(follow_up, JobState.AVAILABLE, "iso", "", {})).state.value == "completed"


def test_sigterm_kills_children_after_the_grace_and_hands_their_jobs_back(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    node = isolated(FS_GRACE="1")
    job = flowstone.insert(proc_isolated.Sleep.new({"seconds": 60}))
    pid = child_of(flowstone_url, job)
    began = time.monotonic()
    node.signal(signal.SIGTERM)
    assert node.wait(timeout=15) == 0
    assert time.monotonic() - began < 1 + 5, "the grace, then the kill"
    assert not alive(pid)
    back: Any = flowstone.get_job(job.id)
    assert (back.state.value, back.attempt) == ("available", 0), "handed back, attempt refunded"


def test_a_sigkilled_node_takes_its_children_with_it(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    node = isolated()
    job = flowstone.insert(proc_isolated.Sleep.new({"seconds": 60}))
    pid = child_of(flowstone_url, job)
    node.signal(signal.SIGKILL)
    node.wait(timeout=10)
    wait_until(lambda: not alive(pid), 5, "the child of the killed node to die")


def test_a_worker_s_own_executor_applies_on_a_thread_queue(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    node = isolated()
    own = ended(flowstone, flowstone.insert(proc_isolated.OwnProcess.new({})))
    assert own.state.value == "completed" and own.result != node.process.pid
    assert own.progress_report is not None and own.progress_report["message"] == "half way, from the child"
    threaded = ended(flowstone, flowstone.insert(proc_isolated.Flaky.new({})))
    assert threaded.state.value == "completed"
    assert scalar(flowstone_url, "SELECT pid FROM public.children WHERE job_id = %s", (threaded.id,)) == (
        node.process.pid
    ), "the queue's other jobs run in the node's threads"


def test_a_process_killed_while_idle_is_replaced_without_failing_the_next_job(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated()
    first = ended(flowstone, flowstone.insert(proc_isolated.Pid.new({}))).result
    os.kill(first, signal.SIGKILL)  # an operator, or the OOM killer, between two jobs
    wait_until(lambda: not alive(first), 5, "the idle process to die")
    second = ended(flowstone, flowstone.insert(proc_isolated.Pid.new({})))
    assert (second.state.value, second.attempt) == ("completed", 1)
    assert second.result != first
