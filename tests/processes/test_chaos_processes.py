"""Chaos on real workers: FLOWSTONE_CHAOS / `flowstone worker --chaos` fail a share of a
node's jobs before perform, and no job is lost."""

from __future__ import annotations

from collections.abc import Callable

import proc_isolated
import pytest
from process_support import WorkerProcess, rows, scalar, settled
from support import wait_until

from flowstone import FlowStone

pytestmark = pytest.mark.process

Start = Callable[..., WorkerProcess]
INJECTED = "ChaosError: chaos: a failure injected before perform (failure rate {rate})"
ERRORS = "SELECT e ->> 'error', count(*) FROM flowstone.jobs, jsonb_array_elements(errors) AS e GROUP BY 1"
STATES = "SELECT state::text, count(*) FROM flowstone.jobs GROUP BY 1"
PERFORMED = "SELECT count(*) FROM public.children"


def run(fs: FlowStone, url: str, jobs: int) -> tuple[dict[str, int], dict[str, int]]:
    """Insert `jobs` Flaky jobs, wait for them all to end; their states and errors."""
    fs.insert_all([proc_isolated.Flaky.new({"n": n}) for n in range(jobs)])
    wait_until(lambda: settled(url, jobs), 90, f"{jobs} jobs to end")
    return dict(rows(url, STATES)), dict(rows(url, ERRORS))


def test_chaos_1_fails_every_attempt_before_perform(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    node = isolated(FLOWSTONE_CHAOS="1.0")
    states, errors = run(flowstone, flowstone_url, 20)
    assert states == {"discarded": 20}
    assert errors == {INJECTED.format(rate=1.0): 60}, "each of the 3 attempts failed by chaos"
    assert scalar(flowstone_url, PERFORMED) == 0, "perform never ran"
    assert any('"chaos: failing a share of jobs before perform"' in line for line in node.lines)


def test_the_chaos_flag_wins_over_the_environment(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated(argv=("--chaos", "0"), FLOWSTONE_CHAOS="1.0")
    states, errors = run(flowstone, flowstone_url, 20)
    assert (states, errors) == ({"completed": 20}, {})
    assert scalar(flowstone_url, PERFORMED) == 20


def test_a_seeded_30_percent_fails_a_share_within_bounds_and_loses_no_job(
    flowstone: FlowStone, flowstone_url: str, isolated: Start
) -> None:
    isolated(argv=("--chaos", "0.3", "--chaos-seed", "7"))
    states, errors = run(flowstone, flowstone_url, 200)
    assert set(states) <= {"completed", "discarded"} and sum(states.values()) == 200
    assert set(errors) == {INJECTED.format(rate=0.3)}, "every failure was chaos"
    failed = errors[INJECTED.format(rate=0.3)]
    performed = scalar(flowstone_url, PERFORMED)
    assert performed == states["completed"], "perform ran once per completed job, never on a chaos failure"
    assert 0.2 < failed / (failed + performed) < 0.4
    assert states["completed"] >= 190  # 1 - 0.3^3 ≈ 97 % expected
