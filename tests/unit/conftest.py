"""Unit-test fixtures: the plugin's real pipeline with in-memory exporters, and Airflow-shaped objects."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_plugin import api
from otel_plugin.core import config, pipeline, process
from otel_plugin.core.otel_compat import InMemoryLogRecordExporter
from otel_plugin.core.transport import DELTA

T0 = dt.datetime(2026, 11, 27, 1, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def fresh_process_state() -> Iterator[None]:
    """Each test starts as a new process would: no configuration, pipeline, role, facts, cool-downs or warnings."""
    process.reset()
    yield
    process.reset()


class AccumulatingReader(InMemoryMetricReader):
    """Keeps every collection: the plugin flushes (collects) after each task, and deltas do not repeat."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality=DELTA)
        self.collected: list = []

    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:
        if metrics_data is not None:
            self.collected.append(metrics_data)


@dataclass
class Captured:
    pipe: pipeline.Pipeline
    span_exporter: InMemorySpanExporter
    log_exporter: InMemoryLogRecordExporter
    reader: AccumulatingReader

    def spans(self):
        self.pipe.flush()
        return self.span_exporter.get_finished_spans()

    def events(self) -> list[dict]:
        self.pipe.flush()
        return [dict(r.log_record.attributes) for r in self.log_exporter.get_finished_logs()]

    def points(self, name: str) -> list[tuple[dict, object]]:
        """(attributes, data point) of one metric from every collection so far (deltas: one point per flush)."""
        self.reader.collect()
        found = []
        for rm in (rm for data in self.reader.collected for rm in data.resource_metrics):
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes), p) for p in metric.data.data_points]
        return found


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """The listener puts the running try's ids into os.environ (for child processes); undo it per test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def captured(tmp_path, monkeypatch) -> Iterator[Captured]:
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__SPOOL_DIR", str(tmp_path / "spool"))
    config.reset()
    cfg = config.load()
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    reader = AccumulatingReader()
    pipe = pipeline.Pipeline(cfg, span_exporter=spans, log_exporter=logs, metric_reader=reader)
    pipeline.install(pipe)
    process.current().role = "task"
    api.begin_task(None, None)
    yield Captured(pipe, spans, logs, reader)
    pipeline.install(None)
    config.reset()


def make_ti(**overrides: object) -> SimpleNamespace:
    """A task instance shaped like the task SDK's RuntimeTaskInstance (the fields the plugin reads)."""
    fields = {
        "dag_id": "etl",
        "task_id": "load",
        "run_id": "manual__2026-11-27T01:00:00+00:00",
        "try_number": 1,
        "max_tries": 1,
        "map_index": -1,
        "state": "success",
        "start_date": T0,
        "end_date": T0 + dt.timedelta(seconds=3),
        "hostname": "worker-1",
        "queue": "default",
        "log_url": "http://localhost:8080/dags/etl/runs/r/tasks/load?try_number=1",
        "task": SimpleNamespace(task_type="PythonOperator", pool="default_pool", retries=1),
        "context_carrier": None,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def make_dag_run(tis: list[object] = (), **overrides: object) -> SimpleNamespace:
    fields = {
        "dag_id": "etl",
        "run_id": "manual__2026-11-27T01:00:00+00:00",
        "state": "success",
        "start_date": T0,
        "end_date": T0 + dt.timedelta(seconds=30),
        "run_type": "manual",
        "clear_number": 0,
        "context_carrier": None,
    }
    fields.update(overrides)
    run = SimpleNamespace(**fields)
    run.get_task_instances = lambda session=None: list(tis)
    return run
