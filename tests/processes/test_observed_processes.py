"""Observed source assets through a real `flowstone worker` process: an observation that
brings a new data version makes the eager dependent recompute once; one that brings the
same version recomputes nothing."""

from __future__ import annotations

import proc_assets
import psycopg
import pytest
from process_support import StartWorkers, rows, scalar, settled
from support import wait_until

from flowstone import FlowStone, materialize
from flowstone.assets import default_assets

pytestmark = pytest.mark.process

JOBS = "SELECT id, state::text, args->>'asset_name', args->>'run_id' FROM flowstone.jobs ORDER BY id"
FOLLOWER_RUNS = "SELECT count(*) FROM public.asset_runs WHERE asset = 'proc_follower'"
VERSIONS = (
    "SELECT data_version FROM flowstone.materializations WHERE asset = 'proc_source' AND status = 'success'"
    " ORDER BY id"
)


def _observe(url: str, version: str, jobs: int) -> None:
    """Let the outside data be at `version`, observe it, and wait until `jobs` jobs in
    all finished."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE public.source_version SET version = %s", (version,))
    materialize("proc_source", run_id=f"observe/{version}/{jobs}")
    wait_until(lambda: settled(url, jobs), 30, f"{jobs} jobs to finish: {rows(url, JOBS)}")


def test_a_changed_observation_recomputes_the_eager_dependent_once(
    flowstone: FlowStone, flowstone_url: str, asset_workers: StartWorkers
) -> None:
    for defined in proc_assets.OBSERVED:
        if defined.name not in default_assets:
            default_assets.register(defined)
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.source_version (version text NOT NULL)")
        conn.execute("INSERT INTO public.source_version VALUES ('v1')")
    asset_workers(1, PROC_OBSERVED="1")

    _observe(flowstone_url, "v1", 2)  # the first observation: new data, the follower runs
    assert scalar(flowstone_url, FOLLOWER_RUNS) == 1
    _observe(flowstone_url, "v1", 3)  # the same version: nothing queued
    assert scalar(flowstone_url, FOLLOWER_RUNS) == 1, "an unchanged source recomputes nothing"
    _observe(flowstone_url, "v2", 5)  # changed: the follower once more
    assert scalar(flowstone_url, FOLLOWER_RUNS) == 2, "recomputed once for the change"
    with psycopg.connect(flowstone_url) as conn:
        assert [row[0] for row in conn.execute(VERSIONS)] == ["v1", "v1", "v2"]
