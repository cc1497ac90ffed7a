"""Smoke tests against the running native stack (compose/stack.sh): deltas from many concurrent processes
add up exactly in one Prometheus series, a new series' first increment counts, events are found in
VictoriaLogs in one stream, spans from two processes form one Jaeger trace, run ids never reach metrics.

Every sender is a separate OS process with its own SDK providers and its own service.instance.id, as an
Airflow task process is. Names carry a fresh uuid, so runs against the same stack do not interfere.
"""

from __future__ import annotations

import uuid

import pytest

from otel_plugin.core import ids
from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

# A few scrape intervals (5 s) plus the Collector's aggregation hop (20 ms timer).
PROPAGATION_S = 30


def unique() -> str:
    return uuid.uuid4().hex[:12]


def add_one_each(counter: str, attributes: dict[str, object], processes: int) -> None:
    su.run_processes(su.send_delta_metrics, [(counter, attributes)] * processes)


@pytest.mark.parametrize("processes", [20, 50, 200])
def test_deltas_from_concurrent_processes_add_up_exactly_in_one_series(processes: int) -> None:
    uid = unique()
    # A user's own metric names, not the plugin's: the aggregation must not depend on the name.
    counter, histogram = f"stacktest.{uid}.jobs", f"stacktest.{uid}.work"
    attributes = {"dag_id": f"dag_{uid}", "task_id": "load", "state": "success"}
    observations = [0.25 + 0.5 * (i % 4) for i in range(processes)]  # exact in binary, so sums are too
    accepted_before, dropped_before = su.delta_to_cumulative_points()

    su.run_processes(su.send_delta_metrics, [(counter, attributes, 1, histogram, obs) for obs in observations])

    total = f"stacktest_{uid}_jobs_total"
    su.wait_until(lambda: su.prom_value(total), ok=lambda v: v == processes, timeout=PROPAGATION_S, what=total)
    series = su.prom_query(total)
    assert len(series) == 1, series
    assert series[0]["metric"]["dag_id"] == attributes["dag_id"]
    count, total_s = f"stacktest_{uid}_work_seconds_count", f"stacktest_{uid}_work_seconds_sum"
    su.wait_until(lambda: su.prom_value(count), ok=lambda v: v == processes, timeout=PROPAGATION_S, what=count)
    assert su.prom_value(total_s) == sum(observations)
    assert len(su.prom_query(f'stacktest_{uid}_work_seconds_bucket{{le="+Inf"}}')) == 1
    accepted, dropped = su.delta_to_cumulative_points()
    assert dropped == dropped_before, "delta_to_cumulative dropped points"
    # Every counter and histogram point went through it; the Collector first merges the deltas of one
    # stream that arrive in the same aggregation request (collector/config.yaml, step 4), so between 2 (one
    # request) and 2 per process (one request each).
    assert 2 <= accepted - accepted_before <= 2 * processes


def test_processes_whose_resources_differ_still_add_up_in_one_series() -> None:
    """Workers of one service on different images or hosts (another OpenTelemetry SDK while they are
    upgraded, a pod or host name): only what names the series may tell streams apart (collector/config.yaml
    step 1), or Prometheus would read each stream's total in turn (measured before: 2 + 2 read 2)."""
    uid = unique()
    counter = f"stacktest.{uid}.mixed"
    attributes = {"dag_id": f"dag_{uid}", "task_id": "t", "state": "failed"}
    resources = [{"telemetry.sdk.version": "1.27.0"}, {"telemetry.sdk.version": "1.45.2"},
                 {"k8s.pod.name": "worker-a"}, {"host.name": "worker-b"}]
    su.run_processes(su.send_delta_metrics, [(counter, attributes, 1, None, 0.0, r) for r in resources] * 3)
    total = f"stacktest_{uid}_mixed_total"
    su.wait_until(lambda: su.prom_value(total), ok=lambda v: v == 12, timeout=PROPAGATION_S, what=total)


def test_first_increment_of_a_new_series_counts() -> None:
    uid = unique()
    counter, total = f"stacktest.{uid}.first", f"stacktest_{uid}_first_total"
    attributes = {"dag_id": f"dag_{uid}", "task_id": "t", "state": "success"}

    add_one_each(counter, attributes, 1)
    su.wait_until(lambda: su.prom_value(total), ok=lambda v: v == 1, timeout=PROPAGATION_S, what=total)
    samples = su.prom_samples(total)
    # The created timestamp became a 0 sample before the first value: the series starts from 0, not 1.
    assert samples[0][1] == 0, samples
    # Evaluated at the last sample, increase() neither extrapolates forward nor (from a 0) backward.
    assert su.prom_value(f"increase({total}[5m])", at=samples[-1][0]) == pytest.approx(1, abs=1e-9)

    add_one_each(counter, attributes, 3)
    su.wait_until(lambda: su.prom_value(total), ok=lambda v: v == 4, timeout=PROPAGATION_S, what=total)
    last = su.prom_samples(total)[-1][0]
    assert su.prom_value(f"sum(increase({total}[5m]))", at=last) == pytest.approx(4, abs=1e-9)


def test_run_id_like_attributes_never_reach_metrics() -> None:
    uid = unique()
    counter, total = f"stacktest.{uid}.guarded", f"stacktest_{uid}_guarded_total"
    per_try = [
        {
            "dag_id": f"dag_{uid}",
            "task_id": "t",
            "run_id": f"manual__{uid}_{i}",
            "try_number": i + 1,
            "map_index": i,
            "ti_id": uuid.uuid4().hex,
            "cicd.pipeline.run.id": f"manual__{uid}_{i}",
        }
        for i in range(2)
    ]
    su.run_processes(su.send_delta_metrics, [(counter, attrs) for attrs in per_try])

    su.wait_until(lambda: su.prom_value(total), ok=lambda v: v == 2, timeout=PROPAGATION_S, what=total)
    labels = su.prom_query(total)[0]["metric"]
    assert {"dag_id", "task_id"} <= labels.keys()
    leaked = {"run_id", "try_number", "map_index", "ti_id", "cicd_pipeline_run_id"} & labels.keys()
    assert not leaked, labels


def test_event_found_by_run_id_in_one_stream() -> None:
    uid = unique()
    run_id, dag_id = f"manual__{uid}", f"dag_{uid}"
    events = [
        (
            f"task t{i} success",
            {"event": "task_instance", "dag_id": dag_id, "task_id": f"t{i}", "run_id": run_id, "try_number": 1},
        )
        for i in range(3)
    ]
    su.run_processes(su.send_log_event, events)

    query = f'run_id:"{run_id}"'
    records = su.wait_until(lambda: su.logsql(query), ok=lambda r: len(r) >= 3, timeout=PROPAGATION_S, what=query)
    assert len(records) == 3, records
    assert {r["task_id"] for r in records} == {"t0", "t1", "t2"}
    assert all(r["dag_id"] == dag_id and r["event"] == "task_instance" for r in records)
    # Three processes, three service.instance.ids, yet one stream: only service.name is a stream field.
    assert len({r["service.instance.id"] for r in records}) == 3
    assert su.logsql_streams(query) == [f'{{service.name="{su.SERVICE_NAME}"}}']


def test_spans_from_two_processes_form_one_trace() -> None:
    uid = unique()
    dag_id, run_id = f"dag_{uid}", f"manual__{uid}"
    trace_id, root = ids.trace_id(dag_id, run_id), ids.root_span_id(dag_id, run_id)
    task = ids.task_span_id(dag_id, run_id, 0, "load", -1, 1)
    common = {"dag_id": dag_id, "run_id": run_id}
    su.run_processes(
        su.send_span,
        [
            (f"RUN {dag_id}", trace_id, root, None, common),
            ("task load", trace_id, task, root, {**common, "task_id": "load", "try_number": 1}),
        ],
    )

    trace = su.wait_until(
        lambda: su.jaeger_trace(trace_id), ok=lambda t: bool(t) and len(t["spans"]) == 2, what="trace"
    )
    spans = {int(s["spanID"], 16): s for s in trace["spans"]}
    assert spans.keys() == {root, task}
    assert [int(r["spanID"], 16) for r in spans[task]["references"]] == [root]
    assert len(trace["processes"]) == 2, "expected spans from two processes (two service.instance.ids)"

    found = su.jaeger_search({"dag_id": dag_id})
    assert [int(t["traceID"], 16) for t in found] == [trace_id]
