"""End to end: a real PySpark job (local mode, the machine's Java 17) through SparkSubmitOperator reports into
its task's run through the job side (examples/spark-job/count_orders.py, tests/e2e/dags/e2e_spark_dags.py).

Two runs at once, so two Spark drivers add to the same series: Prometheus reads exactly twice one job's
rows and rejects, labelled with dag_id and task_id only; each run's lookup timeline shows the job's event
with its facts and counter totals; in Jaeger the job's span hangs under the task try's span, its stage
spans under it.
"""

from __future__ import annotations

import time

import pytest

from otel_plugin.__main__ import main
from otel_plugin.core import contract, ids
from otel_plugin.readback import lookup
from otel_plugin.readback.stores import Jaeger, Prometheus
from testkit import stackutil
from tests.e2e.conftest import SUFFIX

pytestmark = [pytest.mark.airflow, pytest.mark.stack]

DAG_ID = f"e2e_spark_{SUFFIX}"
TASK_ID = "count_orders"
JOB = "count_orders"  # AIRFLOW_OTEL_JOB in the DAG
RUNS = 2
ORDERS, REJECTED = 700, 100  # tests/e2e/dags/e2e_spark_dags.py: every 7th order has amount 0
RUN_TIMEOUT = 900.0  # two Spark JVMs on 2 shared cores: about a minute idle, far more when loaded
LANDING_TIMEOUT = 120.0

prometheus, jaeger = Prometheus(), Jaeger()


@pytest.fixture(scope="module")
def spark_runs(airflow) -> list[str]:
    """Both runs, finished successfully; with how long each took (printed for the report)."""
    airflow.wait_for_dag(DAG_ID)
    started = time.monotonic()
    run_ids = [airflow.trigger(DAG_ID) for _ in range(RUNS)]
    for run_id in run_ids:
        state = airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
        assert state == "success", f"{DAG_ID} {run_id} ended {state}: see {airflow.home / 'logs'}"
    print(f"{RUNS} Spark runs at once finished after {time.monotonic() - started:.0f} s")
    return run_ids


def counter(name: str) -> float | None:
    result = prometheus.query(f'{name}{{dag_id="{DAG_ID}"}}')
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def test_spark_jobs_counters_add_up_exactly_with_task_labels(spark_runs) -> None:
    expected = {"rows_processed_total": RUNS * (ORDERS - REJECTED), "orders_rejected_total": RUNS * REJECTED}
    for name, want in expected.items():
        stackutil.wait_until(lambda name=name: counter(name), ok=lambda v, want=want: v == want,
                             timeout=LANDING_TIMEOUT, what=f"{name} = {want}")
    (rows,) = prometheus.query(f'rows_processed_total{{dag_id="{DAG_ID}"}}')
    labels = set(rows["metric"]) - {"__name__", "job", "instance", "otel_scope_name"}
    assert labels == {"dag_id", "task_id", "stage"}, rows["metric"]
    assert rows["metric"]["task_id"] == TASK_ID and rows["metric"]["stage"] == "validate"


def test_spark_jobs_event_is_in_the_run_lookup_timeline(spark_runs, capsys) -> None:
    want = [("task_instance", "running"), (contract.EVENT_JOB, "finished"), ("task_instance", "success")]
    for run_id in spark_runs:
        # Every event of the try, not only the job's: the driver sends its event when it ends, the task process
        # its own when the try ends, and a lookup between the two saw the job's alone (a CI run).
        found = stackutil.wait_until(
            lambda run_id=run_id: lookup.lookup(DAG_ID, run_id),
            ok=lambda f: set(want) <= {(r.event, r.state) for r in f.events if r.task_id == TASK_ID},
            timeout=LANDING_TIMEOUT, what=f"the try's events and the job's of {run_id}")
        (event,) = [r for r in found.events if r.event == contract.EVENT_JOB]
        assert (event.task_id, event.try_number, event.state) == (TASK_ID, "1", "finished")
        # The job's event sits between the task try's running and success events.
        order = [(r.event, r.state) for r in found.events if r.task_id == TASK_ID]
        assert order == want, order
        assert main(["lookup", "--dag", DAG_ID, "--run", run_id]) == 0
        out = capsys.readouterr().out
        for detail in (f"fact.rows_read={ORDERS}", f"fact.rows_written={ORDERS - REJECTED}",
                       f"metric.orders_rejected={REJECTED}", f"job {JOB} (try 1)"):
            assert detail in out, out


def test_spark_jobs_spans_hang_under_the_task_span(spark_runs) -> None:
    for run_id in spark_runs:
        trace_id = f"{ids.trace_id(DAG_ID, run_id):032x}"
        task_span = f"{ids.task_span_id(DAG_ID, run_id, 0, TASK_ID, -1, 1):016x}"
        spans = stackutil.wait_until(lambda trace_id=trace_id: jaeger.trace(trace_id) or [],
                                     ok=lambda found: len(found) >= 5, timeout=LANDING_TIMEOUT,
                                     what=f"dag run, task, job and 2 stage spans in {trace_id}")
        by_name = {s.name: s for s in spans}
        root = contract.SPAN_DAG_RUN.format(dag_id=DAG_ID)
        assert sorted(by_name) == sorted([root, f"task {TASK_ID}", f"job {JOB}", "read orders", "validate orders"]), \
            sorted(by_name)
        assert by_name[f"task {TASK_ID}"].span_id == task_span
        job = by_name[f"job {JOB}"]
        assert job.parent_id == task_span
        assert by_name["read orders"].parent_id == job.span_id == by_name["validate orders"].parent_id
        task = by_name[f"task {TASK_ID}"]
        assert task.start_us <= job.start_us and job.start_us + job.duration_us <= task.start_us + task.duration_us
