"""OTLP/HTTP (protobuf) export with a deadline, backed by the spool.

The SDK's own OTLP exporters retry for up to 10 s per signal and ignore ``force_flush`` timeouts, which
would hold a finished task for tens of seconds when the Collector is down. Here every request gets the
smaller of its own timeout and what is left of the flush budget, and a payload that is not accepted stays
in the spool for later delivery instead of being retried in the task's exit path.
"""

from __future__ import annotations

import gzip
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_plugin.core.config import Endpoint
from otel_plugin.core.spool import Spool

log = logging.getLogger(__name__)

# Deltas are what make concurrent task processes add up in the Collector instead of overwriting.
DELTA: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.DELTA,  # custom metrics: net changes that add up across processes
}
_MIN_ATTEMPT_S = 0.05
# Statuses where sending the same bytes again cannot succeed: drop loudly rather than spool forever.
_PERMANENT = {400, 413, 415}
# After a refused or timed-out request, requests to that host fail fast (straight to the spool) for this
# long: otherwise each later flush of the same process (task end, before_stopping, atexit) would wait on a
# black-holed Collector again, and a task's exit would take a multiple of the flush budget.
_COOLDOWN_S = 5.0
_down_until: dict[str, float] = {}


class Deadline:
    """A process-wide "finish by" time that exports started during a flush respect."""

    def __init__(self) -> None:
        self._until: float | None = None

    def set(self, until: float | None) -> None:
        self._until = until

    def remaining(self, default: float) -> float:
        return default if self._until is None else min(default, self._until - time.monotonic())


DEADLINE = Deadline()


class Sender:
    """POSTs serialized OTLP requests for one signal; spools what is not accepted."""

    def __init__(self, signal: str, endpoint: Endpoint, spool: Spool, timeout: float) -> None:
        self.signal = signal
        self.endpoint = endpoint
        self.spool = spool
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=endpoint.certificate) if endpoint.certificate else None

    def send(self, payload: bytes) -> bool:
        """True if delivered (or permanently rejected and logged); False if kept in the spool."""
        path = self.spool.write_inflight(self.signal, payload)
        if self.post(payload):
            self.spool.done(path)
            return True
        self.spool.release(path)
        return False

    def post(self, payload: bytes, timeout: float | None = None) -> bool:
        timeout = DEADLINE.remaining(self.timeout if timeout is None else timeout)
        host = urllib.parse.urlsplit(self.endpoint.url).netloc
        if timeout < _MIN_ATTEMPT_S or time.monotonic() < _down_until.get(host, 0.0):
            return False
        headers = {"Content-Type": "application/x-protobuf", **self.endpoint.headers}
        body = payload
        if self.endpoint.gzip:
            body = gzip.compress(payload, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        request = urllib.request.Request(self.endpoint.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl) as response:
                response.read()
            return True
        except urllib.error.HTTPError as exc:
            if exc.code in _PERMANENT:
                log.error("otel_plugin: %s rejected by %s with HTTP %d; dropped", self.signal,
                          self.endpoint.url, exc.code)
                return True
            log.warning("otel_plugin: %s export got HTTP %d; kept for redelivery", self.signal, exc.code)
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            _down_until[host] = time.monotonic() + _COOLDOWN_S
            log.warning("otel_plugin: %s export to %s failed (%s); kept for redelivery", self.signal,
                        self.endpoint.url, type(exc).__name__)
        return False


class OtlpSpanExporter(SpanExporter):
    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sender.send(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS  # delivered or durably spooled either way


class OtlpLogExporter(LogRecordExporter):
    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.sender.send(encode_logs(batch).SerializeToString())
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        return None


class OtlpMetricExporter(MetricExporter):
    def __init__(self, sender: Sender) -> None:
        super().__init__(preferred_temporality=DELTA)
        self.sender = sender

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        self.sender.send(encode_metrics(metrics_data).SerializeToString())
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


def replay(spool: Spool, senders: dict[str, Sender], until: float) -> tuple[int, int]:
    """Redeliver spooled payloads until the monotonic time ``until``: (delivered, still pending)."""
    delivered = 0
    for signal, path, payload in spool.claim():
        sender = senders.get(signal)
        left = until - time.monotonic()
        if sender is None or left < _MIN_ATTEMPT_S or not sender.post(payload, timeout=left):
            spool.release(path)
            break
        spool.done(path)
        delivered += 1
    return delivered, spool.pending()
