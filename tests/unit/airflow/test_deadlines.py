"""Missed Airflow 3 Deadline Alerts become events at the run's end (otel_plugin/airflow/deadlines.py; the real
scheduler path: tests/airflow/test_deadline_alerts.py)."""

from __future__ import annotations

import datetime as dt

from opentelemetry._logs import SeverityNumber

from otel_plugin.airflow import deadlines, listener
from otel_plugin.airflow.deadlines import MissedDeadline
from otel_plugin.core import contract, ids
from tests.unit.conftest import T0, make_dag_run


def test_a_missed_deadline_is_a_warning_event_of_the_run(captured, monkeypatch):
    due = T0 - dt.timedelta(seconds=90)
    monkeypatch.setattr(deadlines, "missed", lambda dag_run: [MissedDeadline(due, "sla")])
    run = make_dag_run(state="success", end_date=T0)
    listener.on_dag_run_success(dag_run=run, msg="success")
    (event,) = [e for e in captured.events() if e["event"] == contract.EVENT_DEADLINE_MISSED]
    assert set(event) <= set(contract.DEADLINE_MISSED_FIELDS)
    assert (event["dag_id"], event["run_id"]) == (run.dag_id, run.run_id)
    assert event["deadline.time"] == due.isoformat() and event["deadline.name"] == "sla"
    assert event["deadline.missed_by_s"] == 90.0
    assert event["trace_id"] == f"{ids.trace_id(run.dag_id, run.run_id, 0):032x}"
    (record,) = [r.log_record for r in captured.log_exporter.get_finished_logs()
                 if r.log_record.attributes["event"] == contract.EVENT_DEADLINE_MISSED]
    assert record.severity_number == SeverityNumber.WARN


def test_no_deadline_no_event(captured):
    listener.on_dag_run_success(dag_run=make_dag_run(state="success", end_date=T0), msg="success")
    assert [e["event"] for e in captured.events()] == [contract.EVENT_DAG_RUN]


def test_a_run_outside_an_airflow_session_has_no_deadlines_to_read():
    assert deadlines.missed(make_dag_run(state="success", end_date=T0)) == []
    assert deadlines.missed(object()) == []
