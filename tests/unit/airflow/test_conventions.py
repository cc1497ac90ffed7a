"""OpenTelemetry CI/CD semantic conventions on the real emitters (in-memory exporters): the run span's name
and kind, cicd.pipeline.run.state, the `timeout` result for Airflow's timeouts, error.type on failed runs,
and cicd.worker.name."""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from otel_plugin.airflow import listener
from otel_plugin.core import contract
from tests.unit.conftest import make_dag_run, make_ti


class AirflowTaskTimeout(BaseException):
    """Stands in for airflow.sdk.exceptions.AirflowTaskTimeout: the plugin reads the class name only."""


def test_run_span_is_a_server_span_named_action_and_pipeline(captured):
    listener.on_dag_run_success(dag_run=make_dag_run(), msg="success")
    (root,) = captured.spans()
    assert (root.name, root.kind) == ("RUN etl", SpanKind.SERVER)
    assert root.attributes["cicd.pipeline.action.name"] == "RUN"
    assert root.attributes["cicd.pipeline.result"] == "success"
    assert root.attributes["cicd.pipeline.run.state"] == "finalizing"
    assert "error.type" not in root.attributes


def test_task_span_is_internal_and_carries_the_worker(captured):
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running", end_date=None))
    listener.on_task_instance_success(previous_state="running", task_instance=make_ti(hostname="worker-7"))
    (span,) = captured.spans()
    assert span.kind == SpanKind.INTERNAL
    assert span.attributes["cicd.worker.name"] == "worker-7"
    assert [e["cicd.pipeline.run.state"] for e in captured.events()] == ["executing", "executing"]


def test_airflow_timeouts_are_the_timeout_result(captured):
    listener.on_task_instance_failed(previous_state="running", task_instance=make_ti(state="failed"),
                                     error=AirflowTaskTimeout("Timeout, PID: 42"))
    listener.on_task_instance_failed(previous_state="running", task_instance=make_ti(task_id="other", state="failed"),
                                     error=ValueError("boom"))
    listener.on_dag_run_failed(dag_run=make_dag_run(state="failed"), msg="timed_out")
    events = {e.get("task_id", "(run)"): e for e in captured.events()}
    assert events["load"]["cicd.pipeline.task.run.result"] == contract.CICD_TIMEOUT
    assert events["load"]["error.type"] == "AirflowTaskTimeout"
    assert events["other"]["cicd.pipeline.task.run.result"] == "failure"
    assert events["(run)"]["cicd.pipeline.result"] == contract.CICD_TIMEOUT
    assert events["(run)"]["error.type"] == "timed_out"


def test_failed_run_and_task_without_an_exception_get_the_fallback_error_type(captured):
    listener.on_task_instance_failed(previous_state="running", task_instance=make_ti(state="failed"), error=None)
    listener.on_dag_run_failed(dag_run=make_dag_run(state="failed"), msg=None)
    events = {e["event"]: e for e in captured.events()}
    assert events["task_instance"]["error.type"] == events["dag_run"]["error.type"] == "_OTHER"
    assert events["dag_run"]["cicd.pipeline.result"] == "failure"


def test_result_mapping_only_marks_failures_as_timeouts():
    assert contract.cicd_result("success", "AirflowTaskTimeout") == "success"
    assert contract.cicd_result("up_for_retry", "AirflowSensorTimeout") == "timeout"
    assert contract.cicd_result("skipped", reason="timed_out") == "skip"
    assert contract.cicd_result("running") is None
