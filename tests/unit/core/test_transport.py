"""The spooling OTLP/HTTP sender (otel_plugin.core.transport, otel_plugin.core.spool) against a local recording HTTP
server: delivery, headers, what is kept or dropped per answer, fail-fast after a timeout, replay order,
the spool's cap and its claims across processes. Header values (credentials) never reach the log."""

from __future__ import annotations

import base64
import gzip
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otel_plugin.core import process, transport
from otel_plugin.core.config import Endpoint
from otel_plugin.core.spool import Spool

TOKEN = "tkn-0123456789abcdef"


class Recorder(ThreadingHTTPServer):
    """Answers every POST with ``status`` and keeps (headers, body) of each request."""

    def __init__(self, port: int = 0) -> None:
        self.status = 200
        self.status_by_path: dict[str, int] = {}
        self.location: str | None = None
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.calls: list[tuple[str, str]] = []  # (method, path)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((dict(self.headers), body))
                recorder.calls.append((self.command, self.path))
                self.send_response(recorder.status_by_path.get(self.path, recorder.status))
                if recorder.location:
                    self.send_header("Location", recorder.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/logs"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    yield srv
    srv.close()


def sender(url: str, spool_dir: Path, gzip_on: bool = False, timeout: float = 2.0) -> transport.Sender:
    endpoint = Endpoint(url=url, headers={"Authorization": f"Bearer {TOKEN}"}, gzip=gzip_on)
    return transport.Sender("logs", endpoint, Spool(spool_dir, 2**20), timeout)


def ready(spool_dir: Path) -> list[str]:
    return sorted(p.name for p in spool_dir.iterdir() if p.name.endswith(".pb"))


@pytest.mark.parametrize("gzip_on", [False, True])
def test_delivered_payload_leaves_nothing_in_the_spool(server: Recorder, tmp_path: Path, gzip_on: bool) -> None:
    assert sender(server.url, tmp_path, gzip_on).send(b"payload-1")
    ((headers, body),) = server.requests
    assert (gzip.decompress(body) if gzip_on else body) == b"payload-1"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert list(tmp_path.iterdir()) == []  # the healthy path does not even touch the size ledger


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_refused_or_failing_answer_keeps_the_payload_and_never_logs_the_token(
    server: Recorder, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = status
    with caplog.at_level(logging.DEBUG):
        assert not sender(server.url, tmp_path).send(b"payload")
    assert len(ready(tmp_path)) == 1
    assert f"HTTP {status}" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("status", [400, 413, 415])
def test_a_payload_the_collector_can_never_accept_is_dropped_loudly(
    server: Recorder, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = status
    assert sender(server.url, tmp_path).send(b"payload")
    assert ready(tmp_path) == []
    assert any(r.levelno == logging.ERROR and "dropped" in r.getMessage() for r in caplog.records)


def test_after_a_connection_failure_the_host_fails_fast_for_a_while(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    srv = Recorder()
    port = srv.server_address[1]
    srv.close()  # nothing listens: refused
    send = sender(f"http://127.0.0.1:{port}/v1/logs", tmp_path)
    assert not send.send(b"one")
    assert TOKEN not in caplog.text
    srv = Recorder(port)  # the Collector is back, but within the cool-down nothing is tried
    try:
        started = time.monotonic()
        assert not send.send(b"two")
        assert time.monotonic() - started < 0.05 and srv.requests == []
        process.current().down_until.clear()  # the cool-down is over
        assert transport.replay(send.spool, {"logs": send}, time.monotonic() + 5) == 2
        assert send.spool.pending() == 0
        # One request: serialized OTLP requests concatenated are one request holding both, oldest first.
        assert [body for _, body in srv.requests] == [b"onetwo"]
    finally:
        srv.close()


def test_no_attempt_once_the_flush_deadline_has_passed(server: Recorder, tmp_path: Path) -> None:
    transport.DEADLINE.set(time.monotonic() + 0.01)
    try:
        assert not sender(server.url, tmp_path).send(b"late")
    finally:
        transport.DEADLINE.set(None)
    assert server.requests == [] and len(ready(tmp_path)) == 1


def test_replay_stops_at_the_first_failure_and_keeps_the_rest(server: Recorder, tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2**20)
    for i in range(3):
        spool.release(spool.write_inflight("logs", b"p%d" % i))
    server.status = 503
    send = sender(server.url, tmp_path)
    assert transport.replay(spool, {"logs": send}, time.monotonic() + 5) == 0
    assert spool.pending() == 3
    assert len(server.requests) == 1


def test_spool_cap_drops_the_oldest_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=2500)
    for i in range(5):
        spool.release(spool.write_inflight("logs", bytes([i]) * 1000))
    kept = [(tmp_path / name).read_bytes()[0] for name in ready(tmp_path)]
    assert kept == [3, 4]
    assert "dropped the 1 oldest" in caplog.text
    assert spool._account(0) == 2000  # the size ledger agrees with the directory


def test_in_flight_files_of_a_live_process_are_left_alone_and_a_dead_ones_reclaimed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2**20)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid, payload in ((int(dead.stdout), b"orphan"), (alive.pid, b"busy")):
            (tmp_path / f"00000000000000000001-{payload.decode()}.logs.inflight-{pid}").write_bytes(payload)
        claimed = [item.payload for item in spool.claim()]
        assert claimed == [b"orphan"]
    finally:
        alive.kill()
        alive.wait()


# --- issue 19: redirects, hangs the socket timeout does not cover, per-signal replay, URL credentials -----


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_keeps_the_payload(
    server: Recorder, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = Recorder()
    try:
        server.status = status
        server.location = elsewhere.url.replace("127.0.0.1", "user:pw@127.0.0.1")
        assert not sender(server.url, tmp_path).send(b"payload")
        assert elsewhere.calls == []  # no bodiless GET, no Authorization header sent to another host
        assert len(ready(tmp_path)) == 1
        (record,) = [r for r in caplog.records if "redirect" in r.getMessage()]
        assert record.levelno == logging.ERROR and f"HTTP {status}" in record.getMessage()
        assert "pw@" not in caplog.text
    finally:
        elsewhere.close()


def test_a_dns_lookup_that_hangs_is_bounded_and_the_payload_spooled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: object, *args: object, **kwargs: object) -> object:
        if host == "collector.example":
            release.wait(10)  # a resolver that does not answer: the socket timeout does not apply
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        started = time.monotonic()
        assert not sender("http://collector.example:4318/v1/logs", tmp_path, timeout=0.5).send(b"payload")
        assert time.monotonic() - started < 1.5
        assert len(ready(tmp_path)) == 1
    finally:
        release.set()


def test_a_server_trickling_one_byte_at_a_time_is_bounded(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if stop.wait(0.2):  # each byte within the socket timeout: it never fires
                break
            conn.sendall(bytes([byte]))
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/logs"
        assert not sender(url, tmp_path, timeout=0.8).send(b"payload")
        assert time.monotonic() - started < 2.0
        assert len(ready(tmp_path)) == 1
    finally:
        stop.set()
        listener.close()


def test_one_refused_signal_does_not_block_the_others_in_replay(server: Recorder, tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2**20)
    for signal in ("logs", "metrics", "logs", "traces"):  # the logs are oldest
        spool.release(spool.write_inflight(signal, signal.encode()))
    server.status_by_path = {"/v1/logs": 503}
    base = server.url.rsplit("/v1/", 1)[0]
    senders = {
        signal: transport.Sender(signal, Endpoint(url=f"{base}/v1/{signal}"), spool, 2.0)
        for signal in ("logs", "metrics", "traces")
    }
    assert transport.replay(spool, senders, time.monotonic() + 5) == 2
    assert sorted(path for _, path in server.calls) == ["/v1/logs", "/v1/metrics", "/v1/traces"]
    assert sorted(name.split(".")[-2] for name in ready(tmp_path)) == ["logs", "logs"]


def test_credentials_in_the_endpoint_url_are_never_logged(
    server: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_plugin.core import config

    base = server.url.rsplit("/v1/", 1)[0].replace("127.0.0.1", "etl:s3cr3t-pw@127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    endpoint = config._endpoint("logs")  # the env part of config.load(), without importing Airflow's logging setup
    server.status = 503
    with caplog.at_level(logging.DEBUG):
        assert not transport.Sender("logs", endpoint, Spool(tmp_path, 2**20), 2.0).send(b"payload")
        srv = Recorder()
        port = srv.server_address[1]
        srv.close()
        refused = Endpoint(url=f"http://etl:s3cr3t-pw@127.0.0.1:{port}/v1/logs")
        assert not transport.Sender("logs", refused, Spool(tmp_path, 2**20), 2.0).send(b"payload")
    assert "s3cr3t-pw" not in caplog.text and "127.0.0.1" in caplog.text
    assert "s3cr3t-pw" not in repr(endpoint)
    ((headers, _),) = server.requests  # the credentials went as Basic auth, as the SDK's exporter does
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"etl:s3cr3t-pw").decode()


def test_spool_of_another_pid_namespace_is_taken_over_by_age_not_pid(tmp_path):
    """--abandoned-after (the node agent draining pods' spools): an in-flight file whose process id would
    read as gone is left alone while it is younger than the bound, and taken over once older."""
    writer = Spool(tmp_path, 2**20)
    path = writer.write_inflight("logs", b"x")
    dead = path.with_name(path.name.rsplit("-", 1)[0] + "-999999999")  # no such pid on this host
    path.rename(dead)

    assert list(Spool(tmp_path, 2**20, abandoned_after=600).claim()) == []
    assert dead.exists()
    time.sleep(0.05)
    (claimed,) = Spool(tmp_path, 2**20, abandoned_after=0.01).claim()
    assert claimed.signal == "logs" and claimed.payload == b"x"
