"""Each hook's telemetry, with the real emitters and in-memory exporters."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from types import SimpleNamespace

import pytest
from opentelemetry.trace import StatusCode

from otel_plugin import api
from otel_plugin.airflow import listener, recorder
from otel_plugin.core import contract, ids, otel_compat, process
from testkit.airflow_local import installed_major
from tests.unit.conftest import T0, make_dag_run, make_ti

RUN = "manual__2026-11-27T01:00:00+00:00"


def test_success_emits_running_and_success_events_one_span_and_counts(captured):
    ti = make_ti()
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running", end_date=None))
    listener.on_task_instance_success(previous_state="running", task_instance=ti)

    events = captured.events()
    assert [e["state"] for e in events] == ["running", "success"]
    done = events[1]
    assert (done["dag_id"], done["task_id"], done["run_id"], done["try_number"], done["map_index"]) == (
        "etl", "load", RUN, 1, -1)
    assert done["duration_s"] == 3.0
    assert done["operator"] == "PythonOperator" and done["pool"] == "default_pool"
    assert done["previous_state"] == "running"
    assert done["cicd.pipeline.task.run.result"] == "success"

    (span,) = captured.spans()
    assert span.name == "task load"
    assert span.context.trace_id == ids.trace_id("etl", RUN, 0)
    assert span.parent.span_id == ids.root_span_id("etl", RUN, 0)
    assert span.context.span_id == ids.task_span_id("etl", RUN, 0, "load", -1, 1)
    assert span.start_time == int(T0.timestamp() * 1e9)
    assert span.status.status_code == StatusCode.OK
    assert done["trace_id"] == f"{span.context.trace_id:032x}"

    (attrs, point) = captured.points(contract.TASK_FINISHED.name)[0]
    assert attrs == {"dag_id": "etl", "task_id": "load", "state": "success"} and point.value == 1
    (_, hist) = captured.points(contract.TASK_DURATION.name)[0]
    assert hist.count == 1 and hist.sum == 3.0


def test_retry_and_final_failure_are_told_apart(captured):
    listener.on_task_instance_failed(previous_state="running", task_instance=make_ti(state="up_for_retry"),
                                     error=ValueError("boom"))
    listener.on_task_instance_failed(previous_state="running",
                                     task_instance=make_ti(state="failed", try_number=2), error=ValueError("boom"))
    states = {a["state"]: p.value for a, p in captured.points(contract.TASK_FINISHED.name)}
    assert states == {"up_for_retry": 1, "failed": 1}
    assert [p.value for _, p in captured.points(contract.TASK_RETRIES.name)] == [1]
    spans = captured.spans()
    assert len({s.context.span_id for s in spans}) == 2  # one span per try
    assert all(s.status.status_code == StatusCode.ERROR for s in spans)
    assert spans[1].events[0].name == "exception"
    assert spans[1].events[0].attributes["exception.type"] == "ValueError"


def test_error_text_is_masked_and_an_unprintable_error_still_records(captured):
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    listener.on_task_instance_failed(
        previous_state="running", task_instance=make_ti(state="failed"),
        error=ConnectionError("cannot reach postgresql://etl:hunter2secret@db:5432/x token=abcd1234"))
    listener.on_task_instance_failed(previous_state="running", task_instance=make_ti(state="failed", task_id="b"),
                                     error=Weird())
    first, second = captured.events()
    assert "hunter2secret" not in first["error.message"] and "abcd1234" not in first["error.message"]
    assert "postgresql://etl:***@db" in first["error.message"]
    assert second["error.type"] == "test_error_text_is_masked_and_an_unprintable_error_still_records.<locals>.Weird"
    assert second["error.message"].startswith("<unprintable")
    span_event = captured.spans()[0].events[0]
    assert "hunter2secret" not in str(span_event.attributes)


def test_missing_dates_and_odd_types_do_not_break_the_event(captured):
    ti = make_ti(start_date=None, end_date=None, try_number="x", map_index=None, hostname=None, task=None)
    listener.on_task_instance_success(previous_state=None, task_instance=ti)
    (event,) = captured.events()
    assert event["state"] == "success" and event["try_number"] == 0 and event["map_index"] == -1
    assert "duration_s" not in event and "end_time" in event  # end falls back to now, start unknown
    assert captured.points(contract.TASK_DURATION.name) == []


def test_mapped_tasks_keep_map_index_on_events_but_not_on_metrics(captured):
    for i in range(3):
        listener.on_task_instance_failed(previous_state="running",
                                         task_instance=make_ti(state="failed", map_index=i), error="x")
    assert sorted(e["map_index"] for e in captured.events()) == [0, 1, 2]
    points = captured.points(contract.TASK_FINISHED.name)
    assert {tuple(sorted(a.items())) for a, _ in points} == {(("dag_id", "etl"), ("state", "failed"),
                                                              ("task_id", "load"))}  # one series
    assert sum(p.value for _, p in points) == 3
    assert len({s.context.span_id for s in captured.spans()}) == 3


def test_dag_run_end_emits_root_span_and_reconciles_tasks_that_never_ran(captured):
    never_ran = make_ti(task_id="report", state="upstream_failed", end_date=None, try_number=0, hostname="")
    ran = make_ti(task_id="load", state="failed")
    listener.on_dag_run_failed(dag_run=make_dag_run([never_ran, ran], state="failed"), msg="task_failure")

    spans = {s.name: s for s in captured.spans()}
    root = spans["RUN etl"]
    assert root.parent is None
    assert root.context.trace_id == ids.trace_id("etl", RUN, 0)
    assert root.context.span_id == ids.root_span_id("etl", RUN, 0)
    assert (root.end_time - root.start_time) == 30 * 10**9
    reconciled = spans["task report"]
    assert reconciled.parent.span_id == root.context.span_id
    assert "task load" not in spans  # it ran: its worker reported it

    events = {e["event"] + ":" + e.get("task_id", ""): e for e in captured.events()}
    assert events["task_instance:report"]["reconciled"] is True
    assert events["task_instance:report"]["state"] == "upstream_failed"
    assert events["dag_run:"]["reason"] == "task_failure" and events["dag_run:"]["duration_s"] == 30.0
    finished = {a["state"]: p.value for a, p in captured.points(contract.TASK_FINISHED.name)}
    assert finished == {"upstream_failed": 1}
    (attrs, point) = captured.points(contract.DAG_RUN_FINISHED.name)[0]
    assert attrs == {"dag_id": "etl", "state": "failed"} and point.value == 1


def test_a_queued_try_the_scheduler_failed_is_not_reconciled_again(captured):
    # The executor reported a queued try failed (a Celery worker lost it before the task process started):
    # the scheduler's handle_failure fires the failed hook there; the try has no hostname, like one that
    # never ran. The run's end must not count it a second time (Celery: 55 failures read 67).
    process.current().role = "service"
    lost = [make_ti(task_id="explode", map_index=i, state="failed", hostname=None, end_date=T0) for i in range(3)]
    for ti in lost:
        listener.on_task_instance_failed(previous_state="running", task_instance=ti,
                                         error="Executor CeleryExecutor reported that the task instance ...")
    never_ran = make_ti(task_id="report", state="upstream_failed", end_date=None, try_number=0, hostname=None)
    listener.on_dag_run_failed(dag_run=make_dag_run([*lost, never_ran], state="failed"), msg="task_failure")

    tries = [(e["task_id"], e["map_index"]) for e in captured.events() if e["event"] == "task_instance"]
    assert sorted(tries) == [("explode", 0), ("explode", 1), ("explode", 2), ("report", -1)]
    finished: Counter = Counter()
    for attrs, point in captured.points(contract.TASK_FINISHED.name):  # one delta per flush
        finished[attrs["state"]] += point.value
    assert finished == {"failed": 3, "upstream_failed": 1}
    assert len([s for s in captured.spans() if s.name == "task explode"]) == 3
    assert not process.current().reported_tries  # forgotten at the run's end


def test_reported_tries_are_kept_for_a_bounded_number_of_runs(monkeypatch):
    from otel_plugin.airflow import reconcile
    from otel_plugin.airflow.model import TaskRun

    process.reset()
    monkeypatch.setattr(reconcile, "MAX_RUNS", 2)
    for run_id in ("r1", "r2", "r3"):
        reconcile.note_reported(TaskRun.from_airflow(make_ti(run_id=run_id, state="failed")))
    assert list(process.current().reported_tries) == [("etl", "r2"), ("etl", "r3")]


def test_cleared_run_is_a_new_trace(captured):
    listener.on_dag_run_success(dag_run=make_dag_run(clear_number=0), msg="success")
    listener.on_dag_run_success(dag_run=make_dag_run(clear_number=1), msg="success")
    assert len({s.context.trace_id for s in captured.spans()}) == 2


def test_joins_airflow_trace_when_airflow_tracing_is_on(captured):
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    listener.on_dag_run_success(dag_run=make_dag_run(context_carrier=carrier), msg="success")
    listener.on_task_instance_success(previous_state="running", task_instance=make_ti(context_carrier=carrier))
    task, root = sorted(captured.spans(), key=lambda s: s.name, reverse=True)
    assert root.context.trace_id == task.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert root.parent.span_id == 0xB7AD6B7169203331  # under Airflow's own dag_run span
    assert task.parent.span_id == root.context.span_id


def test_unsampled_airflow_carrier_is_not_joined(captured):
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
    listener.on_task_instance_success(previous_state="running", task_instance=make_ti(context_carrier=carrier))
    assert captured.spans()[0].context.trace_id == ids.trace_id("etl", RUN, 0)


def test_business_facts_reach_event_span_and_metrics(captured):
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running"))
    api.record_rows(read=10)
    api.record_rows(read=5, written=0)
    api.record_bytes(written=2048)
    api.record_check("not_empty", passed=False)
    api.set_fact("source", "s3://bucket/key")
    listener.on_task_instance_success(previous_state="running", task_instance=make_ti())

    done = captured.events()[-1]
    assert (done["rows_read"], done["rows_written"], done["zero_rows"]) == (15, 0, True)
    assert done["check.not_empty"] == "failed" and done["checks_failed"] == 1
    assert done["fact.source"] == "s3://bucket/key"
    assert captured.spans()[0].attributes["rows_written"] == 0
    assert [p.value for _, p in captured.points(contract.TASK_ZERO_ROWS.name)] == [1]
    rows = {a["direction"]: p.value for a, p in captured.points(contract.TASK_ROWS.name)}
    assert rows == {"read": 15, "written": 0}
    checks = captured.points(contract.TASK_CHECKS.name)
    assert checks[0][0]["result"] == "failed"


def test_traceparent_names_the_running_task_span(captured):
    assert api.traceparent() is None
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running"))
    expected = ids.format_traceparent(ids.trace_id("etl", RUN, 0), ids.task_span_id("etl", RUN, 0, "load", -1, 1))
    assert api.traceparent() == expected
    assert api.trace_env() == {"TRACEPARENT": expected}


def test_metric_guard_drops_run_ids_and_warns_once(captured, caplog):
    from otel_plugin.airflow import metrics

    kept = metrics.guard({"dag_id": "d", "run_id": "r", "airflow.try_number": 2, "state": "ok"})
    metrics.guard({"run_id": "again"})
    assert kept == {"dag_id": "d", "state": "ok"}
    assert sum("'run_id' dropped" in r.getMessage() for r in caplog.records) == 1


def test_a_failing_emitter_never_reaches_airflow(captured, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("emitter bug")

    monkeypatch.setattr(recorder, "task_finished", explode)
    assert listener.on_task_instance_success(previous_state="running", task_instance=make_ti()) is None
    assert any("no impact on the task" in r.getMessage() for r in caplog.records)


def test_huge_and_non_utf8_messages_are_bounded(captured):
    error = RuntimeError("x" * 1_000_000 + "\udcff" + "password=hunter2")
    listener.on_task_instance_failed(previous_state="running", task_instance=make_ti(state="failed"), error=error)
    (event,) = captured.events()
    assert len(event["error.message"]) <= 4096
    event["error.message"].encode("utf-8")
    assert sum(len(str(v)) for v in event.values()) < 64_000
    _ = dt  # keep the datetime import for readers of the fixtures


def test_duration_histogram_carries_an_exemplar_of_the_try_span(captured):
    """Where the SDK has exemplars (OpenTelemetry 1.28+); on 1.27 the same point, without any."""
    listener.on_task_instance_success(previous_state="running", task_instance=make_ti())
    (_, point) = captured.points(contract.TASK_DURATION.name)[0]
    assert point.count == 1
    if not otel_compat.exemplars_supported():
        assert not hasattr(point, "exemplars")
        return
    (exemplar,) = point.exemplars
    assert exemplar.span_id == ids.task_span_id("etl", RUN, 0, "load", -1, 1)
    assert exemplar.trace_id == ids.trace_id("etl", RUN, 0)


def test_hooks_register_with_both_airflow_listener_managers():
    """pluggy rejects a hookimpl whose arguments are not in the spec (e.g. a `session` argument). Airflow 3 has
    a core and a task-SDK manager; 2.x has the core one (whose task-instance hooks take a `session`)."""
    from airflow.listeners.listener import get_listener_manager as core_manager

    managers = [core_manager()]
    if installed_major() >= 3:
        from airflow.sdk.listener import get_listener_manager as sdk_manager

        managers.append(sdk_manager())
    for manager in managers:
        manager.add_listener(listener)
        assert manager.pm.is_registered(listener)
        manager.pm.unregister(listener)


def test_ids_whose_str_raises_still_produce_the_event(captured):
    class BadId:
        def __str__(self) -> str:
            raise RuntimeError("no")

    listener.on_task_instance_success(previous_state="running", task_instance=make_ti(dag_id=BadId()))
    (event,) = captured.events()
    assert event["dag_id"].startswith("<unprintable") and event["state"] == "success"


def test_a_self_skip_without_a_skipped_hook_is_reported_when_the_task_process_stops(captured):
    """Airflow 2.x and 3.0: AirflowSkipException sets the state and fires no hook; before_stopping does."""
    ti = make_ti(state="running", end_date=None)
    listener.on_task_instance_running(previous_state="queued", task_instance=ti)
    ti.state, ti.end_date = "skipped", T0 + dt.timedelta(seconds=1)
    listener.before_stopping(component=object())
    assert [e["state"] for e in captured.events()] == ["running", "skipped"]
    assert [a["state"] for a, _ in captured.points(contract.TASK_FINISHED.name)] == ["skipped"]


def test_a_task_with_its_terminal_hook_is_not_reported_again_at_stop(captured):
    ti = make_ti(state="running", end_date=None)
    listener.on_task_instance_running(previous_state="queued", task_instance=ti)
    ti.state = "skipped"
    listener.on_task_instance_skipped(previous_state="running", task_instance=ti)  # 3.1+
    listener.before_stopping(component=object())
    assert [e["state"] for e in captured.events()] == ["running", "skipped"]


def _job(job_type: str | None = None) -> SimpleNamespace:
    """Like airflow.jobs.job.Job at on_starting: its runner sets job_type only afterwards."""
    return SimpleNamespace(job_type=job_type)


def test_airflow2_local_task_job_keeps_the_task_role(monkeypatch):
    process.reset()

    class TaskCommandMarker:
        pass

    job = _job()  # 2.x: a Job starts after the TaskCommandMarker
    recorder.set_role(TaskCommandMarker())
    recorder.set_role(job)
    job.job_type = "LocalTaskJob"
    assert recorder.role() == "task"


@pytest.mark.parametrize("job_type, role", [("SchedulerJob", "service"), ("DagProcessorJob", "service"),
                                            ("TriggererJob", "service"), ("LocalTaskJob", "task")])
def test_a_jobs_role_is_read_after_its_runner_names_it(monkeypatch, job_type, role):
    process.reset()
    job = _job()
    listener.on_starting(component=job)
    job.job_type = job_type  # BaseJobRunner.__init__, after Job.__init__ fired on_starting
    assert recorder.role() == role


def test_role_comes_from_what_on_starting_receives(monkeypatch):
    process.reset()
    listener.on_starting(component=_job("SchedulerJob"))
    assert recorder.role() == "service"
    process.reset()
    listener.on_starting(component=object())  # any task-process marker, whatever its class is called
    assert recorder.role() == "task"
