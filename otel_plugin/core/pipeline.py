"""This process's private OpenTelemetry providers and the bounded flush.

Airflow sets (and force-resets) the *global* providers for its own OTel support, so the plugin never reads
or sets them: it keeps one private TracerProvider, LoggerProvider and MeterProvider per process, created
lazily on first use and again after a fork (task processes are forked from the executor).

Fork safety (issue 17). Airflow forks from processes where the pipeline lives: the LocalExecutor forks its
workers from the scheduler (and from ``airflow dags test --use-executor``), workers fork task processes, the
dag-processor forks a parser per file. So nothing of ours runs between flushes, and nothing crosses a fork:

- no background thread: spans and events wait in a plain list (``_Held``) until a flush exports them, instead
  of the SDK's batch processors, whose worker threads the SDK re-creates in *every* forked child
  (``os.register_at_fork``) along with a resource re-detection on a thread pool;
- the providers' own after-fork handlers are disabled: a child never uses its parent's providers;
- a fork waits (at most the flush budget) for a flush this process has in flight, so no export, spool file,
  lock or half-written request is copied into the child;
- a child forgets the parent's pipeline and builds its own on first use; the parent's exit flush never runs
  there.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from otel_plugin.core import config, contract, process
from otel_plugin.core.otel_compat import LogRecordExporter, LogRecordExportResult, ReadableLogRecord, bucket_views
from otel_plugin.core.process import UNSET
from otel_plugin.core.spool import Spool
from otel_plugin.core.transport import (
    DEADLINE,
    OtlpLogExporter,
    OtlpMetricExporter,
    OtlpSpanExporter,
    collecting,
    deliver,
    make_sender,
    replay,
)

log = logging.getLogger(__name__)

SCOPE = "otel_plugin"
# How long past its budget a waiting flush's thread is waited for (the export threads themselves are
# abandoned at the deadline, see transport.Sender.attempt).
JOIN_GRACE_S = 0.25
_forced_ids: ContextVar[tuple[int | None, int | None]] = ContextVar("otel_plugin_forced_ids", default=(None, None))


class ForcedIdGenerator(RandomIdGenerator):
    """Random ids, except inside ``forced_ids()``: how deterministic ids reach spans the SDK creates.

    It must be given to the TracerProvider at creation: tracers capture the generator.
    """

    def generate_trace_id(self) -> int:
        return _forced_ids.get()[0] or super().generate_trace_id()

    def generate_span_id(self) -> int:
        return _forced_ids.get()[1] or super().generate_span_id()


@contextlib.contextmanager
def forced_ids(trace_id: int | None = None, span_id: int | None = None) -> Iterator[None]:
    token = _forced_ids.set((trace_id, span_id))
    try:
        yield
    finally:
        _forced_ids.reset(token)


# Records held between two flushes, per signal. Hooks flush at once, so this only matters to callers that
# batch on purpose (benchmarks/drive.py flushes every 500 task ends).
MAX_HELD = 20_000
_EXPORT_BATCH = 512


class _Held:
    """The exporter the SDK's *simple* (thread-free) processors hand each record to: it only holds it.

    ``drain`` exports what is held through the real exporter; the pipeline calls it from its flush.
    """

    def __init__(self, target: SpanExporter | LogRecordExporter, signal: str) -> None:
        self.target = target
        self.signal = signal
        self._records: list[object] = []
        self._lock = threading.Lock()

    def hold(self, batch: Sequence[object]) -> None:
        with self._lock:
            self._records.extend(batch)
            over = len(self._records) - MAX_HELD
            if over > 0:
                del self._records[:over]
        if over > 0:
            log.error("otel_plugin: more than %d %s waiting for a flush; dropped the %d oldest",
                      MAX_HELD, self.signal, over)

    def drain(self) -> None:
        with self._lock:
            records, self._records = self._records, []
        for start in range(0, len(records), _EXPORT_BATCH):
            self.target.export(records[start:start + _EXPORT_BATCH])  # type: ignore[arg-type]

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _HeldSpans(_Held, SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.hold(spans)
        return SpanExportResult.SUCCESS


class _HeldLogs(_Held, LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.hold(batch)
        return LogRecordExportResult.SUCCESS


# The SDK registers an after-fork handler for every provider (new locks, and a resource re-detection that
# runs detectors on a thread pool inside the child's fork). A child never uses its parent's providers (see
# get()), so theirs do nothing.
class _TracerProvider(TracerProvider):
    def _handle_fork(self) -> None:
        return None


def _bounded(timeout: float, flush_budget: float) -> float:
    return min(timeout, flush_budget) if flush_budget > 0 else timeout


class _LoggerProvider(LoggerProvider):
    def _handle_fork(self) -> None:
        return None


class _MeterProvider(MeterProvider):
    def _handle_fork(self) -> None:
        return None


class Pipeline:
    """Providers for the enabled signals, all exporting through the spooling OTLP transport."""

    def __init__(
        self,
        cfg: config.PluginConfig,
        span_exporter: SpanExporter | None = None,
        log_exporter: LogRecordExporter | None = None,
        metric_reader: MetricReader | None = None,
        resource: Resource | None = None,
    ) -> None:
        """Exporters default to OTLP through the spool; tests pass in-memory ones."""
        self.cfg = cfg
        # A per-process instance id keeps processes apart for debugging; the Collector strips it before
        # aggregating so it never multiplies series or log streams.
        resource = resource or Resource.create(
            {"service.name": cfg.service_name, "service.instance.id": str(uuid.uuid4())}
        )
        self.resource = resource
        self.spool = Spool(cfg.spool_dir, cfg.spool_max_bytes)
        # A background export still waiting for an answer when the task ends holds the SDK's export lock,
        # and the exit flush waits for it: no request may outlast the flush budget, or the records behind
        # it would still be in memory (not yet spooled) when the process exits.
        # Per signal: OTEL_EXPORTER_OTLP_*TIMEOUT, else export_timeout (config), bounded here by the budget.
        self.senders = {
            signal: make_sender(signal, endpoint, self.spool, _bounded(endpoint.timeout, cfg.flush_budget))
            for signal, endpoint in cfg.endpoints.items()
        }
        self.pid = os.getpid()
        self.tracer_provider: TracerProvider | None = None
        self.logger_provider: LoggerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self._held: list[_Held] = []
        if cfg.traces:
            spans = _HeldSpans(span_exporter or OtlpSpanExporter(self.senders["traces"]), "spans")
            self.tracer_provider = _TracerProvider(
                resource=resource, id_generator=ForcedIdGenerator(), shutdown_on_exit=False
            )
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
            self._held.append(spans)
        if cfg.events:
            events = _HeldLogs(log_exporter or OtlpLogExporter(self.senders["logs"]), "events")
            self.logger_provider = _LoggerProvider(resource=resource, shutdown_on_exit=False)
            self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(events))
            self._held.append(events)
        if cfg.metrics:
            # No periodic thread: a task process reports once, at its end, in the flush below.
            reader = metric_reader or PeriodicExportingMetricReader(
                OtlpMetricExporter(self.senders["metrics"]), export_interval_millis=math.inf
            )
            # OpenTelemetry 1.27 has no bucket advisories: a View gives histograms their buckets there.
            views = bucket_views({m.name: contract.DURATION_BUCKETS for m in contract.METRICS if m.kind == "histogram"})
            self.meter_provider = _MeterProvider(
                metric_readers=[reader], resource=resource, shutdown_on_exit=False, views=views
            )
        self.tracer = self.tracer_provider.get_tracer(SCOPE) if self.tracer_provider else None
        self.logger = self.logger_provider.get_logger(SCOPE) if self.logger_provider else None
        self.meter = self.meter_provider.get_meter(SCOPE) if self.meter_provider else None
        self._flush_lock = threading.Lock()
        self._exit_until: float | None = None
        self._flushing: list[tuple[threading.Thread, float]] = []  # (thread, monotonic time it must end by)

    def flush(self, budget: float | None = None, wait: bool = True, final: bool = False,
              redeliver: bool = True) -> bool:
        """Export everything within ``budget`` seconds, then redeliver spooled payloads with what is left.

        With ``wait=False`` (long-lived scheduler and API processes) the hook returns at once. ``final``:
        a task process's exit flush; all of them share one deadline. ``redeliver=False``: this process's
        records only, no spool replay. Returns False if the budget ran out; whatever was not delivered is in
        the spool.
        """
        budget = self.cfg.flush_budget if budget is None else budget
        if final:
            # A task process flushes at its end up to three times (terminal hook, before_stopping, atexit):
            # they share one deadline, set by the first, so the exit is bounded by one budget whatever the
            # Collector or the spool do.
            now = time.monotonic()
            if self._exit_until is None:
                self._exit_until = now + budget
            budget = max(0.0, self._exit_until - now)
        thread = threading.Thread(target=self._flush, args=(budget, redeliver), name="otel_plugin-flush",
                                  daemon=True)
        self._flushing = [(t, end) for t, end in self._flushing if t.is_alive()]
        # A queued flush waits for the running ones (the flush lock), so it may end after theirs.
        end_by = max([time.monotonic()] + [end for _, end in self._flushing]) + budget + JOIN_GRACE_S
        self._flushing.append((thread, end_by))
        thread.start()
        if not wait:
            return True
        thread.join(budget + JOIN_GRACE_S)
        return not thread.is_alive()

    def settle(self) -> None:
        """Wait for the flushes in flight, each at most until its budget ends (called before a fork)."""
        for thread, end_by in self._flushing:
            thread.join(max(0.0, end_by - time.monotonic()))

    def _flush(self, budget: float, redeliver: bool = True) -> None:
        with self._flush_lock:
            until = time.monotonic() + budget
            DEADLINE.set(until)
            try:
                with collecting() as queued:  # every signal reaches the spool before any request is made
                    for held in self._held:
                        held.drain()
                    if self.meter_provider is not None:
                        self.meter_provider.force_flush()
                deliver(queued)
                if redeliver and self.spool.has_pending():
                    replay(self.spool, self.senders, until)
            except Exception:
                log.warning("otel_plugin: flush failed; no impact on the task", exc_info=True)
            finally:
                DEADLINE.set(None)


def get() -> Pipeline | None:
    """This process's pipeline, created on first use (and anew in a forked child); None when disabled."""
    state = process.current()
    if state.pipeline is not UNSET:
        return state.pipeline
    with state.lock:
        if state.pipeline is UNSET:
            cfg = config.get()
            pipe = Pipeline(cfg) if cfg is not None and cfg.enabled else None
            if pipe is not None:
                atexit.register(_flush_at_exit, pipe)
            state.pipeline = pipe
    return state.pipeline


def _flush_at_exit(pipeline: Pipeline) -> None:
    # A child that exits through atexit inherited its parent's registration: that pipeline is not its own.
    if pipeline.pid == os.getpid():
        pipeline.flush(wait=True, final=True)


def _before_fork() -> None:
    pipe = process.current().pipeline
    if pipe is not UNSET and pipe is not None and pipe.pid == os.getpid():
        pipe.settle()


# Registered at import, before any provider exists: before-fork hooks run in reverse order of registration,
# so ours runs before the logging module takes its lock (a flush in flight may still log). The child starts
# with a fresh process state (otel_plugin.core.process).
os.register_at_fork(before=_before_fork)


def install(pipe: Pipeline | None) -> None:
    """Use ``pipe`` as this process's pipeline (tests; None forgets it)."""
    state = process.current()
    with state.lock:
        state.pipeline = pipe if pipe is not None else UNSET
