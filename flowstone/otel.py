"""OpenTelemetry for FlowStone (`pip install 'flowstone[otel]'`): spans and metrics.

    import flowstone.otel
    flowstone.otel.instrument(fs)          # once, at start-up; returns its undo

- A span per insert (`flowstone insert`, kind PRODUCER) and per execution
  (`flowstone job <worker>`, kind CONSUMER). The inserting code's trace context travels in
  the job's meta (`trace_context`), so a web request and the job it enqueued are one
  trace; the execution span is current while `perform` runs (in a sync job's thread too),
  so spans the job starts are its children.
- Attributes: `messaging.system` = flowstone, `messaging.destination.name` (the queue),
  `flowstone.worker`, `flowstone.job.id`, `flowstone.job.attempt`, `flowstone.job.state`
  (the outcome).
- Metrics: `flowstone.jobs` (counter by queue, worker, state), `flowstone.job.duration`
  and `flowstone.job.queue_time` (histograms, s), and, given an instance, the gauges
  `flowstone.queue.depth` (jobs by queue and state) and `flowstone.materializations`
  (asset partitions by latest status), read through `flowstone.insights` when the
  metric reader collects.

Built on FlowStone's own telemetry events (see `flowstone.queue.telemetry`); it uses the
globally configured tracer and meter providers unless given others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextvars import Token
from dataclasses import replace
from typing import Any

try:
    from opentelemetry import context, metrics, propagate, trace
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError("flowstone.otel needs OpenTelemetry: pip install 'flowstone[otel]'") from missing

from flowstone.queue import telemetry
from flowstone.queue.instance import FlowStone
from flowstone.queue.job import Job
from flowstone.queue.worker import NewJob

TRACE_KEY = "trace_context"
SCOPE = "flowstone"


class _Instrumentation:
    """The handlers `instrument` attaches, with the spans in flight."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self.tracer = tracer
        self.jobs = meter.create_counter("flowstone.jobs", description="Job executions by outcome")
        self.duration = meter.create_histogram("flowstone.job.duration", unit="s", description="perform time")
        self.queue_time = meter.create_histogram(
            "flowstone.job.queue_time", unit="s", description="From scheduled to started"
        )
        self.spans: dict[int, tuple[trace.Span, Token[context.Context]]] = {}
        self.inserts: list[tuple[trace.Span, Token[context.Context]]] = []

    # -- inserting ---------------------------------------------------------------------

    def insert_started(self, event: str, measurements: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        span = self.tracer.start_span("flowstone insert", kind=trace.SpanKind.PRODUCER)
        span.set_attribute("messaging.system", "flowstone")
        span.set_attribute("messaging.batch.message_count", int(measurements["count"]))
        span.set_attribute("flowstone.queues", list(meta["queues"]))
        self.inserts.append((span, context.attach(trace.set_span_in_context(span))))

    def insert_ended(self, event: str, measurements: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        if not self.inserts:
            return
        span, token = self.inserts.pop()
        context.detach(token)
        _end(span, meta.get("error"))

    @staticmethod
    def carry_context(job: NewJob) -> NewJob:
        """The job with the current trace context in its meta."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return replace(job, meta={**job.meta, TRACE_KEY: carrier}) if carrier else job

    # -- executing ---------------------------------------------------------------------

    def job_started(self, event: str, measurements: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        job: Job = meta["job"]
        parent = propagate.extract(job.meta.get(TRACE_KEY) or {})
        span = self.tracer.start_span(
            f"flowstone job {job.worker}", context=parent, kind=trace.SpanKind.CONSUMER
        )
        for key, value in _attributes(job).items():
            span.set_attribute(key, value)
        self.spans[id(job)] = (span, context.attach(trace.set_span_in_context(span)))

    def job_ended(self, event: str, measurements: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        job: Job = meta["job"]
        labels = {"queue": job.queue, "worker": job.worker, "state": str(meta["state"])}
        self.jobs.add(1, labels)
        self.duration.record(measurements["duration"], {"queue": job.queue, "worker": job.worker})
        self.queue_time.record(measurements["queue_time"], {"queue": job.queue})
        found = self.spans.pop(id(job), None)
        if found is None:
            return
        span, token = found
        context.detach(token)
        span.set_attribute("flowstone.job.state", str(meta["state"]))
        _end(span, meta.get("error"))


def _attributes(job: Job) -> dict[str, Any]:
    return {
        "messaging.system": "flowstone",
        "messaging.destination.name": job.queue,
        "flowstone.worker": job.worker,
        "flowstone.job.id": job.id,
        "flowstone.job.attempt": job.attempt,
    }


def _end(span: trace.Span, error: object) -> None:
    if isinstance(error, BaseException):
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
    span.end()


def _gauges(meter: metrics.Meter, fs: FlowStone) -> None:
    from flowstone.insights import Insights  # the read layer, loaded only when gauges are asked for

    insights = Insights(fs)

    def depth(options: CallbackOptions) -> Iterable[Observation]:
        for queue in insights.overview().queues:
            for state, count in queue.counts.items():
                yield Observation(count, {"queue": queue.queue, "state": state})

    def materializations(options: CallbackOptions) -> Iterable[Observation]:
        for overview in insights.assets():
            for status, count in overview.counts.items():
                yield Observation(count, {"asset": overview.asset.name, "status": status})

    meter.create_observable_gauge("flowstone.queue.depth", [depth], description="Jobs by queue and state")
    meter.create_observable_gauge(
        "flowstone.materializations", [materializations], description="Asset partitions by status"
    )


def instrument(
    fs: FlowStone | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Callable[[], None]:
    """Start tracing and measuring FlowStone in this process; returns the function that
    stops it. With `fs`, also observe its queue depth and materializations."""
    tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
    meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
    hooks = _Instrumentation(tracer, meter)
    if fs is not None:
        _gauges(meter, fs)
    undo = [
        telemetry.attach("insert.start", hooks.insert_started),
        telemetry.attach("insert.stop", hooks.insert_ended),
        telemetry.attach("insert.exception", hooks.insert_ended),
        telemetry.add_preparer(hooks.carry_context),
        telemetry.attach("job.start", hooks.job_started),
        telemetry.attach("job.stop", hooks.job_ended),
        telemetry.attach("job.exception", hooks.job_ended),
    ]

    def uninstrument() -> None:
        for remove in undo:
            remove()

    return uninstrument
