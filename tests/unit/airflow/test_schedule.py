"""Schedule-aware expectations (otel_plugin/airflow/schedule.py): deadlines from each DAG's own schedule,
the cases that must expect nothing, overrides, and the gauges the reporter sends."""

from __future__ import annotations

import datetime as dt

import pytest

from otel_plugin.airflow import events, listener, schedule
from otel_plugin.airflow.schedule import DagState, Snapshot, expect
from otel_plugin.core import contract
from tests.unit.conftest import T0

MIN = dt.timedelta(minutes=1)


def test_deadline_is_the_run_after_the_last_success_plus_twice_the_usual_duration():
    dag = DagState("hourly", next_after_success=T0, next_create_after=T0 + 60 * MIN, durations=(100.0, 300.0))
    assert expect(dag).success_deadline == T0.timestamp() + 600
    assert expect(dag).usual_duration == 300.0


def test_not_created_yet_uses_the_next_run_the_scheduler_will_create():
    dag = DagState("daily", next_create_after=T0, durations=(10.0,))
    assert expect(dag).success_deadline == T0.timestamp() + schedule.MIN_ALLOWANCE  # at least a minute


def test_a_dag_that_never_succeeded_gets_an_hour():
    assert expect(DagState("new", next_create_after=T0)).success_deadline == T0.timestamp() + 3600


def test_a_weekly_dag_mid_week_is_due_next_week():
    dag = DagState("weekly", next_create_after=T0 + dt.timedelta(days=4), durations=(60.0,))
    assert expect(dag).success_deadline > (T0 + dt.timedelta(days=4)).timestamp()


@pytest.mark.parametrize("dag", [
    DagState("paused", paused=True, next_create_after=T0, oldest_running_start=T0, durations=(1.0,)),
    DagState("stale", stale=True, next_create_after=T0, oldest_running_start=T0, durations=(1.0,)),
    DagState("unscheduled", oldest_running_start=None, durations=(1.0,)),
    DagState("muted", tags=("otel.alerts:off",), next_create_after=T0, oldest_running_start=T0, durations=(1.0,)),
])  # fmt: skip
def test_nothing_is_expected_of_paused_stale_unscheduled_or_muted_dags(dag):
    assert (expect(dag).success_deadline, expect(dag).run_deadline) == (0.0, 0.0)


def test_stuck_after_three_times_the_usual_duration_and_only_with_history():
    running = DagState("etl", oldest_running_start=T0, durations=(40.0, 20.0))
    assert expect(running).run_deadline == T0.timestamp() + 120
    assert expect(DagState("etl", oldest_running_start=T0)).run_deadline == 0.0  # usual unknown
    assert expect(DagState("etl", durations=(40.0,))).run_deadline == 0.0  # nothing running


def test_tags_override_the_allowances():
    tags = ("team:x", "otel.success_within:2h", "otel.max_duration:90s")
    dag = DagState("etl", next_create_after=T0, oldest_running_start=T0, durations=(1000.0,), tags=tags)
    assert expect(dag).success_deadline == T0.timestamp() + 7200
    assert expect(dag).run_deadline == T0.timestamp() + 90


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5d", 129600),
                                               ("", None), ("2 hours", None), ("-1h", None)])
def test_parse_duration(text, seconds):
    assert schedule.parse_duration(text) == seconds


def _latest(captured) -> dict[str, list[tuple[dict, float]]]:
    """Every gauge point of one fresh collection, by metric name."""
    captured.reader.collected.clear()
    captured.reader.collect()
    found: dict[str, list[tuple[dict, float]]] = {}
    for rm in (rm for data in captured.reader.collected for rm in data.resource_metrics):
        for metric in (m for sm in rm.scope_metrics for m in sm.metrics):
            found[metric.name] = sorted(((dict(p.attributes), p.value) for p in metric.data.data_points),
                                        key=str)  # fmt: skip
    return found


def test_reporter_sends_every_gauge_and_zero_for_what_went_away(captured):
    reporter = schedule.Reporter(captured.pipe.meter)
    dag = DagState("etl", next_create_after=T0, oldest_running_start=T0, durations=(30.0,))
    reporter.report(Snapshot([dag], {"/dags/broken.py"}), now=1234.0)
    first = _latest(captured)
    assert {m.name for m in contract.METRICS if m.kind == "gauge"} <= set(first)  # every declared gauge sent
    assert first[contract.SCHEDULER_HEARTBEAT.name] == [({}, 1234.0)]
    assert first[contract.DAG_SUCCESS_DEADLINE.name] == [({"dag_id": "etl"}, T0.timestamp() + 60)]
    assert first[contract.DAG_RUN_DEADLINE.name] == [({"dag_id": "etl"}, T0.timestamp() + 90)]
    assert first[contract.DAG_FILE_IMPORT_ERROR.name] == [({"filename": "/dags/broken.py"}, 1)]

    reporter.report(Snapshot([], set()))  # the DAG was deleted, the file parses again
    second = _latest(captured)
    assert second[contract.DAG_FILE_IMPORT_ERROR.name] == [({"filename": "/dags/broken.py"}, 0)]
    assert second[contract.DAG_SUCCESS_DEADLINE.name] == [({"dag_id": "etl"}, 0)]
    assert second[contract.DAG_RUN_DEADLINE.name] == [({"dag_id": "etl"}, 0)]


def test_import_error_hook_writes_a_masked_event(captured):
    trace = ('Traceback (most recent call last):\n  File "/dags/x.py", line 3\n'
             'ValueError: cannot connect to postgresql://user:hunter2@db/x\n')  # fmt: skip
    listener.on_new_dag_import_error(filename="/dags/x.py", stacktrace=trace)
    (event,) = captured.events()
    assert set(event) <= set(contract.IMPORT_ERROR_FIELDS)
    assert event["event"] == contract.EVENT_IMPORT_ERROR and event["filename"] == "/dags/x.py"
    assert event["error.type"] == "ValueError"
    assert "hunter2" not in str(event) and "cannot connect" in event["error.message"]
    assert events.import_error_attributes("f.py", None)["error.message"] == ""
