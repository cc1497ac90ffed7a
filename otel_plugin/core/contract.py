"""The telemetry contract: every metric, event field and span this plugin emits, declared once.

The emitters create instruments from ``METRICS``; docs/telemetry.md, the query catalogue, the dashboards
and the tests read the same names. A test fails when an emitted name is not declared here.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_NAME = "airflow"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" | "histogram"
    unit: str
    attributes: tuple[str, ...]
    description: str

    @property
    def prometheus(self) -> str:
        """The name Prometheus shows after the Collector's translation (dots to _, unit and _total suffixes)."""
        base = self.name.replace(".", "_")
        if self.unit == "s":
            base += "_seconds"
        return base + "_total" if self.kind == "counter" else base


TASK = ("dag_id", "task_id")
TASK_FINISHED = Metric("airflow.otel.task_instance.finished", "counter", "{task_instance}", (*TASK, "state"),
                       "Task-instance tries that ended, by Airflow state")
TASK_RETRIES = Metric("airflow.otel.task_instance.retries", "counter", "{retry}", TASK,
                      "Tries that failed and will be retried (state up_for_retry)")
TASK_DURATION = Metric("airflow.otel.task_instance.duration", "histogram", "s", (*TASK, "state"),
                       "Duration of a task try, start to end")
TASK_ZERO_ROWS = Metric("airflow.otel.task_instance.zero_rows", "counter", "{task_instance}", TASK,
                        "Tries that succeeded while reporting 0 rows")
DAG_RUN_FINISHED = Metric("airflow.otel.dag_run.finished", "counter", "{dag_run}", ("dag_id", "state"),
                          "DAG runs that ended, by state")
DAG_RUN_DURATION = Metric("airflow.otel.dag_run.duration", "histogram", "s", ("dag_id", "state"),
                          "Duration of a DAG run, start to end")
TASK_ROWS = Metric("airflow.otel.task.rows", "counter", "{row}", (*TASK, "direction"),
                   "Rows a task reported reading or writing (direction: read, written)")
TASK_BYTES = Metric("airflow.otel.task.bytes", "counter", "By", (*TASK, "direction"),
                    "Bytes a task reported reading or writing (direction: read, written)")
TASK_CHECKS = Metric("airflow.otel.task.checks", "counter", "{check}", (*TASK, "check", "result"),
                     "Data checks a task reported (result: passed, failed)")

METRICS = (TASK_FINISHED, TASK_RETRIES, TASK_DURATION, TASK_ZERO_ROWS, DAG_RUN_FINISHED, DAG_RUN_DURATION,
           TASK_ROWS, TASK_BYTES, TASK_CHECKS)

# Seconds: from sub-second sensors pokes to day-long backfills.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

# Events (OTLP log records): the value of the ``event`` attribute, and the fields each kind carries.
EVENT_TASK = "task_instance"
EVENT_DAG_RUN = "dag_run"
COMMON_FIELDS = ("event", "dag_id", "run_id", "run_type", "state", "previous_state", "start_time", "end_time",
                 "duration_s", "trace_id", "span_id", "cicd.pipeline.name", "cicd.pipeline.run.id",
                 "cicd.pipeline.result")
TASK_FIELDS = ("task_id", "try_number", "max_tries", "map_index", "hostname", "operator", "pool", "queue",
               "log_url", "error.type", "error.message", "reconciled", "rows_read", "rows_written",
               "bytes_read", "bytes_written", "zero_rows", "checks_failed", "cicd.pipeline.task.name",
               "cicd.pipeline.task.run.id", "cicd.pipeline.task.run.result", "cicd.pipeline.task.run.url.full")
DAG_RUN_FIELDS = ("reason",)
# Open-ended families: one field per check or fact the task recorded.
FIELD_PREFIXES = ("check.", "fact.")

# Spans: one root per DAG run, one child per task try.
SPAN_DAG_RUN = "dag_run {dag_id}"
SPAN_TASK = "task {task_id}"

# OpenTelemetry CI/CD semantic conventions: cicd.pipeline.result and cicd.pipeline.task.run.result values.
CICD_RESULT = {
    "success": "success",
    "failed": "failure",
    "up_for_retry": "failure",
    "upstream_failed": "skip",
    "skipped": "skip",
    "removed": "cancellation",
}


def metrics_markdown() -> str:
    """The metrics table of docs/telemetry.md (a test keeps the document equal to this)."""
    rows = ["| OTel name | kind | unit | attributes | Prometheus name | meaning |", "|---|---|---|---|---|---|"]
    for m in METRICS:
        prom = f"{m.prometheus}_bucket/_sum/_count" if m.kind == "histogram" else m.prometheus
        rows.append(f"| `{m.name}` | {m.kind} | `{m.unit}` | {', '.join(m.attributes)} | `{prom}` | {m.description} |")
    return "\n".join(rows)
