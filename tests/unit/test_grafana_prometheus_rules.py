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

ROOT = Path(__file__).resolve().parents[2]
RULES = outputs.GRAFANA_DIR / outputs.PROMETHEUS_RULES
FINISHED = "airflow_otel_dag_run_finished_total"
DURATION = "airflow_otel_dag_run_duration_seconds_bucket"
ZERO_ROWS = "airflow_otel_task_instance_zero_rows_total"
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
    "AirflowDagFailureRatio": "{dag_id}: more than 20% of its runs in the last hour failed",
    "AirflowDagNoSuccess": "{dag_id}: no successful run in the last 26h (failed, late or not started)",
    "AirflowDagRunSlow": "{dag_id}: p95 run duration above 3600 s",
    "AirflowTaskZeroRows": "{dag_id} / {task_id} succeeded while processing 0 rows",
}


def _alert(name: str, severity: str = "warning", **labels: str) -> dict:
    return {"exp_labels": {**LABELS, "severity": severity, **labels},
            "exp_annotations": {"summary": SUMMARIES[name].format(**labels)}}


def _series(metric: str, values: str, **labels: str) -> dict:
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
        {"eval_time": "100m", "alertname": "AirflowDagNoSuccess", "exp_alerts": []},
    ]},
    {"interval": "10m", "input_series": [
        _series(FINISHED, "0+1x200", dag_id="daily", state="success"),
        _series(FINISHED, "1+0x200", dag_id="stuck", state="success"),  # last success before the window
        _series(FINISHED, "0+1x200", dag_id="stuck", state="failed"),
        _series(FINISHED, "0+1x200", dag_id="broken", state="failed"),  # never succeeded: 0, not no data
    ], "alert_rule_test": [
        {"eval_time": "27h", "alertname": "AirflowDagNoSuccess", "exp_alerts": [
            _alert("AirflowDagNoSuccess", "critical", dag_id="broken"),
            _alert("AirflowDagNoSuccess", "critical", dag_id="stuck")]},
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
