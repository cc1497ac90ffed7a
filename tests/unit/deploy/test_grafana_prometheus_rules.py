"""The generated Prometheus rule file: ``promtool check rules``, and ``promtool test rules`` with series
that must fire each alert and series that must not.

promtool is built from the same Prometheus module version as the stack (compose/versions.env) by
``compose/build.sh promtool``; PROMTOOL=/path/to/promtool overrides.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from grafana.generator import alerts, outputs
from otel_plugin.core import contract

ROOT = Path(__file__).resolve().parents[3]
RULES = outputs.GRAFANA_DIR / outputs.PROMETHEUS_RULES
FINISHED = "airflow_otel_dag_run_finished_total"
DURATION = "airflow_otel_dag_run_duration_seconds_bucket"
ZERO_ROWS = "airflow_otel_task_instance_zero_rows_total"
TASKS = "airflow_otel_task_instance_finished_total"
CHECKS = "airflow_otel_task_checks_total"
DEADLINE = "airflow_otel_dag_success_deadline_seconds"
RUN_DEADLINE = "airflow_otel_dag_run_deadline_seconds"
IMPORT_ERROR = "airflow_otel_dag_file_import_error"
HEARTBEAT = "airflow_otel_scheduler_heartbeat_seconds"
LABELS = {"service": "airflow"}


def _promtool() -> str:
    override = os.environ.get("PROMTOOL")
    if override:
        return override
    build = ROOT / "compose" / "build.sh"
    path = subprocess.run([build, "--path", "promtool"], capture_output=True, text=True, check=True)
    if not os.access(path.stdout.strip(), os.X_OK):
        subprocess.run([build, "promtool"], check=True, timeout=900)
    return path.stdout.strip()


@pytest.fixture(scope="module")
def promtool() -> str:
    return _promtool()


SUMMARIES = {
    "AirflowDagLate": "{dag_id}: should have succeeded {value} ago and has not (late, failed or not started)",
    "AirflowDagRunStuck": "{dag_id}: a run is still running {value} past 3x its usual duration",
    "AirflowDagImportError": "{filename} fails to import: its DAGs are not scheduled",
    "AirflowSchedulerSilent": "no schedule report from the scheduler for over 180 s (down or stuck)",
    "AirflowDagFailureRatio": "{dag_id}: more than 20% of its runs in the last hour failed",
    "AirflowTaskFailures": "{dag_id} / {task_id}: more than 2 final failures in the last hour",
    "AirflowDataCheckFailed": "{dag_id} / {task_id}: data check {check} failed",
    "AirflowDagRunSlow": "{dag_id}: p95 run duration above 3600 s",
    "AirflowTaskZeroRows": "{dag_id} / {task_id} succeeded while processing 0 rows",
}


def _alert(name: str, severity: str = "warning", value: str = "", **labels: str) -> dict:
    return {"exp_labels": {**LABELS, "severity": severity, **labels},
            "exp_annotations": {"summary": SUMMARIES[name].format(value=value, **labels)}}


def _series(metric: str, values: str, **labels: str) -> dict:
    labels = {"job": contract.SERVICE_NAME, **labels}  # the exporter's job label is service.name
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


# Each group: its sample interval, input series, and (eval time, alert, expected alerts).
TESTS = [
    {"interval": "1m", "input_series": [
        _series(FINISHED, "0+1x120", dag_id="etl", state="success"),
        _series(FINISHED, "0+0x60 0+1x60", dag_id="etl", state="failed"),  # from minute 60, one failure a minute
        _series(FINISHED, "0+1x120", dag_id="healthy", state="success"),
        _series(ZERO_ROWS, "0+0x5 1+0x60", dag_id="etl", task_id="load"),
        _series(ZERO_ROWS, "0+0x120", dag_id="etl", task_id="extract"),
    ], "alert_rule_test": [
        {"eval_time": "50m", "alertname": "AirflowDagFailureRatio", "exp_alerts": []},
        {"eval_time": "90m", "alertname": "AirflowDagFailureRatio",
         "exp_alerts": [_alert("AirflowDagFailureRatio", dag_id="etl")]},
        {"eval_time": "10m", "alertname": "AirflowTaskZeroRows",
         "exp_alerts": [_alert("AirflowTaskZeroRows", dag_id="etl", task_id="load")]},
        {"eval_time": "90m", "alertname": "AirflowTaskZeroRows", "exp_alerts": []},  # more than 1h ago
    ]},
    # Deadlines are Unix times; promtool's clock starts at 0, so a deadline of 600 is "at minute 10".
    {"interval": "1m", "input_series": [
        _series(DEADLINE, "600x30", dag_id="late"),  # due at 10m, never moves: the scheduler is gone
        _series(DEADLINE, "600x5 _x25", dag_id="gap"),  # the same, and the series vanished at 6m
        _series(DEADLINE, "600x8 4200x20", dag_id="on_time"),  # succeeded at 8m: the next run is due at 70m
        _series(DEADLINE, "0x30", dag_id="paused"),  # paused, unscheduled or muted: 0
        _series(DEADLINE, "604800x30", dag_id="weekly"),  # mid-week: due in 7 days
        _series(RUN_DEADLINE, "0x4 360x30", dag_id="stuck"),  # a run started at 4m may take until 6m
        _series(RUN_DEADLINE, "0x4 360x2 0x30", dag_id="finished"),  # ... and ended at 6m
        _series(RUN_DEADLINE, "0x30", dag_id="idle"),
    ], "alert_rule_test": [
        {"eval_time": "10m", "alertname": "AirflowDagLate", "exp_alerts": []},  # due, not past due
        {"eval_time": "12m", "alertname": "AirflowDagLate", "exp_alerts": [
            _alert("AirflowDagLate", "critical", "2m 0s", dag_id="gap"),
            _alert("AirflowDagLate", "critical", "2m 0s", dag_id="late")]},
        {"eval_time": "5m", "alertname": "AirflowDagRunStuck", "exp_alerts": []},
        {"eval_time": "8m", "alertname": "AirflowDagRunStuck", "exp_alerts": [
            _alert("AirflowDagRunStuck", value="2m 0s", dag_id="stuck")]},
    ]},
    {"interval": "1m", "input_series": [
        _series(IMPORT_ERROR, "0x2 1x10 0x30", filename="/dags/broken.py"),  # broken at 3m, fixed at 13m
        _series(IMPORT_ERROR, "0x40", filename="/dags/fine.py"),
        _series(HEARTBEAT, "0+60x10 _x30"),  # reports every minute until 10m, then the scheduler dies
    ], "alert_rule_test": [
        {"eval_time": "2m", "alertname": "AirflowDagImportError", "exp_alerts": []},
        {"eval_time": "5m", "alertname": "AirflowDagImportError", "exp_alerts": [
            _alert("AirflowDagImportError", "critical", filename="/dags/broken.py")]},
        {"eval_time": "14m", "alertname": "AirflowDagImportError", "exp_alerts": []},  # parses again: clears
        {"eval_time": "12m", "alertname": "AirflowSchedulerSilent", "exp_alerts": []},
        {"eval_time": "14m", "alertname": "AirflowSchedulerSilent", "exp_alerts": [
            _alert("AirflowSchedulerSilent", "critical")]},
    ]},
    {"interval": "1m", "input_series": [
        _series(TASKS, "0+1x60", dag_id="etl", task_id="load", state="failed"),  # one final failure a minute
        _series(TASKS, "0 1 2x60", dag_id="etl", task_id="extract", state="failed"),  # two: at the threshold
        _series(TASKS, "0+5x60", dag_id="etl", task_id="extract", state="up_for_retry"),  # retries: not final
        _series(CHECKS, "0 1x60", dag_id="etl", task_id="load", check="has_rows", result="failed"),
        _series(CHECKS, "0+1x60", dag_id="etl", task_id="load", check="positive", result="passed"),
    ], "alert_rule_test": [
        {"eval_time": "10m", "alertname": "AirflowTaskFailures", "exp_alerts": [
            _alert("AirflowTaskFailures", dag_id="etl", task_id="load")]},
        {"eval_time": "10m", "alertname": "AirflowDataCheckFailed", "exp_alerts": [
            _alert("AirflowDataCheckFailed", dag_id="etl", task_id="load", check="has_rows")]},
        {"eval_time": "70m", "alertname": "AirflowDataCheckFailed", "exp_alerts": []},
    ]},
    {"interval": "1m", "input_series": [
        *[_series(DURATION, values, dag_id="slow", le=le) for le, values in
          (("1800", "0+0x60"), ("3600", "0+0x60"), ("7200", "0+1x60"), ("+Inf", "0+1x60"))],
        *[_series(DURATION, "0+1x60", dag_id="fast", le=le) for le in ("1800", "3600", "7200", "+Inf")],
    ], "alert_rule_test": [
        {"eval_time": "30m", "alertname": "AirflowDagRunSlow", "exp_alerts": [
            _alert("AirflowDagRunSlow", dag_id="slow")]},
    ]},
]  # fmt: skip


def test_promtool_check_rules(promtool):
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in done.stdout


def test_promtool_test_rules(promtool, tmp_path):
    assert {t["alertname"] for group in TESTS for t in group["alert_rule_test"]} == {a.name for a in alerts.ALERTS}
    spec = tmp_path / "rules.test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": TESTS}))
    done = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_negative_control_promtool_test_rules_fails_on_a_wrong_expectation(promtool, tmp_path):
    wrong = [{**TESTS[0], "alert_rule_test": [{"eval_time": "50m", "alertname": "AirflowDagFailureRatio",
                                               "exp_alerts": [_alert("AirflowDagFailureRatio", dag_id="etl")]}]}]
    spec = tmp_path / "wrong.test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": wrong}))
    done = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, check=False)
    assert done.returncode != 0
