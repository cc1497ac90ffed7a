"""The query catalogue: coverage, exact renderings, escaping in every dialect, Grafana variables."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_plugin.readback import queries as Q

AWKWARD_RUN_ID = 'manual__2026-11-27T01:02:03.456+00:00 "quoted" back\\slash'


def _sample_values(query: Q.Query) -> dict[str, str]:
    return {f: AWKWARD_RUN_ID if f == "run_id" else f"{f}.x+y" for f in query.filters}


def test_catalogue_covers_every_lookup_of_the_issue():
    by_signal = {s: {q.name for q in Q.CATALOGUE if q.signal == s} for s in Q.DIALECTS}
    assert {"run_timeline", "run_failures", "zero_rows_events", "event_counts"} <= by_signal["logs"]
    assert {
        "task_counts", "zero_rows_tasks", "dag_failure_ratio", "task_duration_p95", "task_retries",
        "dag_run_duration_p95",
    } <= by_signal["metrics"]  # fmt: skip
    assert {"run_trace", "dag_traces", "failed_dag_traces"} <= by_signal["traces"]
    assert len(Q.QUERIES) == len(Q.CATALOGUE), "query names must be unique"


@pytest.mark.parametrize("query", Q.CATALOGUE, ids=lambda q: q.name)
def test_every_query_renders_in_each_of_its_dialects(query: Q.Query):
    for dialect in query.dialects:
        with_values = Q.render(query, dialect, **_sample_values(query))
        for_grafana = Q.render_for_grafana(query, dialect)
        assert with_values and for_grafana and with_values != for_grafana
        assert "$" not in with_values
        for field in query.filters:
            assert f"${field}" in unquote(for_grafana)  # Jaeger's renders as a URL query string
    assert Q.render_all(query, **_sample_values(query)).keys() == set(query.dialects)


def test_run_timeline_in_both_log_dialects():
    q = Q.get("run_timeline")
    run = "manual__2026-11-27T01:02:03.456+00:00"
    assert Q.render(q, "logsql", dag_id="etl", run_id=run) == (
        '{service.name="airflow"} dag_id:="etl" run_id:="manual__2026-11-27T01:02:03.456+00:00" | sort by (_time)'
    )
    assert Q.render(q, "logql", dag_id="etl", run_id=run) == (
        '{service_name="airflow"} | dag_id="etl" | run_id="manual__2026-11-27T01:02:03.456+00:00"'
    )


def test_failures_project_error_fields_with_loki_names():
    q = Q.get("run_failures")
    logsql = Q.render(q, "logsql", dag_id="etl")
    assert 'state:in("failed","up_for_retry")' in logsql
    assert "| fields _time, dag_id, run_id, task_id, try_number, map_index, state, error.type, error.message" in (
        logsql
    )
    logql = Q.render(q, "logql", dag_id="etl")
    assert '| state=~"failed|up_for_retry"' in logql
    assert logql.endswith("| keep dag_id, run_id, task_id, try_number, map_index, state, error_type, error_message")


def test_zero_rows_in_logs_and_metrics():
    assert 'zero_rows:="true"' in Q.render(Q.get("zero_rows_events"), "logsql")
    assert '| zero_rows="true"' in Q.render(Q.get("zero_rows_events"), "logql")
    assert Q.render(Q.get("zero_rows_tasks"), "promql", window="30m") == (
        'sum by (dag_id, task_id) (increase(airflow_otel_task_instance_zero_rows_total{job="airflow"}[30m])) > 0'
    )


def test_metric_queries():
    assert Q.render(Q.get("task_counts"), "promql", dag_id="etl", state=("failed", "up_for_retry")) == (
        "sum by (dag_id, task_id, state) "
        '(increase(airflow_otel_task_instance_finished_total'
        '{job="airflow", dag_id="etl", state=~"failed|up_for_retry"}[1h]))'
    )
    ratio = Q.render(Q.get("dag_failure_ratio"), "promql", dag_id="etl")
    failed = (
        "sum by (dag_id) "
        '(increase(airflow_otel_dag_run_finished_total{job="airflow", state="failed", dag_id="etl"}[1h]))'
    )
    every = 'sum by (dag_id) (increase(airflow_otel_dag_run_finished_total{job="airflow", dag_id="etl"}[1h]))'
    assert ratio == f"({failed} or {every} * 0) / {every}"
    assert Q.render(Q.get("task_duration_p95"), "promql") == (
        "histogram_quantile(0.95, sum by (dag_id, task_id, le) "
        '(increase(airflow_otel_task_instance_duration_seconds_bucket{job="airflow"}[1h])))'
    )


def test_event_counts_window():
    q = Q.get("event_counts")
    assert Q.render(q, "logsql", window="6h") == (
        '{service.name="airflow"} _time:6h event:="task_instance" | stats by (dag_id, task_id, state) count() as events'
    )
    assert "_time:" not in Q.render_for_grafana(q, "logsql")  # the datasource sends the dashboard's range
    assert Q.render(q, "logql", window="6h").endswith('| event="task_instance" [6h]))')


def test_trace_queries():
    run = "manual__2026-11-27T01:02:03.456+00:00"
    assert Q.render(Q.get("failed_dag_traces"), "traceql", dag_id="etl") == (
        '{ resource.service.name = "airflow" && span.dag_id = "etl" && status = error }'
    )
    params = Q.jaeger_search(Q.get("run_trace"), dag_id="etl", run_id=run, lookback="2h", limit=5)
    assert params == {
        "service": "airflow",
        "tags": json.dumps({"dag_id": "etl", "run_id": run}, separators=(",", ":")),
        "limit": "5",
        "lookback": "2h",
    }
    rendered = parse_qs(Q.render(Q.get("failed_dag_traces"), "jaeger", dag_id="etl"))
    assert json.loads(rendered["tags"][0]) == {"dag_id": "etl", "error": "true"}


def test_grafana_variables_multi_value_fields_are_regexes_run_id_is_exact():
    q = Q.get("run_failures")
    assert '| dag_id=~"$dag_id" | run_id="$run_id" | task_id=~"$task_id"' in Q.render_for_grafana(q, "logql")
    assert 'dag_id:in($dag_id) run_id:="$run_id" task_id:in($task_id)' in Q.render_for_grafana(q, "logsql")
    trace = Q.render_for_grafana(Q.get("run_trace"), "traceql")
    assert 'span.dag_id =~ "^(?:$dag_id)$" && span.run_id = "$run_id"' in trace
    only_dag = Q.render_for_grafana(Q.get("task_counts"), "promql", variables=["dag_id"], window="$__rate_interval")
    assert only_dag == (
        "sum by (dag_id, task_id, state) "
        '(increase(airflow_otel_task_instance_finished_total{job="$service", dag_id=~"$dag_id"}[$__rate_interval]))'
    )
    jaeger = parse_qs(Q.render_for_grafana(Q.get("run_trace"), "jaeger"))
    assert json.loads(jaeger["tags"][0]) == {"dag_id": "$dag_id", "run_id": "$run_id"}
    assert "lookback" not in jaeger


def _quoted_literals(text: str) -> list[str]:
    return [json.loads(m) for m in re.findall(r'"(?:[^"\\]|\\.)*"', text)]


@pytest.mark.parametrize("dialect", ["logsql", "logql"])
def test_awkward_run_id_round_trips_through_each_log_dialect(dialect: str):
    rendered = Q.render(Q.get("run_timeline"), dialect, dag_id="etl", run_id=AWKWARD_RUN_ID)
    assert AWKWARD_RUN_ID in _quoted_literals(rendered)


def test_awkward_run_id_round_trips_through_traceql_and_jaeger():
    rendered = Q.render(Q.get("run_trace"), "traceql", dag_id="etl", run_id=AWKWARD_RUN_ID)
    assert AWKWARD_RUN_ID in _quoted_literals(rendered)
    tags = json.loads(Q.jaeger_search(Q.get("run_trace"), dag_id="etl", run_id=AWKWARD_RUN_ID)["tags"])
    assert tags["run_id"] == AWKWARD_RUN_ID


@given(st.text())
def test_quote_is_a_string_literal_of_exactly_the_value(value: str):
    quoted = Q.quote(value)
    assert quoted.startswith('"') and quoted.endswith('"') and "\n" not in quoted
    assert json.loads(quoted) == value


@given(st.lists(st.text(min_size=1), min_size=1, max_size=4), st.text(min_size=1))
def test_regex_escape_matches_exactly_the_values(values: list[str], other: str):
    pattern = "|".join(Q.regex_escape(v) for v in values)
    for v in values:
        assert re.fullmatch(pattern, v, flags=re.DOTALL)
    assert bool(re.fullmatch(pattern, other, flags=re.DOTALL)) == (other in values)


def test_regex_values_in_promql_are_escaped_then_quoted():
    rendered = Q.render(Q.get("task_counts"), "promql", dag_id=("a.b", 'c"d\\'))
    (pattern,) = [lit for lit in _quoted_literals(rendered) if "|" in lit]
    assert re.fullmatch(pattern, "a.b") and re.fullmatch(pattern, 'c"d\\')
    assert not re.fullmatch(pattern, "aXb")


def test_misuse_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="needs dag_id, run_id"):
        Q.render(Q.get("run_timeline"), "logsql")
    with pytest.raises(ValueError, match="not \\['run_id'\\]"):
        Q.render(Q.get("task_counts"), "promql", run_id="x")
    with pytest.raises(ValueError, match="renders to"):
        Q.render(Q.get("task_counts"), "logql")
    with pytest.raises(ValueError, match="one value per tag"):
        Q.jaeger_search(Q.get("dag_traces"), dag_id=("a", "b"))
    with pytest.raises(ValueError, match="not a trace search"):
        Q.jaeger_search(Q.get("task_counts"))
    with pytest.raises(ValueError, match="metrics have no run_id"):
        Q.Query("bad", "", ("run_id",), Q.CounterIncrease(Q.TASK_FINISHED, ("dag_id",)))
    with pytest.raises(KeyError, match="known: run_timeline"):
        Q.get("nope")


def test_every_dialect_follows_the_configured_service_name(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "airflow-prod")
    run = "manual__1"
    assert Q.render(Q.get("run_timeline"), "logsql", dag_id="etl", run_id=run).startswith(
        '{service.name="airflow-prod"} ')
    assert Q.render(Q.get("run_timeline"), "logql", dag_id="etl", run_id=run).startswith(
        '{service_name="airflow-prod"} ')
    assert 'task_instance_finished_total{job="airflow-prod"}' in Q.render(Q.get("task_counts"), "promql")
    assert Q.render(Q.get("dag_traces"), "traceql", dag_id="etl").startswith(
        '{ resource.service.name = "airflow-prod" && ')
    assert Q.jaeger_search(Q.get("dag_traces"), dag_id="etl")["service"] == "airflow-prod"
    # An explicit name wins over the configuration; a quote in it is escaped like any value.
    assert Q.render(Q.get("dag_runs"), "logsql", service='a"b').startswith('{service.name="a\\"b"} ')


def test_any_service_drops_the_condition_except_for_jaeger():
    q = Q.get("trace_events")
    assert Q.render(q, "logsql", trace_id="ab", service=Q.ANY_SERVICE).startswith('{service.name=~".+"} trace_id:=')
    assert Q.render(q, "logql", trace_id="ab", service=Q.ANY_SERVICE).startswith('{service_name=~".+"} | trace_id=')
    assert "job=" not in Q.render(Q.get("task_counts"), "promql", service=Q.ANY_SERVICE)
    assert Q.render(Q.get("dag_traces"), "traceql", dag_id="e", service=Q.ANY_SERVICE) == '{ span.dag_id = "e" }'
    with pytest.raises(ValueError, match="needs one service name"):
        Q.jaeger_search(Q.get("dag_traces"), service=Q.ANY_SERVICE)
    with pytest.raises(ValueError, match="non-empty"):
        Q.render(Q.get("dag_runs"), "logsql", service="")


def test_grafana_queries_take_the_service_variable():
    for query in Q.CATALOGUE:
        for dialect in query.dialects:
            text = unquote(Q.render_for_grafana(query, dialect))  # Jaeger's is a URL query string
            assert "$service" in text, (query.name, dialect, text)
            assert "airflow" not in text.replace("airflow_otel_", ""), (query.name, dialect, text)
