"""OTLP/gRPC export: the same spooling ``Sender`` as OTLP/HTTP, over a gRPC channel.

Selected by ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` (or per signal) through ``transport.make_sender``; this
module, and with it ``grpc``, is imported only then. The spool holds serialized ``Export*ServiceRequest``
bodies, and an OTLP/gRPC call carries exactly those bytes, so a payload spooled over one protocol is
replayed over whichever is configured at replay time.

Endpoint: ``http://host:4317`` (plaintext), ``https://host:4317`` (TLS), or ``host:4317`` (TLS unless
``OTEL_EXPORTER_OTLP_INSECURE=true``). TLS uses ``OTEL_EXPORTER_OTLP_CERTIFICATE`` as the CA and the client
certificate and key for mTLS. Headers become call metadata; ``gzip`` compression is gRPC's own.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from pathlib import Path

import grpc

from otel_plugin.core import transport
from otel_plugin.core.config import Endpoint
from otel_plugin.core.spool import Spool

log = logging.getLogger(__name__)

# The Export method of each OTLP collector service (opentelemetry-proto's *_service.proto; a unit test checks
# these against the generated descriptors).
METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
# Answers where the same bytes can never be accepted (OTLP spec: not retryable): drop loudly, as HTTP 400.
_PERMANENT = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
# Answers that mean the Collector is not reachable: fail fast for a while, as a refused HTTP connection.
_DOWN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def target_of(endpoint: Endpoint) -> tuple[str, bool]:
    """(``host:port``, whether the channel uses TLS) from the endpoint URL, as the OTel spec reads it."""
    url = endpoint.url
    if "://" not in url:
        return url.rstrip("/"), not endpoint.insecure
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"OTLP/gRPC endpoint must be http://host:port, https://host:port or host:port, got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 4317)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", parts.scheme == "https"


class GrpcSender(transport.Sender):
    """Sends serialized OTLP requests for one signal over gRPC; spools what is not accepted."""

    def __init__(self, signal: str, endpoint: Endpoint, spool: Spool, timeout: float) -> None:
        # No super().__init__: the HTTP TLS context is not needed (credentials are built for the channel).
        self.signal = signal
        self.endpoint = endpoint
        self.spool = spool
        self.timeout = timeout
        self.target, self.secure = target_of(endpoint)
        self.url = self.target  # what the shared Sender code logs
        self.metadata = tuple((k.lower(), v) for k, v in endpoint.headers.items())  # gRPC wants lowercase keys
        self._channel: grpc.Channel | None = None
        self._call: grpc.UnaryUnaryMultiCallable | None = None
        self._lock = threading.Lock()  # the SDK's export threads and the flush thread share the sender

    def _export(self) -> grpc.UnaryUnaryMultiCallable:
        """The Export call, on a channel opened at first use (so never inherited across a fork)."""
        with self._lock:
            if self._call is None:
                self._call = self._open()
            return self._call

    def _open(self) -> grpc.UnaryUnaryMultiCallable:
        options = [
            ("grpc.enable_retries", 0),  # one attempt per deadline; the spool does the retrying
            # A channel that failed backs off reconnecting up to 120 s by default: a Collector that is back
            # would be ignored that long. Cap it at the HTTP side's fail-fast period.
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", int(transport._COOLDOWN_S * 1000)),
        ]
        if self.secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(self.endpoint.certificate),
                private_key=_read(self.endpoint.client_key),
                certificate_chain=_read(self.endpoint.client_certificate),
            )
            self._channel = grpc.secure_channel(self.target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.target, options=options)
        # No (de)serializers: the payload already is the serialized request; the answer is not needed.
        return self._channel.unary_unary(METHODS[self.signal])

    def attempt(self, payload: bytes, timeout: float | None = None, inline: bool = False) -> str:
        """OK, REJECTED (never acceptable: logged) or RETRY, as the HTTP sender; gRPC enforces the deadline
        itself, so the call always runs in the caller's thread."""
        timeout = transport.DEADLINE.remaining(self.timeout if timeout is None else timeout)
        if timeout < transport._MIN_ATTEMPT_S or time.monotonic() < transport.down_until(self.target):
            return transport.RETRY
        compression = grpc.Compression.Gzip if self.endpoint.gzip else grpc.Compression.NoCompression
        try:
            self._export()(payload, timeout=timeout, metadata=self.metadata, compression=compression)
            return transport.OK
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            if code in _PERMANENT:
                log.error("otel_plugin: %s rejected by %s with gRPC %s; dropped", self.signal, self.target, code.name)
                return transport.REJECTED
            if code in _DOWN:
                transport.mark_down(self.target)
            log.warning("otel_plugin: %s export to %s got gRPC %s; kept for redelivery", self.signal, self.target,
                        code.name)
        except (OSError, ValueError) as exc:  # unreadable certificate files, a bad target
            log.warning("otel_plugin: %s export to %s failed (%s); kept for redelivery", self.signal, self.target,
                        type(exc).__name__)
        return transport.RETRY

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._call = None
