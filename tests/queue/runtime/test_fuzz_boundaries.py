"""Fuzzing what crosses a node's boundaries, through a real node on a real database: job
outcomes (error text, discard reasons, snooze values, hostile exceptions, broken
backoffs), control payloads, and rows written with SQL by another producer.

The invariant every time: the node stays up, every job ends in a final or retryable
state (none stays `executing`), and ordinary jobs keep running. Each Hypothesis example
runs on a database of its own, so a failure reproduces from its example alone (a job one
example left retryable would otherwise run during the next, with the next's behaviours).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from psycopg.types.json import Jsonb
from support import rows, wait_for

from flowstone import Cancel, Discard, FlowStone, Job, Snooze, Worker, WorkerRegistry
from flowstone.testing.pytest_plugin import cloned_database

QUEUE = "fuzz"
SETTLED = ("completed", "discarded", "cancelled", "retryable", "scheduled")
FAST = {"poll_interval": 0.2, "stage_interval": 0.05, "heartbeat_interval": 0.1, "shutdown_grace": 1.0}
FUZZ = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
Fresh = Callable[[], AbstractContextManager[str]]

# What a fuzzed job does, by the key in its args (the registry is this module's state).
behaviours: dict[str, Callable[[Job], Any]] = {}


class HostileError(Exception):
    """An exception whose message cannot even be turned into text."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class Fuzzed(Worker):
    register = False
    queue = QUEUE
    max_attempts = 2

    def perform(self, job: Job) -> Any:
        return behaviours[job.args["key"]](job)

    def backoff(self, job: Job) -> float:
        return behaviours[job.args["key"] + ".backoff"](job)  # type: ignore[no-any-return]


class AsyncFuzzed(Fuzzed):
    register = False

    async def perform(self, job: Job) -> Any:
        return behaviours[job.args["key"]](job)


class Plain(Worker):
    register = False
    queue = QUEUE

    async def perform(self, job: Job) -> None:
        return None


REGISTRY = WorkerRegistry()
for worker in (Fuzzed, AsyncFuzzed, Plain):
    REGISTRY.register(worker)

nasty_text = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["\x00", "nul\x00inside", "\ud800", "lone \udfff surrogate", "\u202e", "x" * 20_000]),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([1e13, 1e300, -1.0, 0.0]),
)


def _raise(error: BaseException) -> Callable[[Job], Any]:
    def perform(job: Job) -> Any:
        raise error

    return perform


def _return(value: Any) -> Callable[[Job], Any]:
    return lambda job: value


def _snooze(seconds: Any) -> Callable[[Job], Any]:
    return lambda job: Snooze(seconds)  # may itself raise: then the job fails


outcome = st.one_of(
    nasty_text.map(lambda text: _return(Discard(text))),
    nasty_text.map(lambda text: _return(Cancel(text))),
    numbers.map(_snooze),
    nasty_text.map(lambda text: _raise(RuntimeError(text))),
    st.just(_raise(HostileError())),
    st.sampled_from([GeneratorExit, KeyboardInterrupt, SystemExit, StopIteration]).map(lambda e: _raise(e())),
    st.one_of(nasty_text, numbers, st.just({"a": 1})).map(_return),
)
backoff = st.one_of(
    numbers.map(_return), st.just(_raise(ValueError("bad backoff"))), st.just(_return("soon"))
)


# What a previous example would have left behind: its jobs, its node.
CLEAN = "SELECT (SELECT count(*) FROM flowstone.jobs) AS jobs, (SELECT count(*) FROM flowstone.nodes) AS n"


async def _settled(fs: FlowStone, ids: list[int]) -> bool:
    found = await rows(fs, "SELECT state::text FROM flowstone.jobs WHERE id = ANY(%s)", [ids])
    return len(found) == len(ids) and all(row["state"] in SETTLED for row in found)


@pytest.fixture
def fresh(flowstone_server_url: str, flowstone_template: str) -> Fresh:
    """A new database per call (per Hypothesis example), dropped when the example ends."""
    return partial(cloned_database, flowstone_server_url, flowstone_template)


def run_node(fresh: Fresh, body: Callable[[FlowStone], Any]) -> None:
    """Run `body` beside a node, on a database of its own."""
    with fresh() as url:
        anyio.run(_run_node, url, body)


async def _run_node(url: str, body: Callable[[FlowStone], Any]) -> None:
    fs = FlowStone(url, registry=REGISTRY, node="fuzz", **FAST)
    try:
        assert await rows(fs, CLEAN) == [{"jobs": 0, "n": 0}], "an example starts from a clean state"
        node = await fs.start({QUEUE: 4})
        await body(fs)
        ordinary = await fs.ainsert(Plain.new({}))
        await wait_for(lambda: _settled(fs, [ordinary.id]), timeout=10, message="an ordinary job after")
        assert not node.stopped.is_set(), "the node is still running"
    finally:
        await fs.stop()
        await fs.aclose()


@FUZZ
@given(cases=st.lists(st.tuples(outcome, backoff, st.booleans()), min_size=1, max_size=12))
def test_no_outcome_takes_the_node_down(fresh: Fresh, cases: list[tuple[Any, Any, bool]]) -> None:
    async def body(fs: FlowStone) -> None:
        jobs = []
        for n, (perform, delay, is_async) in enumerate(cases):
            behaviours[f"k{n}"], behaviours[f"k{n}.backoff"] = perform, delay
            jobs.append((AsyncFuzzed if is_async else Fuzzed).new({"key": f"k{n}"}))
        inserted = await fs.ainsert_all(jobs)
        ids = [job.id for job in inserted]
        await wait_for(lambda: _settled(fs, ids), timeout=15, message="every fuzzed job to settle")
        for row in await rows(fs, "SELECT errors FROM flowstone.jobs WHERE id = ANY(%s)", [ids]):
            for entry in row["errors"]:
                assert "\x00" not in entry["error"] and len(entry["error"]) <= 10_100

    run_node(fresh, body)


storable_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(storable_text, inner, max_size=4),
    max_leaves=12,
)
signal = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"action": st.sampled_from(["cancel", "pause", "resume", "scale", "nope"]) | json_values},
        optional={
            "queue": st.just(QUEUE) | json_values,
            "limit": json_values | st.integers(-5, 5),
            "job_id": json_values,
            "paused": json_values,
            "node": st.just("*") | json_values,
        },
    ),
)


@FUZZ
@given(payloads=st.lists(signal, min_size=1, max_size=8))
def test_no_control_payload_takes_the_node_down(fresh: Fresh, payloads: list[Any]) -> None:
    async def body(fs: FlowStone) -> None:
        async with fs.aconnection() as conn:
            for payload in payloads:
                text = json.dumps(payload)[:7000]
                await conn.execute("SELECT pg_notify('flowstone.control', %s)", [text])
            await conn.execute("SELECT pg_notify('flowstone.control', 'not json at all {')")
        await fs.aresume_queue(QUEUE)  # a valid signal behind them resumes whatever was paused
        await fs.ascale_queue(QUEUE, 4)

    run_node(fresh, body)


hostile_rows = st.fixed_dictionaries(
    {
        "args": st.dictionaries(storable_text, json_values, max_size=6),
        "tags": st.lists(storable_text, max_size=5),
        "depth": st.sampled_from([0, 0, 50, 5000]),
        "worker": st.sampled_from([Plain.name, "no.such.Worker"]),
        "priority": st.integers(0, 9),
    }
)


@FUZZ
@given(written=st.lists(hostile_rows, min_size=1, max_size=10))
def test_no_row_written_with_sql_takes_the_node_down(fresh: Fresh, written: list[dict[str, Any]]) -> None:
    behaviours["absent"] = _return(None)

    async def body(fs: FlowStone) -> None:
        ids = []
        async with fs.aconnection() as conn:
            for row in written:
                depth = row["depth"]
                cursor = await conn.execute(
                    "INSERT INTO flowstone.jobs (queue, worker, args, tags, priority) VALUES (%s, %s,"
                    " CASE WHEN %s > 0 THEN (repeat('{\"a\": ', %s) || '1' || repeat('}', %s))::jsonb"
                    " ELSE %s END, %s, %s) RETURNING id",
                    [
                        QUEUE,
                        row["worker"],
                        depth,
                        depth,
                        depth,
                        Jsonb(row["args"]),
                        row["tags"],
                        row["priority"],
                    ],
                )
                found = await cursor.fetchone()
                assert found is not None
                ids.append(found[0])
        await wait_for(lambda: _settled(fs, ids), timeout=15, message="every written row to settle")

    run_node(fresh, body)


KILLERS = {  # each of these once made the ack+claim statement fail and the node exit
    "nul in a discard reason": (_return(Discard("a\x00b")), _return(1.0)),
    "lone surrogate in a reason": (_return(Discard("\ud800")), _return(1.0)),
    "snooze of 1e13 s": (_return(Snooze(1e13)), _return(1.0)),
    "snooze of infinity": (_snooze(float("inf")), _return(1.0)),
    "nul in an error": (_raise(RuntimeError("x\x00y")), _return(1.0)),
    "hostile __str__": (_raise(HostileError()), _return(1.0)),
    "backoff raising": (_raise(RuntimeError("boom")), _raise(ValueError("bad backoff"))),
    "backoff infinite": (_raise(RuntimeError("boom")), _return(float("inf"))),
    "sync GeneratorExit": (_raise(GeneratorExit()), _return(1.0)),
}


@pytest.mark.parametrize("name", sorted(KILLERS))
def test_the_outcomes_that_once_killed_nodes_are_recorded(flowstone_url: str, name: str) -> None:
    perform, delay = KILLERS[name]
    behaviours["killer"], behaviours["killer.backoff"] = perform, delay

    async def body(fs: FlowStone) -> None:
        job = await fs.ainsert(Fuzzed.new({"key": "killer"}))
        await wait_for(lambda: _settled(fs, [job.id]), timeout=10, message=name)
        found = await fs.aget_job(job.id)
        assert found is not None and found.state != "executing"
        if found.scheduled_at is not None:
            assert found.scheduled_at.year < 2100, "delays are clamped to a storable time"

    anyio.run(_run_node, flowstone_url, body)
