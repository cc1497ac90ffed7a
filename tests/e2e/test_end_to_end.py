"""End to end: real DAG runs (scheduler, api-server, dag-processor, LocalExecutor worker processes) read back
from Prometheus, VictoriaLogs and Jaeger through the query catalogue and the run lookup.

Counts are exact: the DAG ids are new each session, so every counter series starts in this session, from a
0 sample (created-timestamp ingestion); raw samples are added up, and increase() is evaluated at a scrape
time, where it does not extrapolate. Both count across a Collector restart (a counter reset) as long as
Prometheus scraped the counts before it.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest
import requests

from otel_plugin.__main__ import main
from otel_plugin.core import contract, ids
from otel_plugin.readback import lookup, queries
from otel_plugin.readback.stores import Jaeger, Prometheus, Span, VictoriaLogs
from testkit import stackutil
from tests.e2e.conftest import DAGS, FIRST_CARD_RUNS

pytestmark = [pytest.mark.airflow, pytest.mark.stack]

BURST_SIZE = 55  # tests/e2e/dags/e2e_dags.py
CARD_RUNS = 30
RUN_TIMEOUT = 300.0
LANDING_TIMEOUT = 60.0  # seconds for a finished run's telemetry to be queryable
WINDOW = "30m"  # longer than the session: every series of this session starts inside it
RUN_SCOPED_LABELS = {"run_id", "try_number", "map_index", "trace_id", "span_id", "cicd_pipeline_run_id", "hostname"}

prometheus, victorialogs, jaeger = Prometheus(), VictoriaLogs(), Jaeger()


# --- reading back ---------------------------------------------------------------------------------------


def finished(airflow, name: str, runs: dict[str, list[str]], index: int = 0) -> tuple[str, str, dict[str, Any]]:
    """(dag_id, run_id, the run from the REST API) once the run has finished."""
    dag_id, run_id = DAGS[name], runs[name][index]
    airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    return dag_id, run_id, airflow.dag_run(dag_id, run_id)


def timeline(airflow, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The run's events (catalogue: run_timeline), once the terminal event of every try and the run are in."""
    logsql = queries.render(queries.get("run_timeline"), "logsql", dag_id=dag_id, run_id=run_id)
    want = airflow.ended_tries(dag_id, run_id) + 1
    return stackutil.wait_until(
        lambda: victorialogs.query(logsql),
        lambda rows: sum(r["state"] != "running" for r in rows) >= want,
        timeout=LANDING_TIMEOUT,
        what=f"{want} terminal events of {dag_id} {run_id}",
    )


def trace_spans(dag_id: str, run_id: str, count: int) -> list[Span]:
    """The run's trace from Jaeger, once it holds ``count`` spans."""
    trace_id = f"{ids.trace_id(dag_id, run_id):032x}"
    spans = stackutil.wait_until(
        lambda: jaeger.trace(trace_id) or [],
        lambda found: len(found) >= count,
        timeout=LANDING_TIMEOUT,
        what=f"{count} spans in trace {trace_id}",
    )
    assert len(spans) == count, [(s.name, s.attributes.get("map_index")) for s in spans]
    return spans


def last_scrape() -> float:
    """When Prometheus last scraped the Collector: increase() evaluated there does not extrapolate forward."""
    return float(prometheus.query('timestamp(up{job="otelcol"})')[0]["value"][1])


def wait_for_run_metrics(dag_id: str, runs: int) -> float:
    """Wait until Prometheus has counted ``runs`` finished runs of the DAG (the scheduler exports a run's
    count after its tasks' counts); the time of that scrape."""

    def counted() -> tuple[float, float]:
        at = last_scrape()
        return at, sum(promql("dag_run_counts", at, dag_id=dag_id).values())

    at, _ = stackutil.wait_until(
        counted, lambda found: found[1] == runs, timeout=LANDING_TIMEOUT, what=f"{runs} runs of {dag_id} counted"
    )
    return at


def promql(name: str, at: float, **values: queries.FilterValue) -> dict[tuple[str, ...], float]:
    """A catalogue metric query evaluated at a scrape time: {(its `by` labels except dag_id): value}."""
    query = queries.get(name)
    assert isinstance(query.spec, queries.CounterIncrease)
    by = [label for label in query.spec.by if label != "dag_id"]
    result = prometheus.query(queries.render(query, "promql", window=WINDOW, **values), at=at)
    return {tuple(r["metric"][label] for label in by): float(r["value"][1]) for r in result}


def terminal(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "task_instance" and e["state"] != "running"]


def parse_us(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1_000_000)


# --- the tests ------------------------------------------------------------------------------------------


def test_concurrent_failures_are_counted_exactly(airflow, runs):
    dag_id, run_id, run = finished(airflow, "burst", runs)
    assert run["state"] == "failed"
    failed = sorted(ti["map_index"] for ti in airflow.task_instances(dag_id, run_id) if ti["state"] == "failed")
    assert failed == list(range(BURST_SIZE))

    # Prometheus: the raw samples add up exactly; the series starts from a 0 sample, so increase() keeps the
    # first failures, and evaluated at a scrape it does not extrapolate.
    wait_for_run_metrics(dag_id, 1)
    selector = f'{queries.TASK_FINISHED}{{dag_id="{dag_id}",task_id="explode",state="failed"}}'
    samples = stackutil.prom_samples(selector, WINDOW)
    assert samples[0][1] == 0 and stackutil.counter_total(samples) == BURST_SIZE, samples
    at = samples[-1][0]
    first_t, first_value = next((t, v) for t, v in samples if v > 0)
    assert promql("task_failures", first_t, dag_id=dag_id, task_id="explode") == {("explode",): first_value}
    assert promql("task_failures", at, dag_id=dag_id, task_id="explode") == {("explode",): BURST_SIZE}
    assert promql("task_counts", at, dag_id=dag_id) == {("explode", "failed"): BURST_SIZE}

    # VictoriaLogs: one failure event per map index (catalogue: run_failures).
    events = timeline(airflow, dag_id, run_id)
    logsql = queries.render(queries.get("run_failures"), "logsql", dag_id=dag_id, run_id=run_id, task_id="explode")
    failures = victorialogs.query(logsql)
    assert len(failures) == BURST_SIZE
    assert sorted(int(r["map_index"]) for r in failures) == list(range(BURST_SIZE))
    assert {(r["state"], r["error.type"]) for r in failures} == {("failed", "RuntimeError")}

    # Jaeger: every failure event's span is in the run's single trace, under the root.
    spans = trace_spans(dag_id, run_id, BURST_SIZE + 1)
    (root,) = [s for s in spans if s.parent_id is None]
    assert {s.parent_id for s in spans if s is not root} == {root.span_id}
    assert {e["span_id"] for e in terminal(events)} == {s.span_id for s in spans if s is not root}
    ends = Counter(e["end_time"][:19] for e in terminal(events))  # to the second
    print(
        f"\n{BURST_SIZE} mapped failures -> Prometheus {stackutil.counter_total(samples):g} "
        f"(first scrape {first_value:g}), "
        f"VictoriaLogs {len(failures)} events with {len({r['map_index'] for r in failures})} distinct map_index, "
        f"Jaeger {len(spans)} spans in 1 trace; failures per second: {sorted(ends.values(), reverse=True)}"
    )


def test_retries_are_separate_tries_and_metrics_tell_them_from_final_failures(airflow, runs):
    dag_id, run_id, run = finished(airflow, "retry", runs)
    assert run["state"] == "failed"
    tries = {(e["task_id"], int(e["try_number"])): e for e in terminal(timeline(airflow, dag_id, run_id))}
    assert {key: e["state"] for key, e in tries.items()} == {
        ("flaky", 1): "up_for_retry", ("flaky", 2): "success",
        ("doomed", 1): "up_for_retry", ("doomed", 2): "failed",
    }  # fmt: skip

    spans = {s.span_id: s for s in trace_spans(dag_id, run_id, 5)}
    assert len({e["span_id"] for e in tries.values()}) == 4  # one span per try
    for (task_id, try_number), event in tries.items():
        span = spans[event["span_id"]]
        assert (span.name, span.attributes["try_number"]) == (f"task {task_id}", try_number)
        assert span.error == (event["state"] != "success")

    at = wait_for_run_metrics(dag_id, 1)
    assert promql("task_retries", at, dag_id=dag_id) == {("flaky",): 1, ("doomed",): 1}
    assert promql("task_failures", at, dag_id=dag_id) == {("doomed",): 1}
    assert promql("task_counts", at, dag_id=dag_id) == {
        ("flaky", "up_for_retry"): 1, ("flaky", "success"): 1, ("doomed", "up_for_retry"): 1, ("doomed", "failed"): 1,
    }  # fmt: skip


def test_run_lookup_returns_the_complete_timeline_in_order(airflow, runs, capsys):
    dag_id, run_id, _ = finished(airflow, "retry", runs)
    timeline(airflow, dag_id, run_id)  # wait until it has landed
    found = lookup.lookup(dag_id, run_id)
    rows = found.events

    assert [r.time for r in rows] == sorted(r.time for r in rows)
    assert [(r.event, r.state) for r in (rows[0], rows[-1])] == [("dag_run", "running"), ("dag_run", "failed")]
    per_task = {task: [(r.try_number, r.state) for r in rows if r.task_id == task] for task in ("flaky", "doomed")}
    assert per_task == {
        "flaky": [("1", "running"), ("1", "up_for_retry"), ("2", "running"), ("2", "success")],
        "doomed": [("1", "running"), ("1", "up_for_retry"), ("2", "running"), ("2", "failed")],
    }
    assert len(rows) == 10
    assert "ValueError: e2e: fails on every try" in next(r.error for r in rows if r.state == "failed")
    # Airflow agrees on each task's last try.
    for ti in airflow.task_instances(dag_id, run_id):
        last = [r for r in rows if r.task_id == ti["task_id"]][-1]
        assert (last.try_number, last.state) == (str(ti["try_number"]), ti["state"])
    assert [len(spans or []) for spans in found.traces.values()] == [5]

    assert main(["lookup", "--dag", dag_id, "--run", run_id]) == 0
    out = capsys.readouterr().out
    assert f"run {run_id} ({found.service}): 10 events" in out and "task doomed (try 2)" in out


@pytest.mark.parametrize("name", ["zero", "sched", "retry"])
def test_one_trace_per_run_whose_root_covers_the_run(airflow, runs, name):
    dag_id, run_id, run = finished(airflow, name, runs)
    events = timeline(airflow, dag_id, run_id)
    trace_id = f"{ids.trace_id(dag_id, run_id):032x}"
    assert {e["trace_id"] for e in events} == {trace_id}

    found = jaeger.search(queries.jaeger_search(queries.get("run_trace"), dag_id=dag_id, run_id=run_id))
    assert [t["traceID"] for t in found] == [trace_id]
    spans = trace_spans(dag_id, run_id, len(terminal(events)) + 1)
    (root,) = [s for s in spans if s.parent_id is None]
    assert root.name == f"RUN {dag_id}"
    root_end = root.start_us + root.duration_us
    # The root span is the run as Airflow recorded it (to the millisecond) ...
    assert abs(root.start_us - parse_us(run["start_date"])) <= 1000
    assert abs(root_end - parse_us(run["end_date"])) <= 1000
    # ... and every task try hangs under it, inside it.
    for span in spans:
        if span is not root:
            assert span.parent_id == root.span_id
            assert root.start_us <= span.start_us and span.start_us + span.duration_us <= root_end, span


def test_success_with_zero_rows_is_found_by_a_log_query_and_a_metric(airflow, runs):
    dag_id, run_id, run = finished(airflow, "zero", runs)
    assert run["state"] == "success"
    timeline(airflow, dag_id, run_id)
    logsql = queries.render(queries.get("zero_rows_events"), "logsql", dag_id=dag_id, run_id=run_id)
    assert [(r["task_id"], r["rows_written"]) for r in victorialogs.query(logsql)] == [("empty_load", "0")]
    at = wait_for_run_metrics(dag_id, 1)
    assert promql("zero_rows_tasks", at, dag_id=dag_id) == {("empty_load",): 1}
    # Control: the task that loaded rows succeeded too, and its rows were counted.
    assert promql("task_rows", at, dag_id=dag_id)[("full_load", "written")] == 5


def test_scheduler_side_states_are_recorded(airflow, runs):
    dag_id, run_id, run = finished(airflow, "sched", runs)
    assert run["state"] == "failed"
    recorded = {
        (e["task_id"], e["state"], str(e.get("reconciled", "false")).lower() == "true")
        for e in terminal(timeline(airflow, dag_id, run_id))
    }
    assert recorded == {
        ("fail_hard", "failed", False), ("skip_self", "skipped", False),
        ("after_failure", "upstream_failed", True), ("after_skip", "skipped", True),
    }  # fmt: skip
    airflow_states = {(ti["task_id"], ti["state"]) for ti in airflow.task_instances(dag_id, run_id)}
    assert airflow_states == {(task, state) for task, state, _ in recorded}
    at = wait_for_run_metrics(dag_id, 1)
    assert promql("task_counts", at, dag_id=dag_id) == {
        ("fail_hard", "failed"): 1, ("skip_self", "skipped"): 1,
        ("after_failure", "upstream_failed"): 1, ("after_skip", "skipped"): 1,
    }  # fmt: skip


def plugin_series(dag_id: str, since: float) -> set[frozenset[tuple[str, str]]]:
    """Every Prometheus series of the plugin's per-run metrics (counters, histograms) for the DAG since
    ``since``, as label sets; the scheduler's schedule gauges (one per DAG whatever the runs) are left out."""
    gauges = "|".join(m.prometheus for m in contract.METRICS if m.kind == "gauge")
    response = requests.get(
        f"{stackutil.PROMETHEUS}/api/v1/series",
        params={"match[]": f'{{__name__=~"airflow_otel_.+",__name__!~"{gauges}",dag_id="{dag_id}"}}', "start": since},
        timeout=10,
    )
    response.raise_for_status()
    return {frozenset(labels.items()) for labels in response.json()["data"]}


def test_series_stay_the_same_from_3_to_30_runs(airflow, runs):
    dag_id = DAGS["card"]
    since = parse_us(airflow.dag_run(dag_id, runs["card"][0])["queued_at"]) / 1e6 - 60
    for run_id in runs["card"]:
        assert airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT) == "success"
    wait_for_run_metrics(dag_id, FIRST_CARD_RUNS)
    after_3 = plugin_series(dag_id, since)

    more = [airflow.trigger(dag_id) for _ in range(CARD_RUNS - FIRST_CARD_RUNS)]
    for run_id in more:
        assert airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT) == "success"
    at = wait_for_run_metrics(dag_id, CARD_RUNS)
    after_30 = plugin_series(dag_id, since)

    assert after_30 == after_3
    assert not {name for labels in after_30 for name, _ in labels} & RUN_SCOPED_LABELS
    names = Counter(dict(labels)["__name__"] for labels in after_30)
    assert names[queries.TASK_RETRIES] == 1 and names[queries.TASK_CHECKS] == 2  # flaky; passed and failed
    # The 30 runs were all counted: 2 mapped parts and 1 retry per run.
    assert promql("task_counts", at, dag_id=dag_id) == {
        ("rows", "success"): 2 * CARD_RUNS, ("flaky", "up_for_retry"): CARD_RUNS, ("flaky", "success"): CARD_RUNS,
    }  # fmt: skip
    print(f"\ncardinality: {len(after_3)} series after {FIRST_CARD_RUNS} runs, {len(after_30)} after {CARD_RUNS}")
