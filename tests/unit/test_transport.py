"""The spooling OTLP/HTTP sender (otel_plugin.core.transport, otel_plugin.core.spool) against a local recording HTTP
server: delivery, headers, what is kept or dropped per answer, fail-fast after a timeout, replay order,
the spool's cap and its claims across processes. Header values (credentials) never reach the log."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otel_plugin.core import transport
from otel_plugin.core.config import Endpoint
from otel_plugin.core.spool import Spool

TOKEN = "tkn-0123456789abcdef"


class Recorder(ThreadingHTTPServer):
    """Answers every POST with ``status`` and keeps (headers, body) of each request."""

    def __init__(self, port: int = 0) -> None:
        self.status = 200
        self.requests: list[tuple[dict[str, str], bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append((dict(self.headers), body))
                self.send_response(recorder.status)
                self.end_headers()

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


@pytest.fixture(autouse=True)
def no_fail_fast_carry_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_down_until", {})


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
    assert list(tmp_path.iterdir()) == []


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
    assert list(tmp_path.iterdir()) == []
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
        transport._down_until.clear()  # the cool-down is over
        delivered, pending = transport.replay(send.spool, {"logs": send}, time.monotonic() + 5)
        assert (delivered, pending) == (2, 0)
        assert [body for _, body in srv.requests] == [b"one", b"two"]  # oldest first
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
    assert transport.replay(spool, {"logs": send}, time.monotonic() + 5) == (0, 3)
    assert len(server.requests) == 1


def test_spool_cap_drops_the_oldest_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=2500)
    for i in range(5):
        spool.release(spool.write_inflight("logs", bytes([i]) * 1000))
    kept = [(tmp_path / name).read_bytes()[0] for name in ready(tmp_path)]
    assert kept == [3, 4]
    assert "dropped the 1 oldest" in caplog.text


def test_in_flight_files_of_a_live_process_are_left_alone_and_a_dead_ones_reclaimed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2**20)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid, payload in ((int(dead.stdout), b"orphan"), (alive.pid, b"busy")):
            (tmp_path / f"00000000000000000001-{payload.decode()}.logs.inflight-{pid}").write_bytes(payload)
        claimed = [payload for _, path, payload in spool.claim()]
        assert claimed == [b"orphan"]
    finally:
        alive.kill()
        alive.wait()
