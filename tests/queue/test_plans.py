"""The hot path's statements keep index plans under the producer's generic plans
(`plan_cache_mode = force_generic_plan`), on a table the planner has statistics for."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb
from test_manage import QUEUE, Ok

from flowstone import FlowStone
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


def generic_plan(url: str, statement: str, params: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN the generic plan of a prepared `statement` (psycopg's `%(name)s` style)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", number, statement)
    with psycopg.connect(url, options="-c plan_cache_mode=force_generic_plan") as conn:
        conn.execute(f"PREPARE hot AS {prepared}")  # the statement is FlowStone's own text
        values = pgsql.SQL(", ").join(pgsql.Literal(params[name]) for name in names)
        explain = pgsql.SQL("EXPLAIN (FORMAT JSON) EXECUTE hot({})").format(values)
        [[plan]] = conn.execute(explain).fetchall()
    return plan[0]["Plan"]  # type: ignore[no-any-return]


CLAIM = {"queue": QUEUE, "limit": 10, "claimer": ["n", "1"], "max_id": 2**63 - 1}


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
