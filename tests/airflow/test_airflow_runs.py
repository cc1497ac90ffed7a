"""The plugin inside real Airflow: in-process (`airflow dags test`) and multi-process (LocalExecutor), under
Airflow 3.x (`.venv`) and 2.11 (`.venv-af2`, `make test-airflow2`) alike: same events, spans and counts.

Counts are exact in what was exported: the JSON-lines events every process wrote, the events in
VictoriaLogs, the spans in Jaeger (one trace, spans from separate worker processes) and the counters in
Prometheus.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest

from otel_plugin.core import contract, ids
from testkit import stackutil

pytestmark = [pytest.mark.airflow, pytest.mark.stack]

DAG = "plugin_check"
DAG_MP = "plugin_check_mp"
# (task_id, state) of every terminal event one run must produce, with multiplicity.
EXPECTED = Counter({
    ("flaky", "up_for_retry"): 1, ("flaky", "success"): 1,
    ("mapped", "success"): 2, ("mapped", "failed"): 2,
    ("collect", "upstream_failed"): 1, ("skipper", "skipped"): 1,
})


def _events(airflow, run_id: str) -> list[dict]:
    lines = (airflow.home / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("run_id") == run_id]


def _terminal(events: list[dict]) -> Counter:
    return Counter(
        (e["task_id"], e["state"]) for e in events if e["event"] == "task_instance" and e["state"] != "running"
    )


def _check_run(airflow, run_id: str, dag_id: str) -> str:
    events = _events(airflow, run_id)
    assert _terminal(events) == EXPECTED
    (run_event,) = [e for e in events if e["event"] == "dag_run" and e["state"] != "running"]
    assert run_event["state"] == "failed" and run_event["dag_id"] == dag_id
    reconciled = [e for e in events if e.get("reconciled")]
    assert [(e["task_id"], e["state"]) for e in reconciled] == [("collect", "upstream_failed")]
    assert {e["trace_id"] for e in events} == {run_event["trace_id"]}  # one trace for the whole run
    flaky_fail = next(e for e in events if e["state"] == "up_for_retry")
    assert "s3cr3tpass" not in flaky_fail["error.message"] and flaky_fail["rows_read"] == 3
    return run_event["trace_id"]


def test_plugin_registers_its_listener(airflow):
    # The JSON is the last line: Airflow 2.x logs to stdout before it (e.g. its metrics exporter's endpoint).
    plugins = json.loads(airflow.cli("plugins", "--output", "json").strip().splitlines()[-1])
    (ours,) = [p for p in plugins if p["name"] == "otel_plugin"]
    assert "otel_plugin.airflow.listener" in str(ours["listeners"])


def test_dags_test_in_process(airflow):
    # In-process means no scheduler: one that another test of the session started would run the tasks too.
    airflow.stop()
    out = airflow.cli("dags", "test", DAG, timeout=300, check=False)  # exits 1: the run fails by design
    run_id = next(e["run_id"] for e in map(json.loads, (airflow.home / "events.jsonl").read_text().splitlines())
                  if e.get("dag_id") == DAG)
    assert f"run_id={run_id}" in out and "state=failed" in out
    trace_id = _check_run(airflow, run_id, DAG)
    assert trace_id == f"{ids.trace_id(DAG, run_id, 0):032x}"


def test_multi_process_run_is_one_trace_with_exact_counts(airflow):
    failed_before = stackutil.prom_value(
        f'sum(airflow_otel_task_instance_finished_total{{dag_id="{DAG_MP}",task_id="mapped",state="failed"}})') or 0
    airflow.start(*airflow.COMPONENTS)
    airflow.wait_for_dag(DAG_MP)
    run_id = airflow.trigger(DAG_MP, run_id=f"mp_{uuid.uuid4().hex[:8]}")
    assert airflow.wait_for_run(DAG_MP, run_id, timeout=300) == "failed"
    trace_id = _check_run(airflow, run_id, DAG_MP)

    # Jaeger: one trace, a root and one span per try, written by several worker processes.
    trace = stackutil.wait_until(lambda: stackutil.jaeger_trace(int(trace_id, 16)),
                                 lambda t: t is not None and len(t["spans"]) == 9, timeout=60, what="trace")
    names = Counter(s["operationName"] for s in trace["spans"])
    assert names == Counter({"RUN plugin_check_mp": 1, "task flaky": 2, "task mapped": 4, "task collect": 1,
                             "task skipper": 1})
    root = next(s for s in trace["spans"] if s["operationName"] == contract.SPAN_DAG_RUN.format(dag_id=DAG_MP))
    assert all(s["references"][0]["spanID"] == root["spanID"] for s in trace["spans"] if s is not root)
    instances = {
        next(t["value"] for t in trace["processes"][s["processID"]]["tags"] if t["key"] == "service.instance.id")
        for s in trace["spans"]
    }
    assert len(instances) >= 5  # scheduler + separate task processes

    # VictoriaLogs: the same events, found by run_id.
    stored = stackutil.wait_until(lambda: stackutil.logsql(f'run_id:"{run_id}" AND event:task_instance'),
                                  lambda rows: len(rows) >= sum(EXPECTED.values()) + 7, timeout=60, what="events")
    assert _terminal(stored) == EXPECTED

    # Prometheus: exactly two more final failures of the mapped task.
    expr = f'sum(airflow_otel_task_instance_finished_total{{dag_id="{DAG_MP}",task_id="mapped",state="failed"}})'
    stackutil.wait_until(lambda: stackutil.prom_value(expr), lambda v: v == failed_before + 2, timeout=60,
                         what="mapped failures in Prometheus")
