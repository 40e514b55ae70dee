"""Hypothesis properties: backoff, unique keys, JSON args, and the state machine."""

from __future__ import annotations

import json
import math
import uuid

import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from flowstone import Cancel, Discard, Snooze, Unique, Worker
from flowstone.queue import backoff, jsonb
from flowstone.queue.job import FINAL_STATES, JobState

DB = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- backoff -----------------------------------------------------------------------------


@given(st.integers(0, 40), st.floats(0, 100), st.floats(0, 1))
def test_backoff_stays_within_its_jitter_band(attempt, base, jitter):
    mean = base + 2.0 ** min(attempt, backoff.MAX_EXPONENT)
    delay = backoff.exponential(attempt, base=base, jitter=jitter)
    assert mean * (1 - jitter) - 1e-9 <= delay <= mean * (1 + jitter) + 1e-9
    assert delay >= 0 and math.isfinite(delay)


@given(st.integers(0, 40), st.floats(0, 100), st.floats(0, 5))
def test_backoff_is_never_negative(attempt, base, jitter):
    assert backoff.exponential(attempt, base=base, jitter=jitter) >= 0


@given(st.integers(0, 39), st.floats(0, 100))
def test_backoff_mean_is_monotone(attempt, base):
    assert backoff.exponential(attempt, base=base, jitter=0) <= backoff.exponential(
        attempt + 1, base=base, jitter=0
    )


def test_backoff_default_mean_is_obans():
    assert [backoff.exponential(a, jitter=0) for a in (1, 2, 5)] == [17, 19, 47]
    with pytest.raises(ValueError):
        backoff.exponential(-1)


# -- unique keys ---------------------------------------------------------------------------

texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts
# jsonb keeps numbers as numeric: a float Python prints with an exponent >= 16 (1e300)
# comes back as the int it denotes, so floats stay within the range Python prints plainly.
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
json_args = st.dictionaries(texts, json_values, max_size=6)


@given(json_args, st.sampled_from(["worker", "queue", "args"]))
def test_equal_inputs_give_equal_keys_whatever_the_order(args, field):
    unique = Unique(fields=[field, "args"])
    shuffled = dict(reversed(list(args.items())))
    assert unique.key("w", "q", args, {}) == unique.key("w", "q", shuffled, {})


@given(json_values, json_args, json_args)
def test_keys_narrowing_ignores_other_args(to, first, second):
    unique = Unique(keys=["to"])
    a = {**first, "to": to}
    b = {**second, "to": to}
    assert unique.key("w", "q", a, {}) == unique.key("w", "q", b, {})


@given(json_values, json_values)
def test_keys_narrowing_tells_different_values_apart(one, two):
    assume(one != two)
    unique = Unique(keys=["to"])
    assert unique.key("w", "q", {"to": one}, {}) != unique.key("w", "q", {"to": two}, {})


@given(json_args)
def test_workers_and_queues_separate_keys(args):
    unique = Unique()
    assert unique.key("w1", "q", args, {}) != unique.key("w2", "q", args, {})
    assert unique.key("w", "q1", args, {}) != unique.key("w", "q2", args, {})


# -- JSON round trip -----------------------------------------------------------------------


class Keep(Worker):
    queue = "props"

    def perform(self, job):
        return None


@DB
@given(args=json_args)
def test_args_round_trip_through_the_table(flowstone, args):
    job = flowstone.insert(Keep.new(args))
    assert flowstone.get_job(job.id).args == job.args == args


def nesting(value: object) -> int:
    """How many arrays and objects deep `value` nests."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    return 0


# strings full of what a scan of the text could mistake for structure
tricky_texts = texts | st.text(alphabet='[]{}"\\, :a', max_size=8)
tricky_values = st.recursive(
    st.none() | st.integers() | tricky_texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_texts, inner, max_size=3),
    max_leaves=30,
)


@given(tricky_values, st.integers(0, 6), st.sampled_from([(", ", ": "), (",", ":")]), st.booleans())
@example(["\\", [[1]]], 2, (", ", ": "), False)  # an escaped backslash ends the string
@example(['"]]', [[1]]], 2, (", ", ": "), False)  # an escaped quote does not
def test_the_depth_read_from_the_text_is_the_depth_decoded(value, limit, separators, as_text):
    text = json.dumps(value, separators=separators, ensure_ascii=False)
    assert jsonb.nests_deeper(text if as_text else text.encode(), limit) == (nesting(value) > limit)


# -- unique with replace -----------------------------------------------------------------


class Debounce(Worker):
    queue = "props"
    unique = Unique(period=None, keys=["doc"], states="incomplete", replace=("args", "scheduled_at"))

    def perform(self, job):
        return None


changes = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3600), st.booleans()), min_size=1, max_size=12)


@DB
@given(changes=changes)
def test_replace_leaves_one_job_per_key_with_the_last_values(flowstone, changes):
    """However inserts are batched, each key ends as one job carrying its last insert."""
    run = uuid.uuid4().hex
    batch: list = []
    for n, (doc, delay, flush) in enumerate(changes):
        batch.append(Debounce.new({"doc": f"{run}-{doc}", "rev": n}, scheduled_in=delay))
        if flush:
            flowstone.insert_all(batch)
            batch = []
    flowstone.insert_all(batch)
    last = {f"{run}-{doc}": (n, delay) for n, (doc, delay, _) in enumerate(changes)}
    jobs = [job for job in flowstone.list_jobs(worker=Debounce.name, limit=1000) if job.args["doc"] in last]
    assert sorted(job.args["doc"] for job in jobs) == sorted(last)
    for job in jobs:
        rev, delay = last[job.args["doc"]]
        assert job.args["rev"] == rev and job.state == "scheduled"
        assert abs((job.scheduled_at - job.inserted_at).total_seconds() - delay) < 60


# -- the state machine ---------------------------------------------------------------------

STEPS = ["complete", "raise", "snooze", "discard", "cancel"]


class Scripted(Worker):
    """Follows the script in its args, one step per execution (then completes)."""

    queue = "script"

    def perform(self, job):
        done = job.attempt - 1 + job.meta.get("snoozed", 0)
        step = job.args["script"][done] if done < len(job.args["script"]) else "complete"
        if step == "raise":
            raise RuntimeError(f"step {done}")
        return {"snooze": Snooze(1), "discard": Discard("d"), "cancel": Cancel("c")}.get(step)


ALLOWED = {
    (JobState.EXECUTING, JobState.COMPLETED),
    (JobState.EXECUTING, JobState.RETRYABLE),
    (JobState.EXECUTING, JobState.DISCARDED),
    (JobState.EXECUTING, JobState.CANCELLED),
    (JobState.EXECUTING, JobState.SCHEDULED),
}


def model(script: list[str], max_attempts: int) -> tuple[JobState, int, int, int]:
    """Expected final (state, attempt, errors, snoozes) of a script."""
    attempt = errors = snoozes = 0
    for step in [*script, "complete"]:
        attempt += 1
        if step == "snooze":
            attempt -= 1
            snoozes += 1
            continue
        if step == "complete":
            return JobState.COMPLETED, attempt, errors, snoozes
        errors += 1
        if step == "discard" or (step == "raise" and attempt >= max_attempts):
            return JobState.DISCARDED, attempt, errors, snoozes
        if step == "cancel":
            return JobState.CANCELLED, attempt, errors, snoozes
    raise AssertionError("unreachable")


@DB
@given(script=st.lists(st.sampled_from(STEPS), max_size=8), max_attempts=st.integers(1, 4))
def test_state_machine_follows_the_design(flowstone, engine, script, max_attempts):
    job = flowstone.insert(Scripted.new({"script": script}, max_attempts=max_attempts))
    state = JobState.AVAILABLE
    for _ in range(len(script) + 2):
        engine.stage(until="infinity", queue="script")
        [claimed] = engine.claim("script")
        assert claimed.id == job.id and claimed.state == JobState.EXECUTING
        assert engine.ack(engine.run_jobs([claimed])) == {job.id}
        row = flowstone.get_job(job.id)
        assert (JobState.EXECUTING, row.state) in ALLOWED
        assert 0 <= row.attempt <= row.max_attempts == max_attempts
        state = row.state
        if state in FINAL_STATES:
            break
    expected_state, attempt, errors, snoozes = model(script, max_attempts)
    assert (state, row.attempt, len(row.errors), row.meta.get("snoozed", 0)) == (
        expected_state,
        attempt,
        errors,
        snoozes,
    )
    assert [e["attempt"] for e in row.errors] == sorted(e["attempt"] for e in row.errors)
    assert engine.claim("script") == []
