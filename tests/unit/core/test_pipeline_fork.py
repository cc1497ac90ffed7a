"""Fork safety of the pipeline (issue 17): Airflow forks from processes where the pipeline lives.

Each test forks for real: the child reports over a pipe and leaves with ``os._exit``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry._logs import SeverityNumber

from otel_plugin.core import pipeline, process
from otel_plugin.core.otel_compat import LogRecordExporter, LogRecordExportResult, emit_log
from testkit.procs import in_fork

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")  # Linux CI always has it


class SlowLogs(LogRecordExporter):
    """An exporter whose export takes ``delay`` seconds: a request in flight to a slow Collector."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.exported: list[float] = []

    def export(self, batch: Sequence[object]) -> LogRecordExportResult:
        time.sleep(self.delay)
        self.exported.append(time.monotonic())
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _emit_one(pipe: pipeline.Pipeline, body: str = "waiting") -> None:
    """One event, not flushed yet (through otel_compat: the SDK's emit differs between releases)."""
    emit_log(pipe.logger, timestamp=time.time_ns(), context=None, severity_number=SeverityNumber.INFO,
             body=body, attributes={}, event_name="test")


def _child_view() -> dict:
    return {
        "threads": sorted(t.name for t in threading.enumerate()),
        "inherited": process.current().pipeline is not process.UNSET,
    }


@pytest.fixture
def live(captured) -> pipeline.Pipeline:
    """The installed pipeline, with one event emitted and not flushed yet."""
    _emit_one(captured.pipe)
    return captured.pipe


def test_nothing_runs_in_the_background_between_flushes(captured) -> None:
    before = set(threading.enumerate())  # other tests may leave abandoned request threads behind
    pipe = pipeline.Pipeline(captured.pipe.cfg, log_exporter=captured.log_exporter)
    _emit_one(pipe)
    assert set(threading.enumerate()) == before
    assert pipe.flush(wait=True)
    assert set(threading.enumerate()) == before


def test_a_forked_child_starts_no_thread_and_forgets_the_parents_pipeline(live, captured) -> None:
    seen = in_fork(_child_view)
    assert seen == {"threads": ["MainThread"], "inherited": False}
    # The parent still has its pipeline and its held event, and exports it once, from here.
    assert pipeline.get() is live
    assert len(captured.log_exporter.get_finished_logs()) == 0
    assert live.flush(wait=True) and len(captured.log_exporter.get_finished_logs()) == 1


def test_a_fork_waits_for_the_flush_in_flight(captured, monkeypatch) -> None:
    slow = SlowLogs(delay=0.5)
    monkeypatch.setattr(captured.pipe._held[-1], "target", slow)  # the events' exporter
    _emit_one(captured.pipe, "in flight")
    captured.pipe.flush(wait=False)
    time.sleep(0.05)  # the flush thread is inside the export now
    seen = in_fork(_child_view)
    forked_at = time.monotonic()
    assert slow.exported and slow.exported[0] <= forked_at  # the export ended before the fork
    assert seen == {"threads": ["MainThread"], "inherited": False}


def test_the_wait_before_a_fork_is_bounded_by_the_flush_budget(captured, monkeypatch) -> None:
    slow = SlowLogs(delay=3.0)  # a Collector that does not answer within the budget
    monkeypatch.setattr(captured.pipe._held[-1], "target", slow)
    _emit_one(captured.pipe, "stuck")
    budget = 0.3
    began = time.monotonic()
    captured.pipe.flush(budget=budget, wait=False)
    in_fork(_child_view)
    assert time.monotonic() - began < budget + 1.0  # not the 3 s the export takes
    captured.pipe.settle()  # its thread would otherwise outlive the test, and the flush deadline is process-wide
    for thread, _ in captured.pipe._flushing:
        thread.join()


def test_the_parents_exit_flush_never_runs_in_a_child(live) -> None:
    def child() -> dict:
        flushed: list[bool] = []
        monkey = pipeline.Pipeline.flush
        pipeline.Pipeline.flush = lambda self, *a, **k: flushed.append(True) or True  # type: ignore[method-assign]
        try:
            pipeline._flush_at_exit(live)
        finally:
            pipeline.Pipeline.flush = monkey  # type: ignore[method-assign]
        return {"flushed": bool(flushed)}

    assert in_fork(child) == {"flushed": False}
