"""A real Airflow task (``airflow dags test``) with a custom counter and three child job processes: one
inherits the task's environment, two get ``api.job_env()``. Against the stack: the task's 5 and each
child's 5 in ONE Prometheus series, each child's event in the run lookup with the try's ids, each child's
span under the task's span in the run's trace."""

from __future__ import annotations

import json
import uuid

import pytest

from otel_plugin.readback import lookup
from testkit import stackutil

pytestmark = [pytest.mark.airflow, pytest.mark.stack]

CHILD_JOBS = 3  # tests/airflow/dags/job_check.py
LANDING_S = 60.0


def test_a_tasks_child_jobs_add_to_its_custom_metric_and_join_its_run(airflow):
    suffix = uuid.uuid4().hex[:10]
    airflow.env["JOB_CHECK_SUFFIX"] = suffix
    try:
        out = airflow.cli("dags", "test", "job_check", timeout=300)
    finally:
        airflow.env.pop("JOB_CHECK_SUFFIX", None)
    events = [json.loads(line) for line in (airflow.home / "events.jsonl").read_text().splitlines()]
    (run_id,) = {e["run_id"] for e in events if e.get("dag_id") == "job_check" and f"run_id={e['run_id']}" in out}

    name = f"jobcheck_rows_{suffix}_total"
    stackutil.wait_until(lambda: stackutil.prom_value(name), ok=lambda v: v == 5 * (1 + CHILD_JOBS),
                         timeout=LANDING_S, what=name)
    (series,) = stackutil.prom_query(name)
    assert {k: series["metric"][k] for k in ("dag_id", "task_id", "kind")} == {
        "dag_id": "job_check", "task_id": "parent", "kind": "a"}
    assert not {"run_id", "try_number", "map_index"} & series["metric"].keys()

    found = stackutil.wait_until(
        lambda: lookup.lookup("job_check", run_id), ok=lambda f: sum(r.event == "job" for r in f.events) == CHILD_JOBS,
        timeout=LANDING_S, what="the child jobs' events")
    jobs = [r for r in found.events if r.event == "job"]
    assert {(r.task_id, r.try_number, r.state) for r in jobs} == {("parent", "1", "finished")}
    assert sorted(r.facts["fact.part"] for r in jobs) == ["0", "1", "2"]

    trace_id = next(iter(found.traces))
    spans = stackutil.wait_until(lambda: stackutil.jaeger_trace(int(trace_id, 16)),
                                 ok=lambda t: bool(t) and len(t["spans"]) >= 2 + 2 * CHILD_JOBS,
                                 timeout=LANDING_S, what="the run's trace")["spans"]
    by_name: dict[str, list[dict]] = {}
    for span in spans:
        by_name.setdefault(span["operationName"], []).append(span)
    (task_span,) = by_name["task parent"]
    job_spans = [s for n, group in by_name.items() if n.startswith("job ") for s in group]
    assert len(job_spans) == CHILD_JOBS
    assert {r["spanID"] for s in job_spans for r in s["references"]} == {task_span["spanID"]}
    assert {r["spanID"] for s in by_name["child work"] for r in s["references"]} == {s["spanID"] for s in job_spans}
