"""The few OpenTelemetry SDK names that changed between the oldest supported release (1.27, Airflow's own
floor) and the newest: import them from here, never from the SDK directly.

- 1.39 renamed the logs SDK's ``LogExporter``/``LogExportResult``/``LogData`` to ``LogRecordExporter``/
  ``LogRecordExportResult``/``ReadableLogRecord`` (same roles; ``.log_record`` holds the record in both).
- ``Meter.create_histogram`` takes ``explicit_bucket_boundaries_advisory`` in new releases only;
  ``create_histogram`` drops it on an older SDK, where ``bucket_views`` gives the contract's histograms
  their buckets instead (a View set on the MeterProvider). A user's custom histogram buckets need the newer
  SDK; on 1.27 such a histogram gets the SDK's default buckets.
- ``Logger.emit`` takes the record's fields as keywords (with ``event_name``) in new releases; 1.27 takes one
  SDK ``LogRecord``. ``emit_log`` calls whichever the installed SDK has; on an SDK without ``event_name``
  the name goes into the ``event.name`` attribute, the convention of those releases.

``make test-oldest`` runs the unit and real-Airflow tests on the oldest release (tests/oldest-otel.txt).
"""

from __future__ import annotations

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
    "bucket_views",
    "create_histogram",
    "emit_log",
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
        body=body, resource=getattr(logger, "resource", None), attributes={**attributes, "event.name": event_name},
    ))


def _bucket_advisory() -> bool:
    from opentelemetry.sdk.metrics import Meter

    return "explicit_bucket_boundaries_advisory" in inspect.signature(Meter.create_histogram).parameters


def create_histogram(meter: Any, name: str, *, unit: str, description: str, buckets: Sequence[float] | None) -> Any:
    """A histogram with these bucket boundaries where the SDK takes them (else see ``bucket_views``)."""
    if buckets and _bucket_advisory():
        return meter.create_histogram(name, unit=unit, description=description,
                                      explicit_bucket_boundaries_advisory=list(buckets))
    return meter.create_histogram(name, unit=unit, description=description)


def bucket_views(buckets_by_name: Mapping[str, Sequence[float]]) -> list[Any]:
    """Views giving these histograms their buckets, for an SDK without bucket advisories (none otherwise)."""
    if _bucket_advisory():
        return []
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    return [View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(list(buckets)))
            for name, buckets in buckets_by_name.items()]
