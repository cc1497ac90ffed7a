"""The contract (otel_plugin/core/contract.py) is what is emitted and what docs/telemetry.md says."""

from __future__ import annotations

from pathlib import Path

from otel_plugin import api
from otel_plugin.airflow import listener
from otel_plugin.core import contract
from tests.unit.conftest import make_dag_run, make_ti

DOC = Path(__file__).resolve().parents[3] / "docs" / "telemetry.md"


def test_doc_metrics_table_is_generated_from_the_contract():
    text = DOC.read_text()
    table = text.split("<!-- metrics:begin -->\n", 1)[1].split("\n<!-- metrics:end -->", 1)[0]
    assert table == contract.metrics_markdown(), (
        "docs/telemetry.md is stale: paste the output of "
        "`python -c 'from otel_plugin import contract; print(contract.metrics_markdown())'`"
    )


def test_every_emitted_name_is_declared_and_every_declared_name_is_emitted(captured):
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running"))
    api.record_rows(read=1, written=0)
    api.record_bytes(read=1, written=2)
    api.record_check("fresh", passed=False)
    api.set_fact("source", "x")
    listener.on_task_instance_failed(previous_state="running", task_instance=make_ti(state="up_for_retry"),
                                     error=ValueError("x"))
    listener.on_task_instance_success(previous_state="running", task_instance=make_ti(try_number=2))
    never_ran = make_ti(task_id="late", state="upstream_failed", hostname="", try_number=0)
    listener.on_dag_run_failed(dag_run=make_dag_run([never_ran], state="failed"), msg="task_failure")

    declared = set(contract.COMMON_FIELDS) | set(contract.TASK_FIELDS) | set(contract.DAG_RUN_FIELDS)
    emitted = {key for event in captured.events() for key in event}
    undeclared = {k for k in emitted - declared if not k.startswith(contract.FIELD_PREFIXES)}
    assert undeclared == set()
    assert declared - emitted == set()

    # Gauges come from the scheduler's schedule report (tests/unit/airflow/test_schedule.py checks them).
    metric_names = {m.name for m in contract.METRICS if m.kind != "gauge"}
    exported = {name for name in metric_names if captured.points(name)}
    assert exported == metric_names
    assert {s.name for s in captured.spans()} == {"task load", "task late", "RUN etl"}


def test_doc_job_tables_are_generated_from_the_contract():
    text = DOC.read_text()
    tables = text.split("<!-- job:begin -->\n", 1)[1].split("\n<!-- job:end -->", 1)[0]
    assert tables == contract.job_markdown(), (
        "docs/telemetry.md is stale: paste the output of "
        "`python -c 'from otel_plugin.core import contract; print(contract.job_markdown())'`"
    )
