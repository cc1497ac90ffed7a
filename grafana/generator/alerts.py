"""Alert rules as code, from the query catalogue, in two forms with the same thresholds: Grafana-managed rules
(alerting provisioning, both flavours: the rules read Prometheus) and a Prometheus rule file for users who
alert with Prometheus and Alertmanager (checked with ``promtool check rules`` / ``promtool test rules``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from otel_plugin.core import contract
from otel_plugin.readback import queries as Q

from .defaults import PROMETHEUS, to_json

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import alerting, expr, prometheus
    from grafana_foundation_sdk.models import alerting as alerting_model

GROUP = "airflow-otel"
FOLDER = "Airflow"
INTERVAL_SECONDS = 60  # Grafana's evaluation interval; the Prometheus group uses prometheus.yml's global one
# Defaults for every DAG; copy a rule with a dag_id filter for a DAG that needs its own. Freshness and stuck
# runs need no per-DAG rule: their deadlines come from each DAG's own schedule (otel_plugin/airflow/schedule.py).
FAILURE_RATIO = 0.2
FINAL_FAILURES = 2  # final task failures of one task within an hour above which it alerts
EXPECTED_RUN_SECONDS = 3600
SCHEDULER_SILENT_SECONDS = 180  # six missed schedule reports at the default 30 s
# The latest deadline survives this long without a new report (a Collector restart while the scheduler is
# down); longer windows cost Prometheus more samples per evaluation.
DEADLINE_WINDOW = "1h"
assert EXPECTED_RUN_SECONDS in contract.DURATION_BUCKETS, "a bucket boundary: p95 > it is then exact"

_OPS = {">": "gt", "<": "lt"}


@dataclass(frozen=True)
class Alert:
    name: str  # the Prometheus alert name
    uid: str
    title: str
    query: str  # a catalogue query, by dag_id (and task_id)
    window: str
    op: str  # ">" or "<"
    threshold: float
    summary: str
    severity: str = "warning"
    pending: str = "0s"

    @property
    def expr(self) -> str:
        # Rules are files, not dashboards: no variable. They watch the default service name (the label they
        # carry below); an environment with another OTEL_SERVICE_NAME copies the rules with its name.
        return Q.render(Q.get(self.query), "promql", window=self.window, service=contract.SERVICE_NAME)

    @property
    def seconds(self) -> int:
        units = {"m": 60, "h": 3600, "d": 86400}
        return int(self.window[:-1]) * units[self.window[-1]]


ALERTS = (
    Alert("AirflowDagLate", "airflow-otel-dag-late", "DAG should have succeeded by now and has not",
          "dag_late_seconds", DEADLINE_WINDOW, ">", 0,
          "{{ $labels.dag_id }}: should have succeeded {{ $value | humanizeDuration }} ago and has not "
          "(late, failed or not started)", severity="critical"),
    Alert("AirflowDagRunStuck", "airflow-otel-dag-run-stuck", "DAG run running far longer than usual",
          "dag_run_overdue_seconds", DEADLINE_WINDOW, ">", 0,
          "{{ $labels.dag_id }}: a run is still running {{ $value | humanizeDuration }} past 3x its usual "
          "duration"),
    Alert("AirflowDagImportError", "airflow-otel-dag-import-error", "DAG file fails to import",
          "dag_file_import_errors", "10m", ">", 0,
          "{{ $labels.filename }} fails to import: its DAGs are not scheduled", severity="critical"),
    Alert("AirflowSchedulerSilent", "airflow-otel-scheduler-silent", "Scheduler stopped reporting",
          "scheduler_silent_seconds", "1d", ">", SCHEDULER_SILENT_SECONDS,
          f"no schedule report from the scheduler for over {SCHEDULER_SILENT_SECONDS} s (down or stuck)",
          severity="critical"),
    Alert("AirflowDagFailureRatio", "airflow-otel-dag-failure-ratio", "DAG failure ratio above threshold",
          "dag_failure_ratio", "1h", ">", FAILURE_RATIO,
          f"{{{{ $labels.dag_id }}}}: more than {FAILURE_RATIO:.0%} of its runs in the last hour failed"),
    Alert("AirflowTaskFailures", "airflow-otel-task-failures", "Task failed finally more than allowed",
          "task_failures", "1h", ">", FINAL_FAILURES,
          f"{{{{ $labels.dag_id }}}} / {{{{ $labels.task_id }}}}: more than {FINAL_FAILURES} final failures "
          "in the last hour"),
    Alert("AirflowDataCheckFailed", "airflow-otel-data-check-failed", "Data check failed",
          "failed_checks", "1h", ">", 0,
          "{{ $labels.dag_id }} / {{ $labels.task_id }}: data check {{ $labels.check }} failed"),
    Alert("AirflowDagRunSlow", "airflow-otel-dag-run-slow", "DAG runs slower than expected",
          "dag_run_duration_p95", "1h", ">", EXPECTED_RUN_SECONDS,
          f"{{{{ $labels.dag_id }}}}: p95 run duration above {EXPECTED_RUN_SECONDS} s"),
    Alert("AirflowTaskZeroRows", "airflow-otel-zero-rows", "Task succeeded with 0 rows",
          "zero_rows_tasks", "1h", ">", 0,
          "{{ $labels.dag_id }} / {{ $labels.task_id }} succeeded while processing 0 rows"),
)  # fmt: skip


def _grafana_rule(alert: Alert) -> alerting.Rule:
    query = (prometheus.Dataquery().ref_id("A").datasource(PROMETHEUS.ref).expr(alert.expr).instant()
             .legend_format("__auto"))
    threshold = expr.TypeThreshold().ref_id("B").expression("A").conditions([
        expr.ExprTypeThresholdConditions().evaluator(
            expr.ExprTypeThresholdConditionsEvaluator().type(_OPS[alert.op]).params([alert.threshold]))])  # type: ignore[arg-type]
    return (
        alerting.Rule(alert.title).uid(alert.uid).condition("B").for_val(alert.pending)
        .no_data_state("OK").exec_err_state("Error")
        .labels({"severity": alert.severity, "service": contract.SERVICE_NAME})
        .annotations({"summary": alert.summary, "query": alert.query})
        .with_query(alerting.Query("A").datasource_uid(PROMETHEUS.uid).model(query)
                    .relative_time_range(alerting_model.RelativeTimeRange(from_val=alert.seconds, to=0)))
        .with_query(alerting.Query("B").datasource_uid("__expr__").model(threshold))
    )  # fmt: skip


# Keys of the API's rule that file provisioning takes from the group instead.
API_ONLY_KEYS = ("folderUID", "orgID", "ruleGroup")


def grafana_provisioning() -> dict[str, Any]:
    """Grafana's alerting provisioning file: one group in folder FOLDER."""
    group = alerting.RuleGroup(GROUP).interval(INTERVAL_SECONDS)
    for alert in ALERTS:
        group = group.with_rule(_grafana_rule(alert))
    rules = [{k: v for k, v in rule.items() if k not in API_ONLY_KEYS} for rule in to_json(group)["rules"]]
    return {"apiVersion": 1, "groups": [
        {"orgId": 1, "name": GROUP, "folder": FOLDER, "interval": f"{INTERVAL_SECONDS}s", "rules": rules}]}


def prometheus_rules() -> dict[str, Any]:
    """The same alerts as a Prometheus rule file."""
    rules = [{
        "alert": alert.name, "expr": f"({alert.expr}) {alert.op} {alert.threshold:g}",
        "for": alert.pending, "labels": {"severity": alert.severity, "service": contract.SERVICE_NAME},
        "annotations": {"summary": alert.summary},
    } for alert in ALERTS]  # fmt: skip
    # No group interval: prometheus.yml's evaluation_interval applies (5 s on the shipped stack).
    return {"groups": [{"name": GROUP, "rules": rules}]}
