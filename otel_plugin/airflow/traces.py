"""Spans: one trace per DAG run, a root span for the run and one child span per task try.

Each span is emitted once, when its subject ends, with the real start and end times and ids derived from
the run (``ids``), so the scheduler and every worker process write into the same trace without sharing
state.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes

from otel_plugin.airflow.model import DagRunInfo, TaskRun, TraceRef
from otel_plugin.core import contract
from otel_plugin.core.errors import ErrorInfo
from otel_plugin.core.pipeline import forced_ids


def _ns(value: dt.datetime | None) -> int | None:
    return int(value.timestamp() * 1e9) if value else None


def _remote_parent(trace_id: int, span_id: int) -> Context:
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def span_context(trace_id: int, span_id: int) -> Context:
    """A context holding the given span, for log records and exemplars that must carry our ids."""
    return _remote_parent(trace_id, span_id)


def task_context(run: TaskRun) -> Context:
    return span_context(run.trace.trace_id, run.span_id)


def _span_attributes(attrs: dict[str, object]) -> Attributes:
    # Spans carry the same fields as the events, minus their own ids (the span already is them).
    # The builders already reduced every value to an OTel attribute type (sanitize.attribute_value).
    return cast(Attributes, {k: v for k, v in attrs.items() if k not in ("trace_id", "span_id", "event")})


def emit_task_span(tracer: trace.Tracer, run: TaskRun, attrs: dict[str, object], error: ErrorInfo | None) -> None:
    start = _ns(run.start) or _ns(run.end)
    with forced_ids(span_id=run.span_id):
        span = tracer.start_span(
            contract.SPAN_TASK.format(task_id=run.task_id),
            context=_remote_parent(run.trace.trace_id, run.trace.root_span_id),
            kind=SpanKind[contract.SPAN_KIND_TASK],
            attributes=_span_attributes(attrs),
            start_time=start,
        )
    _finish(span, run.state, error, _ns(run.end) or start)


def emit_root_span(tracer: trace.Tracer, info: DagRunInfo, attrs: dict[str, object]) -> None:
    ref: TraceRef = info.trace
    start = _ns(info.start) or _ns(info.end)
    # Under Airflow's own dag_run span when its tracing is on; otherwise the trace's root.
    parent = _remote_parent(ref.trace_id, ref.airflow_parent_span_id) if ref.airflow_parent_span_id else Context()
    with forced_ids(trace_id=ref.trace_id, span_id=ref.root_span_id):
        span = tracer.start_span(
            contract.SPAN_DAG_RUN.format(dag_id=info.dag_id),
            context=parent,
            kind=SpanKind[contract.SPAN_KIND_DAG_RUN],
            attributes=_span_attributes(attrs),
            start_time=start,
        )
    _finish(span, info.state, None, _ns(info.end) or start)


def _finish(span: trace.Span, state: str | None, error: ErrorInfo | None, end: int | None) -> None:
    status = contract.STATE[state].span_status if state in contract.STATE else "UNSET"
    if status == "ERROR":
        span.set_status(Status(StatusCode.ERROR, error.type if error else state))
        if error:
            span.add_event("exception", {
                "exception.type": error.type,
                "exception.message": error.message,
                **({"exception.stacktrace": error.stacktrace} if error.stacktrace else {}),
            })
    elif status == "OK":
        span.set_status(Status(StatusCode.OK))
    span.end(end_time=end)
