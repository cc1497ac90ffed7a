"""The few OpenTelemetry SDK names that changed between the oldest supported release (1.27, Airflow's own
floor) and the newest: import them from here, never from the SDK directly.

- 1.39 renamed the logs SDK's ``LogExporter``/``LogExportResult``/``LogData`` to ``LogRecordExporter``/
  ``LogRecordExportResult``/``ReadableLogRecord`` (same roles; ``.log_record`` holds the record in both).
- ``Meter.create_histogram`` takes ``explicit_bucket_boundaries_advisory`` in new releases only. On an
  older SDK ``create_histogram`` remembers the buckets by instrument name and ``bucket_views`` gives the
  MeterProvider one View whose aggregation looks them up when a histogram's first point is recorded: the
  contract's histograms and a user's custom ones get their buckets on every supported release.
- ``Counter.add``/``Histogram.record`` take a ``context`` (whose span becomes the point's exemplar) since
  1.28, where the SDK got exemplars; ``add``/``record`` pass it where it is taken. On 1.27 the points
  are the same, without exemplars.
- ``Logger.emit`` takes the record's fields as keywords (with ``event_name``) in new releases; 1.27 takes one
  SDK ``LogRecord``. ``emit_log`` calls whichever the installed SDK has. The OTLP of 1.27 has no event
  name field: the record's attributes are the same on every release (the ``event`` attribute names it).

``make test-airflow2`` runs the unit and real-Airflow tests on the oldest release (tests/oldest-otel.txt,
beside Airflow 2.11 in .venv-af2); ``make test`` includes it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context

if TYPE_CHECKING:  # checked against the newest release's names
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExporter, LogRecordExportResult
else:
    try:
        from opentelemetry.sdk._logs import ReadableLogRecord
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExporter, LogRecordExportResult
    except ImportError:  # OpenTelemetry < 1.39
        from opentelemetry.sdk._logs import LogData as ReadableLogRecord
        from opentelemetry.sdk._logs.export import InMemoryLogExporter as InMemoryLogRecordExporter
        from opentelemetry.sdk._logs.export import LogExporter as LogRecordExporter
        from opentelemetry.sdk._logs.export import LogExportResult as LogRecordExportResult

__all__ = [
    "InMemoryLogRecordExporter",
    "LogRecordExportResult",
    "LogRecordExporter",
    "ReadableLogRecord",
    "add",
    "bucket_views",
    "create_histogram",
    "emit_log",
    "exemplars_supported",
    "record",
]

_KEYWORD_EMIT: dict[type, bool] = {}


def _takes_keywords(logger: Any) -> bool:
    cls = type(logger)
    if cls not in _KEYWORD_EMIT:
        _KEYWORD_EMIT[cls] = "event_name" in inspect.signature(cls.emit).parameters
    return _KEYWORD_EMIT[cls]


def emit_log(
    logger: Any,
    *,
    timestamp: int,
    context: Context | None,
    severity_number: SeverityNumber,
    body: str,
    attributes: dict[str, Any],
    event_name: str,
) -> None:
    """One log record with these fields, parented to the span in ``context``, on any supported SDK."""
    if _takes_keywords(logger):
        logger.emit(timestamp=timestamp, context=context, severity_number=severity_number,
                    severity_text=severity_number.name, body=body, attributes=attributes, event_name=event_name)
        return
    # The SDK's own record class (1.27 reads ids and resource from it; newer releases moved it).
    log_record = importlib.import_module("opentelemetry.sdk._logs").LogRecord
    span = trace.get_current_span(context).get_span_context()
    logger.emit(log_record(
        timestamp=timestamp, observed_timestamp=time.time_ns(), trace_id=span.trace_id, span_id=span.span_id,
        trace_flags=span.trace_flags, severity_text=severity_number.name, severity_number=severity_number,
        body=body, resource=getattr(logger, "resource", None), attributes=attributes,
    ))


@functools.cache
def _bucket_advisory() -> bool:
    from opentelemetry.sdk.metrics import Meter

    return "explicit_bucket_boundaries_advisory" in inspect.signature(Meter.create_histogram).parameters


# Older SDKs: bucket boundaries by histogram name (lower case, as the SDK compares names), read by the View
# of ``bucket_views`` when a histogram's first point is recorded. One set per name per process, the first.
_BUCKETS: dict[str, list[float]] = {}


def create_histogram(meter: Any, name: str, *, unit: str, description: str, buckets: Sequence[float] | None) -> Any:
    """A histogram with these bucket boundaries (the SDK's advisory, or ``bucket_views`` on an older SDK)."""
    if buckets and _bucket_advisory():
        return meter.create_histogram(name, unit=unit, description=description,
                                      explicit_bucket_boundaries_advisory=list(buckets))
    if buckets:
        _BUCKETS.setdefault(name.lower(), list(buckets))
    return meter.create_histogram(name, unit=unit, description=description)


def bucket_views(buckets_by_name: Mapping[str, Sequence[float]]) -> list[Any]:
    """The Views an SDK without bucket advisories needs for histograms to get their buckets (none otherwise):
    these names' buckets, and those later given to ``create_histogram``."""
    if _bucket_advisory():
        return []
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.view import Aggregation, DefaultAggregation, ExplicitBucketHistogramAggregation, View

    for name, buckets in buckets_by_name.items():
        _BUCKETS.setdefault(name.lower(), list(buckets))

    class _BucketsByName(Aggregation):
        # The SDK's own hook for a View's aggregation (private, but fixed in the releases that need this).
        def _create_aggregation(self, instrument: Any, *args: Any, **kwargs: Any) -> Any:
            buckets = _BUCKETS.get(instrument.name.lower())
            chosen = ExplicitBucketHistogramAggregation(buckets) if buckets else DefaultAggregation()
            return chosen._create_aggregation(instrument, *args, **kwargs)

    return [View(instrument_type=Histogram, aggregation=_BucketsByName())]


@functools.cache
def exemplars_supported() -> bool:
    """Whether measurements take a ``context`` (the SDK then samples exemplars): OpenTelemetry 1.28+."""
    from opentelemetry.metrics import Counter

    return "context" in inspect.signature(Counter.add).parameters


def add(instrument: Any, value: float, attributes: Mapping[str, Any], context: Context | None = None) -> None:
    """``instrument.add``, with the context (its span: the exemplar) where the SDK takes one."""
    if context is not None and exemplars_supported():
        instrument.add(value, attributes, context=context)
    else:
        instrument.add(value, attributes)


def record(instrument: Any, value: float, attributes: Mapping[str, Any], context: Context | None = None) -> None:
    """``instrument.record``, with the context (its span: the exemplar) where the SDK takes one."""
    if context is not None and exemplars_supported():
        instrument.record(value, attributes, context=context)
    else:
        instrument.record(value, attributes)
