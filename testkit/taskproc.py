"""A stand-in for one Airflow task process: calls the plugin's listener hooks the way Airflow's task runner
does (on_starting, running, success/failed, before_stopping, then interpreter exit) with Airflow-shaped
objects, through the plugin's real OTLP pipeline and spool. Used by the fault tests and benchmarks/soak.py.

    python -m testkit.taskproc '<json spec>'

Spec keys: dag_id, run_id, tasks (list of {"task_id", "state", "error"?}), task_seconds (how long the
tasks "run" between the running and the final hook; 0 by default), dag_run (a DAG-run state or null: also
report the run's end, as the scheduler does). Configuration comes from the environment
(AIRFLOW__OTEL_PLUGIN__*, OTEL_*), as in a real task process.

Prints {"task_end": <time.monotonic()>} before the final hooks and {"hooks_done": ...} after them (JSON
lines). CLOCK_MONOTONIC is shared by all processes on the host, so the parent gets the time the hooks held
the task and, from its own clock when we exit, the whole exit delay (hooks, atexit flush, teardown).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from types import SimpleNamespace
from typing import Any

from otel_plugin.airflow import listener


class TaskRunnerMarker:
    """Named like the component Airflow's task runner passes to on_starting."""


def task_instance(dag_id: str, run_id: str, task_id: str, state: str, start: dt.datetime) -> SimpleNamespace:
    return SimpleNamespace(
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        try_number=1,
        max_tries=0,
        map_index=-1,
        state=state,
        start_date=start,
        end_date=None if state == "running" else dt.datetime.now(dt.timezone.utc),
        hostname="reliability-test",
        queue="default",
        log_url=None,
        context_carrier=None,
        task=SimpleNamespace(task_type="PythonOperator", pool="default_pool", retries=0),
    )


def dag_run(dag_id: str, run_id: str, state: str, start: dt.datetime) -> SimpleNamespace:
    run = SimpleNamespace(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        start_date=start,
        end_date=dt.datetime.now(dt.timezone.utc),
        run_type="manual",
        clear_number=0,
        context_carrier=None,
    )
    run.get_task_instances = lambda session=None: []  # every task reported itself
    return run


def main(spec: dict[str, Any]) -> None:
    start = dt.datetime.now(dt.timezone.utc)
    dag_id, run_id = spec["dag_id"], spec["run_id"]
    listener.on_starting(component=TaskRunnerMarker())
    tasks = spec.get("tasks", [])
    for task in tasks:
        listener.on_task_instance_running(
            previous_state="queued", task_instance=task_instance(dag_id, run_id, task["task_id"], "running", start)
        )
    time.sleep(spec.get("task_seconds", 0))
    print(json.dumps({"task_end": time.monotonic()}), flush=True)
    for task in tasks:
        ti = task_instance(dag_id, run_id, task["task_id"], task["state"], start)
        if task["state"] == "success":
            listener.on_task_instance_success(previous_state="running", task_instance=ti)
        else:
            listener.on_task_instance_failed(previous_state="running", task_instance=ti, error=task.get("error"))
    if spec.get("dag_run"):
        run = dag_run(dag_id, run_id, spec["dag_run"], start)
        hook = listener.on_dag_run_success if spec["dag_run"] == "success" else listener.on_dag_run_failed
        hook(dag_run=run, msg=spec["dag_run"])
    listener.before_stopping(component=TaskRunnerMarker())
    print(json.dumps({"hooks_done": time.monotonic()}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
