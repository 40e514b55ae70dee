"""The hot path's statements keep index plans under the producer's generic plans
(`plan_cache_mode = force_generic_plan`), on a table the planner has statistics for."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb
from test_manage import QUEUE, Ok

from flowstone import FlowStone
from flowstone.queue.pool import GENERIC_PLANS
from flowstone.queue.queries.jobs import JobQueries

WAITING = 20_000


@pytest.fixture
def analyzed(flowstone: FlowStone, flowstone_url: str) -> str:
    """A queue with many completed jobs (low ids) and many waiting ones, analyzed."""
    for start in range(0, 2 * WAITING, 5000):
        flowstone.insert_all([Ok.new({"n": n}) for n in range(start, start + 5000)])
    with psycopg.connect(flowstone_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE flowstone.jobs SET state = 'completed', completed_at = now() WHERE id <= %s", [WAITING]
        )
        conn.execute("VACUUM ANALYZE flowstone.jobs")
    return flowstone_url


def explainer(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> Callable[[], Any]:
    """Prepare `statement` (psycopg's `%(name)s` style) on `conn`; return what EXPLAINs
    its plan for `params` (the generic one, on the producer's connection options)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    numbered = re.sub(r"%\((\w+)\)s", number, statement)
    conn.execute(f"PREPARE hot AS {numbered}")  # FlowStone's own text
    values = pgsql.SQL(", ").join(pgsql.Literal(params[name]) for name in names)
    explain = pgsql.SQL("EXPLAIN (FORMAT JSON) EXECUTE hot({})").format(values)
    return lambda: conn.execute(explain).fetchall()[0][0][0]["Plan"]


def generic_plan(url: str, statement: str, params: dict[str, Any]) -> dict[str, Any]:
    """The generic plan of `statement` on a producer's connection."""
    with psycopg.connect(url, options=GENERIC_PLANS) as conn:
        return explainer(conn, statement, params)()  # type: ignore[no-any-return]


def index_scans_only(plan: dict[str, Any]) -> bool:
    """Every scan of the jobs table in `plan` (below its updates) goes through an index."""
    scans = [
        node
        for node in nodes(plan)
        if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"
    ]
    return bool(scans) and all(node["Node Type"] == "Index Scan" for node in scans)


CLAIM = {
    "queue": QUEUE,
    "limit": 10,
    "claimer": ["n", "1"],
    "max_id": 2**63 - 1,
    **{"floor_priority": -1, "floor_at": "0001-01-01T00:00:00Z", "floor_id": 0},  # no floor
}


def acks(ids: range) -> dict[str, Any]:
    """The parameters of acknowledging the jobs `ids` as completed."""
    at = "2026-01-01T00:00:00Z"
    outcomes = [{"id": i, "attempt": 1, "attempted_at": at, "state": "completed"} for i in ids]
    return {"acks": Jsonb(outcomes), "ids": list(ids)}


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in nodes(child))]


@pytest.mark.parametrize("statement", ["claim", "ack_claim"])
def test_the_claim_finds_and_updates_its_rows_through_indexes(analyzed: str, statement: str) -> None:
    params = {**CLAIM, **acks(range(2 * WAITING - 9, 2 * WAITING + 1))}
    plan = generic_plan(analyzed, getattr(JobQueries.for_schema("flowstone"), statement), params)
    scans = [
        node
        for node in nodes(plan)
        if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"
    ]
    assert scans and all(node["Node Type"] == "Index Scan" for node in scans), scans
    assert plan["Plan Rows"] <= 100, "the update expects a claim's few rows, not a tenth of the table"
    [walk] = [node for node in scans if node["Index Name"] == "jobs_claim_idx"]
    assert "ROW(priority, scheduled_at, id) >=" in walk["Index Cond"], "the walk starts at the floor"


def test_a_sweep_from_a_cursor_walks_the_claimer_index_from_its_claim_time(analyzed: str) -> None:
    params = {"queue": QUEUE, "claimer": ["n", "1"], "keep": [1], "after": "2026-01-01T00:00:00Z"}
    plan = generic_plan(analyzed, JobQueries.for_schema("flowstone").release_orphans, params)
    [walk] = [node for node in nodes(plan) if node.get("Index Name") == "jobs_claimer_idx"]
    assert "attempted_at >=" in walk["Index Cond"], walk["Index Cond"]


def test_the_ack_finds_its_rows_through_the_primary_key(analyzed: str) -> None:
    ids = list(range(2 * WAITING - 9, 2 * WAITING + 1))
    acks = [
        {"id": i, "attempt": 1, "attempted_at": "2026-01-01T00:00:00Z", "state": "completed"} for i in ids
    ]
    plan = generic_plan(analyzed, JobQueries.for_schema("flowstone").ack, {"acks": Jsonb(acks), "ids": ids})
    scans = [
        node
        for node in nodes(plan)
        if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"
    ]
    assert [node["Index Name"] for node in scans] == ["jobs_pkey"], scans


def test_a_plan_made_while_the_table_was_empty_still_uses_the_indexes(flowstone_url: str) -> None:
    """A new database: the producer's first cycle plans on an empty table, and the plan is
    kept until autovacuum's first ANALYZE, however large the table grows meanwhile."""
    with psycopg.connect(flowstone_url, options=GENERIC_PLANS, autocommit=True) as conn:
        explain = explainer(
            conn, JobQueries.for_schema("flowstone").ack_claim, {**CLAIM, **acks(range(1, 11))}
        )
        assert index_scans_only(explain())
        conn.execute(
            "INSERT INTO flowstone.jobs (state, queue, worker, args)"
            " SELECT 'available', %s, 'w', '{}' FROM generate_series(1, %s)",
            [QUEUE, WAITING],
        )
        assert index_scans_only(explain()), "the plan made on the empty table is kept"
