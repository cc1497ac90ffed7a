"""The spooling OTLP/gRPC sender (otel_plugin.core.grpc_transport) against an in-process gRPC server: the
bytes and metadata it sends, what is kept or dropped per status, the deadline, fail-fast, replay across
protocols (spooled by HTTP, delivered by gRPC), and the Export method names against opentelemetry-proto.
The real Collector over gRPC and mTLS: tests/integration/test_grpc_collector.py."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from otel_plugin.core import grpc_transport, process, transport
from otel_plugin.core.config import Endpoint
from otel_plugin.core.spool import Spool

TOKEN = "tkn-grpc-0123456789"


class GrpcRecorder:
    """A gRPC server for the three OTLP Export methods: records (method, metadata, bytes); answers ``status``."""

    def __init__(self, port: int = 0) -> None:
        self.status = grpc.StatusCode.OK
        self.delay = 0.0
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        recorder = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
                method = details.method

                def export(request: bytes, context: grpc.ServicerContext) -> bytes:
                    recorder.calls.append((method, dict(context.invocation_metadata()), request))
                    time.sleep(recorder.delay)
                    if recorder.status != grpc.StatusCode.OK:
                        context.abort(recorder.status, "test")
                    return b""  # an empty Export*ServiceResponse

                return grpc.unary_unary_rpc_method_handler(export)

        self.server = grpc.server(ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    def close(self) -> None:
        self.server.stop(0).wait()


@pytest.fixture
def server() -> Iterator[GrpcRecorder]:
    srv = GrpcRecorder()
    yield srv
    srv.close()


def grpc_sender(port: int, spool_dir: Path, signal: str = "logs", gzip_on: bool = False,
                timeout: float = 2.0) -> transport.Sender:
    endpoint = Endpoint(url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                        gzip=gzip_on, protocol="grpc")
    return transport.make_sender(signal, endpoint, Spool(spool_dir, 2**20), timeout)


def ready(spool_dir: Path) -> list[str]:
    return sorted(p.name for p in spool_dir.iterdir() if p.name.endswith(".pb"))


def test_export_methods_are_the_ones_opentelemetry_proto_defines() -> None:
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    for signal, module, service in (("traces", trace_service_pb2, "TraceService"),
                                    ("metrics", metrics_service_pb2, "MetricsService"),
                                    ("logs", logs_service_pb2, "LogsService")):
        method = module.DESCRIPTOR.services_by_name[service].methods_by_name["Export"]
        assert grpc_transport.METHODS[signal] == f"/{method.containing_service.full_name}/{method.name}"


@pytest.mark.parametrize("gzip_on", [False, True])
@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_delivered_payload_leaves_nothing_in_the_spool(server: GrpcRecorder, tmp_path: Path, signal: str,
                                                       gzip_on: bool) -> None:
    send = grpc_sender(server.port, tmp_path, signal, gzip_on)
    assert isinstance(send, grpc_transport.GrpcSender)
    assert send.send(b"\x0a\x00payload")
    ((method, metadata, body),) = server.calls
    assert method == grpc_transport.METHODS[signal] and body == b"\x0a\x00payload"
    assert metadata["authorization"] == f"Bearer {TOKEN}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL])
def test_refused_or_failing_answer_keeps_the_payload_and_never_logs_the_token(
    server: GrpcRecorder, tmp_path: Path, status: grpc.StatusCode, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = status
    with caplog.at_level(logging.DEBUG):
        assert not grpc_sender(server.port, tmp_path).send(b"payload")
    assert len(ready(tmp_path)) == 1
    assert status.name in caplog.text and TOKEN not in caplog.text


def test_a_payload_the_collector_can_never_accept_is_dropped_loudly(server: GrpcRecorder, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    server.status = grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_sender(server.port, tmp_path).send(b"payload")
    assert list(tmp_path.iterdir()) == []
    assert any(r.levelno == logging.ERROR and "dropped" in r.getMessage() for r in caplog.records)


def test_a_slow_collector_costs_at_most_the_timeout_and_then_fails_fast(server: GrpcRecorder,
                                                                       tmp_path: Path) -> None:
    server.delay = 3.0
    send = grpc_sender(server.port, tmp_path, timeout=0.5)
    started = time.monotonic()
    assert not send.send(b"one")
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    assert not send.send(b"two")  # within the cool-down: straight to the spool
    assert time.monotonic() - started < 0.1
    assert len(ready(tmp_path)) == 2


def test_no_attempt_once_the_flush_deadline_has_passed(server: GrpcRecorder, tmp_path: Path) -> None:
    transport.DEADLINE.set(time.monotonic() + 0.01)
    try:
        assert not grpc_sender(server.port, tmp_path).send(b"late")
    finally:
        transport.DEADLINE.set(None)
    assert server.calls == [] and len(ready(tmp_path)) == 1


def test_spooled_over_http_replayed_over_grpc_in_order(server: GrpcRecorder, tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2**20)
    dead_http = transport.Sender("logs", Endpoint(url="http://127.0.0.1:9/v1/logs"), spool, 0.5)
    assert not dead_http.send(b"first") and not dead_http.send(b"second")
    assert len(ready(tmp_path)) == 2
    delivered = transport.replay(spool, {"logs": grpc_sender(server.port, tmp_path)}, time.monotonic() + 5)
    assert (delivered, spool.pending()) == (2, 0)
    assert b"".join(body for _, _, body in server.calls) == b"firstsecond"  # replay batches a signal's payloads


def test_collector_down_then_back_is_reached_within_the_cool_down(tmp_path: Path) -> None:
    srv = GrpcRecorder()
    port = srv.port
    srv.close()
    send = grpc_sender(port, tmp_path, timeout=1.0)
    assert not send.send(b"one")
    srv = GrpcRecorder(port)
    try:
        # The channel's reconnect backoff is capped at the cool-down: a replay soon after it succeeds.
        deadline = time.monotonic() + 3 * transport._COOLDOWN_S
        delivered = 0
        while not delivered and time.monotonic() < deadline:
            process.current().down_until.clear()
            delivered = transport.replay(send.spool, {"logs": send}, time.monotonic() + 1)
            if not delivered:
                time.sleep(0.5)
        assert delivered == 1 and [b for _, _, b in srv.calls] == [b"one"]
    finally:
        srv.close()


@pytest.mark.parametrize(
    ("url", "insecure", "target", "secure"),
    [
        ("http://collector:4317", False, "collector:4317", False),
        ("https://collector", False, "collector:443", True),
        ("collector:4317", False, "collector:4317", True),
        ("collector:4317", True, "collector:4317", False),
        ("http://[::1]:4317/", False, "[::1]:4317", False),
    ],
)
def test_endpoint_to_target(url: str, insecure: bool, target: str, secure: bool) -> None:
    endpoint = Endpoint(url=url, protocol="grpc", insecure=insecure)
    assert grpc_transport.target_of(endpoint) == (target, secure)


def test_concurrent_sends_share_one_channel(server: GrpcRecorder, tmp_path: Path) -> None:
    send = grpc_sender(server.port, tmp_path)
    threads = [threading.Thread(target=send.send, args=(f"p{i}".encode(),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(b for _, _, b in server.calls) == sorted(f"p{i}".encode() for i in range(8))
    assert list(tmp_path.iterdir()) == []
