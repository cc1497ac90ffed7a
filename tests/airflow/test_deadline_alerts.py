"""Airflow 3 Deadline Alerts: a run that misses its deadline leaves a `dag_run_deadline_missed` event (dag_id,
run_id, deadline) in VictoriaLogs, with no per-DAG code (the DAG only declares its DeadlineAlert).

Airflow 3.x only (Deadline Alerts appeared in 3.1; `make test-airflow2` does not run this file).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from otel_plugin.core import contract, ids
from testkit import stackutil

DAG = "deadline_check"  # tests/airflow/dags/deadline_check.py: due 2 s after queued, runs about 8 s


def test_missed_deadline_is_an_event(airflow):
    airflow.start(*airflow.COMPONENTS)
    airflow.wait_for_dag(DAG)
    run_id = airflow.trigger(DAG, run_id=f"deadline_{uuid.uuid4().hex[:8]}")
    assert airflow.wait_for_run(DAG, run_id, timeout=300) == "success"
    run = airflow.dag_run(DAG, run_id)

    (event,) = stackutil.wait_until(
        lambda: stackutil.logsql(f'run_id:"{run_id}" AND event:{contract.EVENT_DEADLINE_MISSED}'),
        lambda rows: len(rows) >= 1, timeout=60, what="the deadline-missed event")
    assert event["dag_id"] == DAG and event["deadline.name"] == "two_seconds"
    assert event["trace_id"] == f"{ids.trace_id(DAG, run_id, 0):032x}"  # the run's trace
    queued = dt.datetime.fromisoformat(run["queued_at"])
    deadline = dt.datetime.fromisoformat(event["deadline.time"])
    assert abs((deadline - queued).total_seconds() - 2) < 0.01, (queued, deadline)
    end = dt.datetime.fromisoformat(run["end_date"])
    missed_by = (end - deadline).total_seconds()
    assert missed_by > 0 and float(event["deadline.missed_by_s"]) == pytest.approx(missed_by, abs=1e-3)
