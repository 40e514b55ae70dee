"""Queue features under real `flowstone worker` processes: a global limit across three
nodes (one of them SIGKILLed mid-run), a workflow across two."""

from __future__ import annotations

import signal

import proc_features
import psycopg
import pytest
from process_support import scalar
from support import wait_until

from flowstone import FlowStone, Workflow

pytestmark = pytest.mark.process

# The most stints running at once: +1 at each start, -1 at each end (an end before a
# start at the same instant); a stint that never ended stopped at `killed_at`.
MOST_AT_ONCE = """
SELECT coalesce(max(running), 0) FROM (
    SELECT sum(delta) OVER (ORDER BY at, delta) AS running FROM (
        SELECT started_at AS at, 1 AS delta FROM public.stints
        UNION ALL
        SELECT coalesce(ended_at, %s), -1 FROM public.stints
    ) AS events
) AS overlap
"""


# A node whose job started less than 30 ms ago: it surely still runs it when killed.
JUST_STARTED = """
SELECT node FROM public.stints
WHERE ended_at IS NULL AND started_at > clock_timestamp() - interval '30 ms' LIMIT 1
"""


@pytest.fixture
def stints(flowstone_url: str) -> None:
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute(proc_features.STINTS)


def completed(fs: FlowStone) -> int:
    return fs.queue_counts().get("limited", {}).get("completed", 0)


def test_a_global_limit_holds_across_three_nodes_and_a_sigkill(flowstone, flowstone_url, workers, stints):
    nodes = {name: workers(name, queues="limited=10", app="proc_features:app") for name in ("a", "b", "c")}
    for node in nodes.values():
        node.wait_started()
    flowstone.insert_all([proc_features.Stint.new({"ms": 100, "n": n}) for n in range(60)])
    wait_until(lambda: completed(flowstone) >= 15, 60, "15 jobs completed")
    victim = wait_until(
        lambda: scalar(flowstone_url, JUST_STARTED),
        30,
        "a node that just started a job",
    )
    nodes[victim].signal(signal.SIGKILL)
    nodes[victim].wait(10)
    killed_at = scalar(flowstone_url, "SELECT clock_timestamp()")
    wait_until(
        lambda: completed(flowstone) == 60, 120, "all 60 jobs completed (the lifeline freed the slots)"
    )

    assert scalar(flowstone_url, MOST_AT_ONCE, (killed_at,)) == 3
    assert scalar(flowstone_url, "SELECT count(DISTINCT job_id) FROM public.stints") == 60
    rescued = scalar(
        flowstone_url,
        "SELECT count(*) FROM flowstone.jobs WHERE errors::text LIKE %s",
        ("%rescued by the lifeline: node " + victim + "%",),
    )
    assert rescued >= 1, "the killed node's jobs ran again elsewhere"


def diamonds(fail: str | None = None) -> Workflow:
    """A root, then four diamonds (eleven jobs fanning out of a join, then the next join
    waiting on all of them), then a tail: 50 jobs."""
    wf = Workflow()
    wf.add("root", proc_features.Step.new({"ms": 20}))
    join = "root"
    for layer in range(4):
        middle = [f"d{layer}.{i}" for i in range(11)]
        for name in middle:
            wf.add(name, proc_features.Step.new({"ms": 20, "fail": name == fail}), deps=[join])
        wf.add(f"join{layer}", proc_features.Step.new({"ms": 5}), deps=middle)
        join = f"join{layer}"
    wf.add("tail", proc_features.Step.new({}), deps=[join])
    return wf


def test_a_diamond_workflow_across_two_nodes_runs_each_job_after_its_dependencies(
    flowstone, flowstone_url, workers, stints
):
    for node in [workers(name, queues="flow=10", app="proc_features:app") for name in ("x", "y")]:
        node.wait_started()
    wf = diamonds()
    jobs = flowstone.insert_workflow(wf)
    assert len(jobs) == 50
    wait_until(
        lambda: (state := flowstone.workflow(wf.id)) is not None and state.done, 60, "the workflow done"
    )

    state = flowstone.workflow(wf.id)
    assert state is not None and state.counts == {"completed": 50}
    with psycopg.connect(flowstone_url) as conn:
        spans = {
            row[0]: row[1:] for row in conn.execute("SELECT job_id, started_at, ended_at, node FROM stints")
        }
    assert len(spans) == 50, "each job ran once"
    for member in state.jobs:
        started = spans[member.job.id][0]
        for dep in member.deps:
            assert started > spans[jobs[dep].id][1], f"{member.name} started before {dep} ended"
    assert {node for _, _, node in spans.values()} == {"x", "y"}, "both nodes ran the workflow"


def test_a_discarded_job_cancels_its_descendants_across_two_nodes(flowstone, flowstone_url, workers, stints):
    for node in [workers(name, queues="flow=10", app="proc_features:app") for name in ("x", "y")]:
        node.wait_started()
    wf = diamonds(fail="d1.3")
    flowstone.insert_workflow(wf)
    wait_until(
        lambda: (state := flowstone.workflow(wf.id)) is not None and state.done, 60, "the workflow done"
    )

    state = flowstone.workflow(wf.id)
    assert state is not None
    got = {member.name: member.job.state.value for member in state.jobs}
    assert got["d1.3"] == "discarded"
    descendants = [
        "join1",
        *(f"d{layer}.{i}" for layer in (2, 3) for i in range(11)),
        "join2",
        "join3",
        "tail",
    ]
    assert {got[name] for name in descendants} == {"cancelled"}
    earlier = [
        "root",
        "join0",
        *(f"d{layer}.{i}" for layer in (0, 1) for i in range(11) if (layer, i) != (1, 3)),
    ]
    assert {got[name] for name in earlier} == {"completed"}
    assert scalar(flowstone_url, "SELECT count(*) FROM stints") == len(earlier) + 1, "no cancelled job ran"
