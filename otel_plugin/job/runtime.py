"""The job side's per-process state: run context from the environment, private pipeline, job span and event.

Created on first use (and anew in a forked child). At exit (``atexit``, or ``finish()`` from the CLI) it
ends the job's span, writes the job's event and flushes everything within the flush budget; what the
Collector does not take waits in the spool. Nothing here imports Airflow or reads airflow.cfg: settings come
from the environment ``otel_plugin.api.job_env()`` built (``AIRFLOW__OTEL_PLUGIN__*``, ``OTEL_*``).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes

from otel_plugin.core import config, contract, errors, process
from otel_plugin.core import custom_metrics as cm
from otel_plugin.core.otel_compat import emit_log
from otel_plugin.core.pipeline import Pipeline
from otel_plugin.core.runcontext import RunContext
from otel_plugin.core.sanitize import attribute_value, bound_attributes, clean_text, safe_str

log = logging.getLogger(__name__)

_current_span: ContextVar[trace.Span | None] = ContextVar("otel_plugin_job_span", default=None)
_KEY_CHARS = 64


def _process_start_ns() -> int:
    """When this process started (Linux /proc), so the job span covers its whole life; else now."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return int((boot + ticks / os.sysconf("SC_CLK_TCK")) * 1e9)
    except Exception:
        return time.time_ns()


def _resource(cfg: config.PluginConfig) -> Resource:
    """This process's resource, without the run context's resource attributes.

    ``job_env()`` puts the run's ids into OTEL_RESOURCE_ATTRIBUTES for other SDKs; here dag_id and task_id
    are data point attributes, and the resource equals the task processes' one, so the job's points fall
    into the same Collector streams as the task's without relying on the Collector's resource rewriting.
    """
    created = Resource.create({"service.name": cfg.service_name, "service.instance.id": str(uuid.uuid4())})
    drop = set(contract.RESOURCE_CONTEXT_KEYS)
    return Resource({k: v for k, v in created.attributes.items() if k not in drop}, created.schema_url)


class JobRuntime:
    """Everything one job process records into its task's run."""

    def __init__(self, context: RunContext | None, cfg: config.PluginConfig | None, name: str,
                 pipe: Pipeline | None = None) -> None:
        """``pipe`` defaults to one exporting over OTLP (tests pass one with in-memory exporters)."""
        self.context = context
        self.name = name
        if pipe is None and cfg is not None and cfg.enabled:
            pipe = Pipeline(cfg, resource=_resource(cfg))
        self.pipe = pipe
        self.start_ns = _process_start_ns()
        self.facts: dict[str, object] = {}
        self.pushed: dict[str, float] = {}  # push_to_collector: counter totals sent, per metric
        self.error: errors.ErrorInfo | None = None
        self.used = False
        self.finished = False
        self._span: trace.Span | None = None
        self._lock = threading.Lock()

    # --- what the job records -------------------------------------------------------------------------
    def target(self) -> cm.Target | None:
        if self.context is None or self.pipe is None or self.pipe.meter is None:
            return None
        self.used = True
        return cm.Target(self.pipe.meter, self.context, self.set_fact)

    def set_fact(self, key: str, value: object) -> None:
        with self._lock:
            self.used = True
            self.facts[safe_str(key)[:_KEY_CHARS]] = attribute_value(value)

    def add_pushed(self, name: str, value: float) -> None:
        with self._lock:
            self.used = True
            self.pushed[name] = self.pushed.get(name, 0) + value

    def job_span(self) -> trace.Span | None:
        """The span of this job process, child of the task try's span; started on first use."""
        if self.pipe is None or self.pipe.tracer is None:
            return None
        with self._lock:
            if self._span is None:
                self.used = True
                self._span = self.pipe.tracer.start_span(
                    contract.SPAN_JOB.format(job=self.name), context=self._parent(), kind=SpanKind.INTERNAL,
                    attributes=self._span_attributes(), start_time=self.start_ns,
                )
            return self._span

    def _parent(self) -> Context:
        parent = self.context.parent if self.context else None
        if parent is None:
            return Context()  # no TRACEPARENT: the job's spans start their own trace
        span_context = SpanContext(parent[0], parent[1], is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return trace.set_span_in_context(NonRecordingSpan(span_context), Context())

    def _span_attributes(self) -> Attributes:
        fields = self.context.event_fields() if self.context else {}
        # bound_attributes reduces every value to an OTel attribute type.
        return cast(Attributes, dict(bound_attributes({**fields, "job": self.name, "pid": os.getpid()})))

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, object] | None = None) -> Iterator[trace.Span]:
        """A span under the innermost open job span (else the job's own span)."""
        parent_span = _current_span.get() or self.job_span()
        if self.pipe is None or self.pipe.tracer is None or parent_span is None:
            yield trace.INVALID_SPAN
            return
        span = self.pipe.tracer.start_span(
            clean_text(name, 256), context=trace.set_span_in_context(parent_span, Context()),
            attributes=dict(bound_attributes(dict(attributes or {}))),
        )
        token = _current_span.set(span)
        try:
            yield span
        except BaseException as exc:
            info = errors.describe(exc)
            if info:
                span.set_status(Status(StatusCode.ERROR, info.type))
                span.add_event("exception", {"exception.type": info.type, "exception.message": info.message})
            raise
        finally:
            _current_span.reset(token)
            span.end()

    def record_span(self, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, object] | None = None,
                    error: str | None = None) -> None:
        """A finished span with given times (the CLI: a step that already ran)."""
        parent_span = self.job_span()
        if self.pipe is None or self.pipe.tracer is None or parent_span is None:
            return
        span = self.pipe.tracer.start_span(
            clean_text(name, 256), context=trace.set_span_in_context(parent_span, Context()),
            attributes=dict(bound_attributes(dict(attributes or {}))), start_time=start_ns,
        )
        span.set_status(Status(StatusCode.ERROR, clean_text(error, 256)) if error else Status(StatusCode.OK))
        span.end(end_time=end_ns)

    # --- the end ----------------------------------------------------------------------------------------
    def finish(self, budget: float | None = None) -> bool:
        """End the job span, write the event, flush (bounded). Once; False if the budget ran out."""
        with self._lock:
            if self.finished:
                return True
            self.finished = True
        if self.pipe is None:
            return True
        try:
            if self.used:
                end_ns = time.time_ns()
                span = self.job_span()
                if span is not None:
                    if self.error:
                        span.set_status(Status(StatusCode.ERROR, self.error.type))
                    span.end(end_time=end_ns)
                self._write_event(span, end_ns)
        except Exception:
            log.warning("otel_plugin: job event not recorded; no impact on the job", exc_info=True)
        done = self.pipe.flush(budget)
        if not done:  # the budget is wall time: on a starved CPU the export may not even reach the spool
            log.warning("otel_plugin.job: the exit flush did not finish within %.1f s "
                        "([otel_plugin] flush_budget); what was not yet spooled is lost",
                        self.pipe.cfg.flush_budget if budget is None else budget)
        return done

    def event_attributes(self, span: trace.Span | None, end_ns: int) -> dict[str, object]:
        from otel_plugin import api  # the custom-metric registry the process used (Airflow-free)

        ctx = self.context
        span_context = span.get_span_context() if span is not None else None
        parent = ctx.parent if ctx else None
        attrs: dict[str, object] = {
            "event": contract.EVENT_JOB,
            **(ctx.event_fields() if ctx else {}),
            "job": self.name,
            "state": "failed" if self.error else "finished",
            "start_time": _iso(self.start_ns),
            "end_time": _iso(end_ns),
            "duration_s": round((end_ns - self.start_ns) / 1e9, 6),
            "trace_id": f"{span_context.trace_id:032x}" if span_context else (f"{parent[0]:032x}" if parent else None),
            "span_id": f"{span_context.span_id:016x}" if span_context else None,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "cicd.pipeline.name": ctx.dag_id if ctx else None,
            "cicd.pipeline.run.id": ctx.run_id if ctx else None,
        }
        if self.error:
            attrs["error.type"], attrs["error.message"] = self.error.type, self.error.message
        totals = {**api._metrics.totals()}
        for name, value in self.pushed.items():
            totals[name] = totals.get(name, 0) + value
        attrs.update({contract.METRIC_PREFIX + name: value for name, value in sorted(totals.items())})
        attrs.update({contract.FACT_PREFIX + key: value for key, value in self.facts.items()})
        priority = ("event", "dag_id", "task_id", "run_id", "try_number", "map_index", "job", "state",
                    "trace_id", "span_id", "error.type", "error.message")
        return dict(bound_attributes(attrs, keep_first=priority))

    def _write_event(self, span: trace.Span | None, end_ns: int) -> None:
        if self.pipe is None or self.pipe.logger is None:
            return
        attrs = self.event_attributes(span, end_ns)
        severity = SeverityNumber.ERROR if self.error else SeverityNumber.INFO
        where = f"{attrs.get('dag_id')}.{attrs.get('task_id')}" if self.context else "(no run context)"
        body = f"job {self.name} {where} {attrs['state']} run_id={attrs.get('run_id')}"
        if self.error:
            body += f" error={self.error.type}: {self.error.message}"
        emit_log(
            self.pipe.logger,
            timestamp=end_ns,
            context=trace.set_span_in_context(span, Context()) if span is not None else None,
            severity_number=severity,
            body=clean_text(body, 1024),
            attributes=attrs,
            event_name=f"airflow.{contract.EVENT_JOB}",
        )


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat()


def job_name() -> str:
    """AIRFLOW_OTEL_JOB, else the program's file name (``python job.py`` -> ``job.py``)."""
    name = os.environ.get(contract.ENV_JOB_NAME, "").strip()
    if not name:
        argv0 = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else "python"
        name = os.path.basename(argv0) or "python"
    return clean_text(name, 128)


def _current() -> JobRuntime | None:
    runtime: JobRuntime | None = process.current().job_runtime
    return runtime


def get() -> JobRuntime:
    """This process's job runtime, created on first use (and anew after a fork)."""
    runtime = _current()
    if runtime is not None:
        return runtime
    state = process.current()
    with state.lock:
        if state.job_runtime is None:
            state.job_runtime = _create()
            atexit.register(_at_exit, state.job_runtime)
            _hook_uncaught_exceptions()
        runtime = state.job_runtime
    return runtime


def _create() -> JobRuntime:
    context = RunContext.from_env()
    warned = process.current().warned
    if context is None and "job: no context" not in warned:
        warned.add("job: no context")
        log.warning("otel_plugin.job: no Airflow run context in the environment (start this process with "
                    "otel_plugin.api.job_env()); metrics without dag_id/task_id are not recorded")
    try:
        cfg = config.load(airflow_cfg=False)
    except config.ConfigError as exc:
        log.error("otel_plugin.job disabled: %s", exc)
        cfg = None
    return JobRuntime(context, cfg, job_name())


def target() -> cm.Target | None:
    """Where the job's custom metrics go (None: no run context or telemetry disabled)."""
    try:
        return get().target()
    except Exception:
        log.warning("otel_plugin.job: not recording; no impact on the job", exc_info=True)
        return None


def _at_exit(runtime: JobRuntime) -> None:
    if _current() is runtime:  # a forked child inherits the registration, not the runtime
        runtime.finish()


_previous_hook: Callable[[type[BaseException], BaseException, TracebackType | None], Any] | None = None


def _hook_uncaught_exceptions() -> None:
    """Remember an uncaught exception, so the job's event says failed (the previous hook still runs)."""
    global _previous_hook
    if _previous_hook is not None:
        return
    previous = _previous_hook = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        try:
            runtime = _current()
            if runtime is not None:
                runtime.error = errors.describe(value)
        finally:
            previous(kind, value, tb)

    sys.excepthook = hook


def install(runtime: JobRuntime | None) -> None:
    """Use ``runtime`` as this process's job runtime (tests; None forgets it)."""
    process.current().job_runtime = runtime
