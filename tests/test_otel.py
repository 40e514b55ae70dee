"""OpenTelemetry: one trace from the inserting code through the job's execution, spans for
inserts and executions with their attributes and errors, metrics, all checked with the
SDK's in-memory exporters against a real database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowstone import FlowStone, Job, Unique, Worker
from flowstone.otel import instrument
from flowstone.testing import drain_queue

QUEUE = "traced"
tracer_provider = TracerProvider()
spans = InMemorySpanExporter()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
request_tracer = tracer_provider.get_tracer("the web app")


class Traced(Worker):
    queue = QUEUE
    max_attempts = 1

    def perform(self, job: Job) -> None:  # sync: its thread sees the job's span
        with request_tracer.start_as_current_span("inside the job"):
            if job.args.get("fail"):
                raise RuntimeError("boom")


@pytest.fixture
def instrumented(flowstone: FlowStone) -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    spans.clear()
    undo = instrument(
        flowstone, tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    yield reader
    undo()


def named(name: str) -> Any:
    [found] = [span for span in spans.get_finished_spans() if span.name == name]
    return found


def test_a_request_and_the_job_it_enqueued_are_one_trace(flowstone: FlowStone, instrumented: Any) -> None:
    with request_tracer.start_as_current_span("POST /signup") as request:
        job = flowstone.insert(Traced.new({"to": "a@b"}))
    assert "traceparent" in job.meta["trace_context"]
    assert drain_queue(QUEUE).completed == 1
    insert, execution, inner = (
        named("flowstone insert"),
        named(f"flowstone job {Traced.name}"),
        named("inside the job"),
    )
    trace_id = request.get_span_context().trace_id
    assert {insert.context.trace_id, execution.context.trace_id, inner.context.trace_id} == {trace_id}
    assert insert.parent.span_id == request.get_span_context().span_id
    assert execution.parent.span_id == insert.context.span_id
    assert inner.parent.span_id == execution.context.span_id
    assert execution.kind == trace.SpanKind.CONSUMER and insert.kind == trace.SpanKind.PRODUCER
    assert execution.attributes["messaging.destination.name"] == QUEUE
    assert execution.attributes["flowstone.job.id"] == job.id
    assert execution.attributes["flowstone.job.state"] == "completed"


def test_a_failing_job_ends_its_span_in_error_and_is_counted(flowstone: FlowStone, instrumented: Any) -> None:
    flowstone.insert_all([Traced.new({"fail": True}), Traced.new({})])
    assert drain_queue(QUEUE).discarded == 1
    executions = [s for s in spans.get_finished_spans() if s.name.startswith("flowstone job")]
    failed = [s for s in executions if s.attributes["flowstone.job.state"] == "discarded"]
    assert len(executions) == 2 and len(failed) == 1
    assert failed[0].status.status_code == trace.StatusCode.ERROR
    assert failed[0].events[0].attributes["exception.message"] == "boom"
    points = metric_points(instrumented, "flowstone.jobs")
    assert {p.attributes["state"]: p.value for p in points} == {"completed": 1, "discarded": 1}
    depth = {p.attributes["state"]: p.value for p in metric_points(instrumented, "flowstone.queue.depth")}
    assert depth["completed"] == 1 and depth["discarded"] == 1 and depth["available"] == 0


def test_the_trace_context_does_not_change_uniqueness(flowstone: FlowStone, instrumented: Any) -> None:
    unique = Unique(period=None, fields=("worker", "queue", "args", "meta"))
    with request_tracer.start_as_current_span("first"):
        first = flowstone.insert(Traced.new({"n": 1}, meta={"k": 1}, unique=unique))
    with request_tracer.start_as_current_span("second"):
        second = flowstone.insert(Traced.new({"n": 1}, meta={"k": 1}, unique=unique))
    assert second.conflict and second.id == first.id


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]
