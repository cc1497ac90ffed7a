"""A task process's exit flushes (terminal hook, before_stopping, atexit) through the real OTLP transport and
spool (otel_plugin.core.pipeline): they share one ``flush_budget`` whatever the backlog in the spool or a
hang the socket timeout does not cover, and the task's own payloads (its metrics included) are spooled,
never lost, when the Collector refuses or hangs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_plugin.airflow import recorder
from otel_plugin.core import config, pipeline, process
from tests.unit.conftest import make_ti

from .test_spool import BACKLOG, backlog

BUDGET = 1.0
# Three joins may each outlast the deadline by pipeline.JOIN_GRACE_S (0.25 s); the rest is slack for a
# machine loaded 25-fold (thread wake-ups come late).
BOUND = BUDGET + 3 * 0.25 + 1.5


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET", str(BUDGET))
    process.current().role = "task"
    config.reset()
    yield tmp_path / "spool"
    pipeline.install(None)
    config.reset()


def run_task_and_exit() -> float:
    """One task try in this "task process", then its exit: the seconds the three exit flushes took."""
    pipe = pipeline.Pipeline(config.load())
    pipeline.install(pipe)
    ti = make_ti(state="success")
    recorder.task_running(ti, "queued")
    started = time.monotonic()
    recorder.task_finished(ti, "running", state="success")
    recorder.process_stopping()
    pipeline._flush_at_exit(pipe)
    return time.monotonic() - started


def spooled_signals(spool_dir: Path, skip: set[str] = frozenset()) -> set[str]:
    return {p.name.split(".")[1] for p in spool_dir.iterdir()
            if not p.name.startswith(".") and p.name not in skip}


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: connections are refused


def test_with_a_large_backlog_and_a_refusing_collector_the_exit_takes_one_budget_and_keeps_the_metrics(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{refused_port()}")
    backlog(spool_dir, BACKLOG)
    old = {p.name for p in spool_dir.iterdir()}
    took = run_task_and_exit()
    assert took < BOUND, f"the exit flushes took {took:.2f} s with a budget of {BUDGET} s"
    assert spooled_signals(spool_dir, old) == {"logs", "traces", "metrics"}


def test_a_dns_lookup_that_hangs_keeps_every_signal_and_bounds_the_exit(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: object, *args: object, **kwargs: object) -> object:
        if host == "collector.example":
            release.wait(30)  # the resolver never answers
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        took = run_task_and_exit()
        assert took < BOUND, f"the exit flushes took {took:.2f} s with a budget of {BUDGET} s"
        assert spooled_signals(spool_dir) == {"logs", "traces", "metrics"}
    finally:
        release.set()
