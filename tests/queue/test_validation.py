"""Bad input: clear errors at insert, and rows that can never run discarded with a reason."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from types import MappingProxyType

import pydantic
import pytest
from psycopg.types.json import Jsonb

from flowstone import Worker
from flowstone.queue.worker import NewJob
from flowstone.testing import drain_queue

QUEUE = "validation"


class Plain(Worker):
    queue = QUEUE

    def perform(self, job):
        return None


class Email(pydantic.BaseModel):
    to: str
    retries: int = 0


class Typed(Worker):
    queue = QUEUE
    args_model = Email
    ran: list = []

    def perform(self, job):
        Typed.ran.append(Typed.parse_args(job.args))


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"when": datetime(2025, 1, 1)}, "args.when"),
        ({"a": {"b": {1, 2}}}, "args.a.b"),
        ({"a": [1, 2, object()]}, r"args.a\[2\]"),
        ({"x": float("nan")}, "args.x"),
        ({"a": {3: "int key"}}, "args.a"),
        ({"s": "nul\x00byte"}, "args.s"),
        ({"s": ["\ud800"]}, r"args.s\[0\]"),
        ({"s": "é\ud800"}, "args.s"),  # not ASCII: the slow check finds the lone surrogate
        ({"k\x00": 1}, "args key"),
        ({"d": date.today()}, "args.d"),
        ({"m": MappingProxyType({"b": object()})}, "args.m.b"),
    ],
)
def test_args_that_json_cannot_carry_name_the_key_path(args, path):
    with pytest.raises(TypeError, match=rf"^{path} "):
        Plain.new(args)


def nested(depth: int) -> dict:
    """`depth` objects, one inside the other."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [201, 600, 5000])
def test_args_nested_too_deep_name_the_field_with_a_clear_error(depth):
    with pytest.raises(ValueError, match=r"^args\.a\.a.* nests deeper than 200 levels$"):
        Plain.new(nested(depth))
    assert Plain.new(nested(200)).args == nested(200)


def deep_row(sql, args: int = 1, meta: int = 1) -> int:
    """A job written with SQL whose args and meta nest `args` and `meta` objects deep."""
    return sql(
        "INSERT INTO flowstone.jobs (queue, worker, args, meta) VALUES (%(queue)s, %(worker)s,"
        " (repeat('{\"a\": ', %(args)s) || '{}' || repeat('}', %(args)s))::jsonb,"
        " (repeat('{\"a\": ', %(meta)s) || '{}' || repeat('}', %(meta)s))::jsonb) RETURNING id",
        {"queue": QUEUE, "worker": Plain.name, "args": args - 1, "meta": meta - 1},
    )[0]["id"]


def test_rows_nested_deeper_than_the_limit_are_discarded_alike_on_every_python(flowstone, sql):
    """Another producer may write any jsonb with SQL: a node reads what `Worker.new` could
    have written (200 levels) and discards anything deeper with one error, found from the
    text, whether or not this interpreter's decoder could have followed it."""
    deep = {depth: deep_row(sql, args=depth) for depth in (201, 3000)}
    deep_meta = deep_row(sql, meta=201)
    at_limit = deep_row(sql, args=200, meta=200)
    fine = flowstone.insert(Plain.new({}))
    result = drain_queue(QUEUE)
    assert (result.discarded, result.completed) == (3, 2)
    for depth, job_id in deep.items():
        row = flowstone.get_job(job_id)
        assert row is not None and row.state == "discarded"
        assert row.errors[0]["error"] == (
            "the job's args cannot be decoded: it nests deeper than 200 levels"
            f" ({7 * depth - 5} bytes of JSON); a node reads JSON nested at most 200 levels deep,"
            " as Worker.new writes it"
        )
    meta_row = flowstone.get_job(deep_meta)
    assert meta_row is not None and meta_row.errors[0]["error"].startswith("the job's meta cannot be decoded")
    assert [flowstone.get_job(i).state for i in (at_limit, fine.id)] == ["completed", "completed"]


def test_meta_is_checked_too():
    with pytest.raises(TypeError, match=r"meta\.k"):
        Plain.new({}, meta={"k": b"bytes"})


def test_any_mapping_is_copied_into_a_dict():
    job = Plain.new(MappingProxyType({"m": MappingProxyType({"b": (1, 2)})}))
    assert type(job.args) is dict and type(job.args["m"]) is dict and job.args == {"m": {"b": [1, 2]}}


def test_worker_new_builds_the_same_frozen_job_as_its_constructor():
    job = Plain.new({"a": 1}, priority=2, tags=["t"], scheduled_in=5)
    fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(NewJob)}
    assert job == NewJob(**fields) and fields["priority"] == 2 and fields["tags"] == ("t",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.priority = 3  # type: ignore[misc]


def test_args_must_be_a_mapping():
    with pytest.raises(TypeError, match="args must be a mapping"):
        Plain.new([1, 2])


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": True}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue": ""}, "queue"),
        ({"queue": "   "}, "queue"),
        ({"queue": "q" * 200}, "queue"),
        ({"scheduled_in": -1}, "scheduled_in"),
        ({"scheduled_at": datetime(2030, 1, 1)}, "scheduled_at"),
        ({"tags": "notalist"}, "tags"),
        ({"tags": ["ok", "nul\x00"]}, r"tags\[1\] has a NUL"),
        ({"queue": "nul\x00queue"}, "queue has a NUL"),
        ({"queue": "\udc80"}, "queue has a NUL or lone surrogate"),
    ],
)
def test_bad_options_raise_value_error_naming_the_field(options, field):
    with pytest.raises(ValueError, match=field):
        Plain.new({}, **options)


@pytest.mark.parametrize(("attribute", "value"), [("priority", 10), ("max_attempts", 0), ("queue", "")])
def test_bad_worker_defaults_fail_at_definition(attribute, value):
    with pytest.raises(ValueError, match=attribute):
        type("Bad", (Worker,), {attribute: value, "register": False})


def test_args_model_validates_at_insert():
    assert Typed.new({"to": "a@b"}).args == {"to": "a@b", "retries": 0}
    assert Typed.new(Email(to="x@y", retries=2)).args == {"to": "x@y", "retries": 2}
    with pytest.raises(pydantic.ValidationError):
        Typed.new({"retries": "many"})


def insert_raw(sql, worker: str, args: dict) -> int:
    rows = sql(
        "INSERT INTO flowstone.jobs (queue, worker, args) VALUES (%s, %s, %s) RETURNING id",
        [QUEUE, worker, Jsonb(args)],
    )
    return rows[0]["id"]


def test_unregistered_worker_is_discarded_and_kept(flowstone, sql):
    missing = insert_raw(sql, "os.system", {"cmd": "true"})
    fine = flowstone.insert(Plain.new({}))
    result = drain_queue(QUEUE)
    assert (result.discarded, result.completed) == (1, 1)
    row = flowstone.get_job(missing)
    assert row is not None and row.state == "discarded"
    assert "'os.system' is not registered" in row.errors[0]["error"]
    assert flowstone.get_job(fine.id).state == "completed"


def test_args_failing_the_model_at_execution_are_discarded(flowstone, sql):
    Typed.ran.clear()
    bad = insert_raw(sql, Typed.name, {"retries": "many"})
    good = flowstone.insert(Typed.new({"to": "a@b"}))
    result = drain_queue(QUEUE)
    assert (result.discarded, result.completed) == (1, 1)
    row = flowstone.get_job(bad)
    assert row.state == "discarded" and row.attempt == 1
    assert "args do not match Typed's args_model" in row.errors[0]["error"]
    assert "to" in row.errors[0]["error"]
    assert Typed.ran == [Email(to="a@b")] and flowstone.get_job(good.id).state == "completed"


def test_check_constraints_guard_plain_sql(flowstone, sql):
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        sql("INSERT INTO flowstone.jobs (worker, priority) VALUES ('w', 10)")
    with pytest.raises(psycopg.errors.CheckViolation):
        sql("INSERT INTO flowstone.jobs (worker, queue) VALUES ('w', '')")
