"""Custom metrics in a task (otel_plugin.api.counter/histogram/up_down_counter): names, labels, caps, delta."""

from __future__ import annotations

import logging
import uuid

import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality

from otel_plugin import api
from otel_plugin.airflow import listener
from otel_plugin.core import contract
from otel_plugin.core.custom_metrics import check_name, check_unit, prometheus_name
from tests.unit.conftest import make_ti


def fresh(prefix: str) -> str:
    """A metric name no other test used: instruments and their warnings are per process."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def in_task(captured):
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running"))
    return captured


def test_counter_gets_dag_and_task_ids_and_own_labels_and_is_delta(in_task):
    name = fresh("rows_processed")
    rows = api.counter(name, description="Rows")
    rows.add(5, {"source": "s3"})
    rows.add(2, {"source": "s3"})
    (attrs, point), = in_task.points(name)
    assert attrs == {"dag_id": "etl", "task_id": "load", "source": "s3"}
    assert point.value == 7
    rows.add(1, {"source": "s3"})
    assert [p.value for _, p in in_task.points(name)] == [7, 1]  # each collection: only the increase
    metric = next(m for data in in_task.reader.collected for rm in data.resource_metrics
                  for sm in rm.scope_metrics for m in sm.metrics if m.name == name)
    assert metric.data.aggregation_temporality == AggregationTemporality.DELTA


def test_up_down_counter_and_histogram_are_delta_too(in_task):
    gauge_like, hist = fresh("queue_depth"), fresh("batch")
    api.up_down_counter(gauge_like).add(3)
    api.up_down_counter(gauge_like).add(-1)
    api.histogram(hist, unit="s", buckets=(1.0, 5.0)).record(2.5)
    in_task.points(gauge_like)
    temporality = {m.name: m.data.aggregation_temporality for data in in_task.reader.collected
                   for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert temporality[gauge_like] == temporality[hist] == AggregationTemporality.DELTA
    assert [p.value for _, p in in_task.points(gauge_like)] == [2]
    (_, point), = in_task.points(hist)
    assert (point.count, point.sum, list(point.explicit_bounds)) == (1, 2.5, [1.0, 5.0])


def test_run_scoped_label_is_refused_once_and_lands_on_the_event(in_task, caplog):
    name = fresh("loaded")
    with caplog.at_level(logging.WARNING):
        api.counter(name).add(1, {"run_id": "manual__x", "kind": "a"})
        api.counter(name).add(1, {"run_id": "manual__y", "kind": "a"})
    (attrs, point), = in_task.points(name)
    assert attrs == {"dag_id": "etl", "task_id": "load", "kind": "a"} and point.value == 2
    warnings = [r.getMessage() for r in caplog.records if "'run_id'" in r.getMessage()]
    assert len(warnings) == 1 and "recorded on the event instead" in warnings[0]
    listener.on_task_instance_success(previous_state="running", task_instance=make_ti())
    event = in_task.events()[-1]
    assert event["fact.run_id"] == "manual__y"


@pytest.mark.parametrize("key", ["dag_id", "task_id", "job", "instance", "le"])
def test_reserved_labels_are_ignored(in_task, key):
    name = fresh("reserved")
    api.counter(name).add(1, {key: "mine"})
    (attrs, _), = in_task.points(name)
    assert attrs == {"dag_id": "etl", "task_id": "load"}


def test_invalid_label_keys_are_dropped(in_task):
    name = fresh("labels")
    api.counter(name).add(1, {"ok_key": "v", "bad-key": "v", "__x": "v", "1st": "v"})
    (attrs, _), = in_task.points(name)
    assert set(attrs) == {"dag_id", "task_id", "ok_key"}


def test_label_values_are_masked_and_bounded(in_task):
    name = fresh("masked")
    api.counter(name).add(1, {"url": "postgres://u:hunter2@db/x", "long": "x" * 5000})
    (attrs, _), = in_task.points(name)
    assert "hunter2" not in attrs["url"] and len(attrs["long"]) <= 256


def test_label_sets_over_the_cap_fold_into_one_overflow_set(in_task, caplog):
    name = fresh("capped")
    with caplog.at_level(logging.WARNING):
        for i in range(contract.CUSTOM_MAX_LABEL_SETS + 20):
            api.counter(name).add(1, {"file": f"f{i}"})
    points = in_task.points(name)
    assert len(points) == contract.CUSTOM_MAX_LABEL_SETS + 1
    overflow = [p.value for attrs, p in points if attrs.get(contract.OVERFLOW_LABEL) == "true"]
    assert overflow == [20]
    assert sum(p.value for _, p in points) == contract.CUSTOM_MAX_LABEL_SETS + 20  # totals stay exact
    assert sum("label sets" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("name", ["", "1rows", "rows-processed", "rows processed", "__rows", "é", "x" * 129, None])
def test_invalid_names_record_nothing_and_never_raise(in_task, name, caplog):
    with caplog.at_level(logging.WARNING):
        api.counter(name).add(1)  # type: ignore[arg-type]
    assert check_name(name) is not None
    assert any("not recorded" in r.getMessage() for r in caplog.records)


def test_invalid_unit_and_values_record_nothing(in_task):
    bad_unit, negative = fresh("unit"), fresh("neg")
    api.counter(bad_unit, unit="furlongs").add(1)
    api.counter(negative).add(-1)
    api.counter(negative).add("3")  # type: ignore[arg-type]
    api.counter(negative).add(float("nan"))
    assert in_task.points(bad_unit) == [] and in_task.points(negative) == []
    assert check_unit("furlongs") and check_unit("{row}") is None and check_unit("By") is None


def test_outside_a_task_nothing_is_recorded(captured, monkeypatch):
    for key in (*contract.JOB_ENV.values(), *contract.AIRFLOW_CTX_ENV.values()):
        monkeypatch.delenv(key, raising=False)
    name = fresh("outside")
    api.counter(name).add(1)
    assert captured.points(name) == []


@pytest.mark.parametrize(("name", "kind", "unit", "expected"), [
    ("rows_processed", "counter", "", "rows_processed_total"),
    ("rows_processed_total", "counter", "", "rows_processed_total"),
    ("app.rows", "counter", "{row}", "app_rows_total"),
    ("load.bytes", "counter", "By", "load_bytes_total"),
    ("load.size", "counter", "By", "load_size_bytes_total"),
    ("batch", "histogram", "s", "batch_seconds"),
    ("batch_seconds", "histogram", "s", "batch_seconds"),
    ("queue.depth", "up_down_counter", "", "queue_depth"),
])  # fmt: skip
def test_prometheus_names_follow_the_collector_translation(name, kind, unit, expected):
    # The same rules are checked against the real Collector in tests/integration/test_job_side.py.
    assert prometheus_name(name, kind, unit) == expected
