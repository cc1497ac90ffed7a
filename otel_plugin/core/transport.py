"""OTLP/HTTP (protobuf) export with a deadline, backed by the spool (gRPC: ``grpc_transport``, same interface).

The SDK's own OTLP exporters retry for up to 10 s per signal and ignore ``force_flush`` timeouts, which
would hold a finished task for tens of seconds when the Collector is down. Here every request gets the
smaller of its own timeout and what is left of the flush budget, and a payload that is not accepted stays
in the spool for later delivery instead of being retried in the task's exit path.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_plugin.core import process
from otel_plugin.core.config import Endpoint, redact_url
from otel_plugin.core.otel_compat import LogRecordExporter, LogRecordExportResult, ReadableLogRecord
from otel_plugin.core.spool import Claimed, Spool

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
# Replay sends spooled payloads of one signal together: OTLP requests are a single repeated field, so
# serialized requests concatenated are one valid request holding all of them.
_BATCH_FILES = 256
_BATCH_BYTES = 4 * 2**20
# How long past its timeout a request's thread is waited for before it is abandoned.
_JOIN_SLACK_S = 0.05

OK, RETRY, REJECTED = "ok", "retry", "rejected"


class Deadline:
    """A process-wide "finish by" time that exports started during a flush respect (kept in the process
    state: a forked child does not inherit a flush of its parent's)."""

    def set(self, until: float | None) -> None:
        process.current().deadline = until

    def remaining(self, default: float) -> float:
        until = process.current().deadline
        return default if until is None else min(default, until - time.monotonic())


def down_until(host: str) -> float:
    """Until when requests to ``host`` fail fast (monotonic; 0 when it answered last time)."""
    return process.current().down_until.get(host, 0.0)


def mark_down(host: str) -> None:
    process.current().down_until[host] = time.monotonic() + _COOLDOWN_S


DEADLINE = Deadline()
_collecting = threading.local()


@contextlib.contextmanager
def collecting() -> Iterator[list[tuple[Sender, Path | None, bytes]]]:
    """Within a flush, in the flushing thread: exports only write their payload to the spool (local, fast)
    and queue it; ``deliver`` sends the queue afterwards. So every signal is spooled before the first
    request can hang, and no thread is started per request on a task's exit path."""
    queue: list[tuple[Sender, Path | None, bytes]] = []
    _collecting.queue = queue
    try:
        yield queue
    finally:
        _collecting.queue = None


def deliver(queue: list[tuple[Sender, Path | None, bytes]]) -> None:
    """Send what ``collecting`` queued, in this thread (the flush thread, itself bounded by its join)."""
    _collecting.inline = True
    try:
        for sender, path, payload in queue:
            sender.finish(path, sender.post(payload))
    finally:
        _collecting.inline = False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: a 301/302/303 would turn the POST into a bodiless GET whose 2xx deletes the
    payload, and would send the Authorization header to another host. The 3xx surfaces as an HTTPError."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Sender:
    """POSTs serialized OTLP requests for one signal; spools what is not accepted."""

    def __init__(self, signal: str, endpoint: Endpoint, spool: Spool, timeout: float) -> None:
        self.signal = signal
        self.endpoint = endpoint
        self.spool = spool
        self.timeout = timeout
        self.url = redact_url(endpoint.url)  # for logs: never the credentials a URL may carry
        context = _tls_context(endpoint)
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect)

    def send(self, payload: bytes) -> bool:
        """True if delivered (or permanently rejected and logged); False if kept in the spool (or lost,
        when the spool cannot be written: then it was sent from memory, and the log says so)."""
        path = self.spool.write_inflight(self.signal, payload)
        queue = getattr(_collecting, "queue", None)
        if queue is not None:
            queue.append((self, path, payload))
            return False  # not delivered yet: spooled, and sent by the flush right after
        return self.finish(path, self.post(payload))

    def finish(self, path: Path | None, delivered: bool) -> bool:
        """Forget a delivered (or dropped) payload; give an undelivered one back to the spool."""
        if delivered:
            self.spool.done(path)
            return True
        if path is None:
            log.error("otel_plugin: a %s payload was not accepted by %s and the spool cannot hold it: lost",
                      self.signal, self.url)
        self.spool.release(path)
        return False

    def post(self, payload: bytes, timeout: float | None = None) -> bool:
        """True if accepted (or permanently rejected and logged)."""
        return self.attempt(payload, timeout, inline=getattr(_collecting, "inline", False)) != RETRY

    def attempt(self, payload: bytes, timeout: float | None = None, inline: bool = False) -> str:
        """OK, REJECTED (never acceptable: logged) or RETRY, within ``timeout`` and the flush deadline.

        The request runs in its own thread and is abandoned at its deadline: a DNS lookup or a server
        trickling one byte at a time is not bounded by the socket timeout, and must not hold the caller.
        ``inline``: in this thread, for a caller that is itself abandoned at its deadline (the flush).
        """
        timeout = DEADLINE.remaining(self.timeout if timeout is None else timeout)
        host = urllib.parse.urlsplit(self.endpoint.url).netloc
        if timeout < _MIN_ATTEMPT_S or time.monotonic() < down_until(host):
            return RETRY
        if inline:
            return self._request(payload, timeout, host)
        result: list[str] = []
        worker = threading.Thread(target=lambda: result.append(self._request(payload, timeout, host)),
                                  name=f"otel_plugin-{self.signal}", daemon=True)
        worker.start()
        worker.join(timeout + _JOIN_SLACK_S)
        if result:
            return result[0]
        mark_down(host)
        log.warning("otel_plugin: %s export to %s did not finish within %.2f s; kept for redelivery",
                    self.signal, self.url, timeout)
        return RETRY

    def _request(self, payload: bytes, timeout: float, host: str) -> str:
        headers = {"Content-Type": "application/x-protobuf", **self.endpoint.headers}
        body = payload
        if self.endpoint.gzip:
            body = gzip.compress(payload, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        request = urllib.request.Request(self.endpoint.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read()
            return OK
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in _PERMANENT:
                log.error("otel_plugin: %s rejected by %s with HTTP %d; dropped", self.signal, self.url, exc.code)
                return REJECTED
            if 300 <= exc.code < 400:
                log.error("otel_plugin: %s export to %s answered HTTP %d (a redirect, to %s); redirects are "
                          "never followed: kept for redelivery. Point OTEL_EXPORTER_OTLP_ENDPOINT at the "
                          "final URL", self.signal, self.url, exc.code,
                          redact_url(exc.headers.get("Location", "") or "nowhere"))
                return RETRY
            log.warning("otel_plugin: %s export got HTTP %d; kept for redelivery", self.signal, exc.code)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, timed out, bad URL
            mark_down(host)
            log.warning("otel_plugin: %s export to %s failed (%s); kept for redelivery", self.signal,
                        self.url, type(exc).__name__)
        return RETRY


def _tls_context(endpoint: Endpoint) -> ssl.SSLContext | None:
    """The server's CA (``certificate``) and our mTLS certificate and key, if configured."""
    if not (endpoint.certificate or endpoint.client_certificate):
        return None
    context = ssl.create_default_context(cafile=endpoint.certificate)
    if endpoint.client_certificate:
        context.load_cert_chain(endpoint.client_certificate, endpoint.client_key)
    return context


def make_sender(signal: str, endpoint: Endpoint, spool: Spool, timeout: float) -> Sender:
    """The sender for the endpoint's protocol; grpc is imported only when a signal is configured for it."""
    if endpoint.protocol == "grpc":
        from otel_plugin.core.grpc_transport import GrpcSender

        return GrpcSender(signal, endpoint, spool, timeout)
    return Sender(signal, endpoint, spool, timeout)


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


def replay(spool: Spool, senders: dict[str, Sender], until: float) -> int:
    """Redeliver spooled payloads until the monotonic time ``until``; return how many were delivered.

    Signals are independent: one whose Collector pipeline refuses is left for later and the others go on.
    Payloads of one signal go in batches (one request each), so a large backlog drains in bulk.
    """
    delivered = 0
    skip: set[str] = set()
    while time.monotonic() < until - _MIN_ATTEMPT_S:
        batches: dict[str, list[Claimed]] = {}
        claimed = 0
        for item in spool.claim(frozenset(skip)):
            claimed += 1
            sender = senders.get(item.signal)
            if sender is None or item.signal in skip:
                skip.add(item.signal)
                spool.release(item.path)
                continue
            batch = batches.setdefault(item.signal, [])
            batch.append(item)
            if len(batch) >= _BATCH_FILES or sum(len(c.payload) for c in batch) >= _BATCH_BYTES:
                delivered += _deliver(spool, sender, batches.pop(item.signal), until, skip)
            if time.monotonic() >= until - _MIN_ATTEMPT_S:
                break
        for signal, batch in batches.items():
            delivered += _deliver(spool, senders[signal], batch, until, skip)
        if not claimed:
            break
    return delivered


def _deliver(spool: Spool, sender: Sender, batch: list[Claimed], until: float, skip: set[str]) -> int:
    left = until - time.monotonic()
    outcome = RETRY
    if sender.signal not in skip and left >= _MIN_ATTEMPT_S:
        outcome = sender.attempt(b"".join(c.payload for c in batch), timeout=left)
    if outcome == OK:
        for item in batch:
            spool.done(item.path)
        return len(batch)
    if outcome == REJECTED and len(batch) > 1:  # find the one bad payload; deliver the others
        return sum(_deliver(spool, sender, [item], until, skip) for item in batch)
    if outcome == REJECTED:
        spool.done(batch[0].path)
        return 0
    skip.add(sender.signal)
    for item in batch:
        spool.release(item.path)
    return 0
