"""The telemetry contract: every metric, event field and span this plugin emits, declared once.

The emitters create instruments from ``METRICS``; docs/telemetry.md, the query catalogue, the dashboards
and the tests read the same names. A test fails when an emitted name is not declared here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVICE_NAME = "airflow"  # the default service.name; OTEL_SERVICE_NAME sets another (config.service_name)

# Run-scoped keys: one value per run, try or process. They are event fields and span attributes, never metric
# labels (one series per run is the unbounded growth this project removes). Matched as a whole key or as the
# last part of a dotted/underscored one (``airflow.try_number``, ``cicd.pipeline.run.id``), any case. The
# metric guard, the custom-metric API, the query catalogue and the Collector's drop_run_ids transform (checked
# by tests/unit/deploy/test_collector_configs.py) all read this list.
RUN_SCOPED_KEYS = (
    "run_id", "dag_run_id", "try_number", "map_index", "ti_id", "task_instance_id", "trace_id", "span_id",
    "logical_date", "execution_date", "cicd.pipeline.run.id", "cicd.pipeline.task.run.id",
    "service.instance.id", "hostname", "pid", "log_url",
)
_RUN_SCOPED = re.compile(
    r"(?i)(^|[._])(" + "|".join(re.escape(k).replace(r"\.", "[._]") for k in RUN_SCOPED_KEYS) + r")$"
)


def is_run_scoped(key: str) -> bool:
    """True for a key that must never be a metric label (see RUN_SCOPED_KEYS)."""
    return bool(_RUN_SCOPED.search(key))


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" | "histogram" | "gauge" (gauges: absolute values, re-sent whole by the scheduler)
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
# Schedule-aware gauges, sent by the scheduler from Airflow's database (otel_plugin/airflow/schedule.py).
DAG_SUCCESS_DEADLINE = Metric("airflow.otel.dag.success_deadline", "gauge", "s", ("dag_id",),
                              "Unix time by which the DAG should have succeeded again (0: none expected)")
DAG_RUN_DEADLINE = Metric("airflow.otel.dag.run_deadline", "gauge", "s", ("dag_id",),
                          "Unix time by which the DAG's oldest running run should have ended (0: none)")
DAG_USUAL_DURATION = Metric("airflow.otel.dag.usual_duration", "gauge", "s", ("dag_id",),
                            "Longest of the DAG's last 5 successful runs")
SCHEDULER_HEARTBEAT = Metric("airflow.otel.scheduler.heartbeat", "gauge", "s", (),
                             "Unix time of the scheduler's latest schedule report")
DAG_FILE_IMPORT_ERROR = Metric("airflow.otel.dag_file.import_error", "gauge", "{error}", ("filename",),
                               "1 while the DAG file fails to import, 0 once it parses again")

METRICS = (TASK_FINISHED, TASK_RETRIES, TASK_DURATION, TASK_ZERO_ROWS, DAG_RUN_FINISHED, DAG_RUN_DURATION,
           TASK_ROWS, TASK_BYTES, TASK_CHECKS, DAG_SUCCESS_DEADLINE, DAG_RUN_DEADLINE, DAG_USUAL_DURATION,
           SCHEDULER_HEARTBEAT, DAG_FILE_IMPORT_ERROR)

# Seconds: from sub-second sensors pokes to day-long backfills.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

# Events (OTLP log records): the value of the ``event`` attribute, and the fields each kind carries.
EVENT_TASK = "task_instance"
EVENT_DAG_RUN = "dag_run"
EVENT_IMPORT_ERROR = "dag_import_error"  # a DAG file that failed to import: filename, error.message
EVENT_DEADLINE_MISSED = "dag_run_deadline_missed"  # an Airflow 3 DeadlineAlert the run missed, at its end
COMMON_FIELDS = ("event", "dag_id", "run_id", "run_type", "state", "previous_state", "start_time", "end_time",
                 "duration_s", "trace_id", "span_id", "cicd.pipeline.name", "cicd.pipeline.run.id",
                 "cicd.pipeline.run.state", "cicd.pipeline.result")
# The business facts a task recorded (otel_plugin.api), on its final event; rows_* and zero_rows also feed metrics.
FACT_FIELDS = ("rows_read", "rows_written", "bytes_read", "bytes_written", "zero_rows", "checks_failed")
TASK_FIELDS = ("task_id", "try_number", "max_tries", "map_index", "hostname", "operator", "pool", "queue",
               "log_url", "error.type", "error.message", "reconciled", *FACT_FIELDS, "cicd.pipeline.task.name",
               "cicd.pipeline.task.run.id", "cicd.pipeline.task.run.result", "cicd.pipeline.task.run.url.full",
               "cicd.worker.name")
DAG_RUN_FIELDS = ("reason", "error.type", "cicd.pipeline.action.name")
IMPORT_ERROR_FIELDS = ("event", "filename", "state", "error.type", "error.message", "error.stacktrace")
DEADLINE_MISSED_FIELDS = ("event", "dag_id", "run_id", "state", "trace_id", "span_id", "deadline.time",
                          "deadline.name", "deadline.missed_by_s", "end_time")
# Open-ended families: one field per check or fact the task recorded.
CHECK_PREFIX, FACT_PREFIX, METRIC_PREFIX = "check.", "fact.", "metric."
FIELD_PREFIXES = (CHECK_PREFIX, FACT_PREFIX, METRIC_PREFIX)

# Spans: one root per DAG run, one child per task try, and (job side) one per job process under its task.
# The OpenTelemetry CI/CD semantic conventions name the pipeline-run span "{action} {pipeline}" with kind
# SERVER; a task-run span is INTERNAL (its name is free).
CICD_ACTION = "RUN"  # cicd.pipeline.action.name: a DAG run executes (BUILD and SYNC do not apply)
SPAN_DAG_RUN = CICD_ACTION + " {dag_id}"
SPAN_TASK = "task {task_id}"
SPAN_JOB = "job {job}"
SPAN_KIND_DAG_RUN = "SERVER"
SPAN_KIND_TASK = "INTERNAL"

# --- Custom metrics (otel_plugin.api.counter/histogram/up_down_counter, otel_plugin.job) -------------------
# Any name the user picks, always DELTA, labels = the user's own plus these (set from the run context).
CUSTOM_METRIC_LABELS = TASK
# Label keys the user may not set: ours (from the context), Prometheus's target labels (the exporter's
# job/instance would collide) and the ones Prometheus reserves for histogram buckets and quantiles.
RESERVED_LABELS = frozenset({*TASK, "job", "instance", "le", "quantile"})
# Distinct label sets one metric may reach in one process before further sets fold into one overflow set.
CUSTOM_MAX_LABEL_SETS = 100
OVERFLOW_LABEL = "otel_metric_overflow"  # the folded set carries otel_metric_overflow="true" (OTel's rule)

# --- Job side: what a task hands a child process (otel_plugin.api.job_env, otel_plugin.job) ------------------
# The run's ids, one environment variable each. A child started by Airflow without job_env() still has
# Airflow's own AIRFLOW_CTX_* variables; the job side falls back to those (map_index has none).
ENV_TRACEPARENT = "TRACEPARENT"  # W3C traceparent of the task try's span: the job's spans are its children
JOB_ENV = {
    "dag_id": "AIRFLOW_OTEL_DAG_ID",
    "task_id": "AIRFLOW_OTEL_TASK_ID",
    "run_id": "AIRFLOW_OTEL_RUN_ID",
    "try_number": "AIRFLOW_OTEL_TRY_NUMBER",
    "map_index": "AIRFLOW_OTEL_MAP_INDEX",
}
AIRFLOW_CTX_ENV = {
    "dag_id": "AIRFLOW_CTX_DAG_ID",
    "task_id": "AIRFLOW_CTX_TASK_ID",
    "run_id": "AIRFLOW_CTX_DAG_RUN_ID",
    "try_number": "AIRFLOW_CTX_TRY_NUMBER",
}
ENV_JOB_NAME = "AIRFLOW_OTEL_JOB"  # optional: the job's name (default: the program's name)
# For any other OTel SDK (JVM, Go, ...; docs/jobs.md): the run's ids as resource attributes in
# OTEL_RESOURCE_ATTRIBUTES. The Collector turns dag_id and task_id into metric labels and deletes the
# run-scoped ones from metrics (collector/config.yaml: transform/job_resource_labels, transform/drop_run_ids);
# spans keep them all. The Python job side leaves them out of its own resource (it labels points itself).
RESOURCE_CONTEXT_KEYS = ("dag_id", "task_id", "run_id", "try_number", "map_index")
# The task's configuration a child inherits: every OTEL_EXPORTER_OTLP_* variable of the task's
# environment (endpoint, headers, protocol, ...), plus these, resolved from airflow.cfg and the environment.
ENV_PASSED_PREFIXES = ("OTEL_EXPORTER_OTLP_",)
ENV_PASSED = ("OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED")
# Always set for the child: other SDKs default to cumulative, which would not add up across processes.
JOB_ENV_FIXED = {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}
# Set when the task's environment names neither: other SDKs (Java) default to gRPC on 4317.
JOB_OTLP_DEFAULTS = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}

# The job's event (one OTLP log record per job process, at its exit): the run's ids (COMMON_FIELDS and the
# task's try_number, map_index) plus these. ``metric.<name>`` fields hold the process's counter totals.
EVENT_JOB = "job"
JOB_FIELDS = ("task_id", "try_number", "map_index", "job", "pid", "hostname", "error.type", "error.message")
JOB_STATES = ("finished", "failed")  # failed: the process ended with an uncaught exception



@dataclass(frozen=True)
class State:
    """What the plugin does with one Airflow state (task try or DAG run)."""

    name: str
    severity: str  # the event's severity: INFO, WARN or ERROR
    span_status: str  # OK, ERROR or UNSET
    cicd_result: str | None  # OTel CI/CD conventions: cicd.pipeline(.task.run).result; None while not final
    failure: bool = False  # a failed try (final or retried): what failure queries look for
    without_worker: bool = False  # terminal without a worker ever running it: reconciled at the run's end


STATES = (
    State("success", "INFO", "OK", "success"),
    State("failed", "ERROR", "ERROR", "failure", failure=True, without_worker=True),
    State("up_for_retry", "WARN", "ERROR", "failure", failure=True),
    State("upstream_failed", "WARN", "UNSET", "skip", without_worker=True),
    State("skipped", "WARN", "UNSET", "skip", without_worker=True),
    State("removed", "WARN", "UNSET", "cancellation", without_worker=True),
)
STATE = {state.name: state for state in STATES}
FAILURE_STATES = tuple(state.name for state in STATES if state.failure)
# OpenTelemetry CI/CD semantic conventions: cicd.pipeline.result and cicd.pipeline.task.run.result values.
CICD_RESULT = {state.name: state.cicd_result for state in STATES if state.cicd_result}
CICD_TIMEOUT = "timeout"
# A failure is a `timeout` when a task's error is one of Airflow's timeouts (execution_timeout, a sensor's
# timeout) or a DAG run ended with Airflow's reason "timed_out" (dagrun_timeout).
TIMEOUT_ERRORS = frozenset({"AirflowTaskTimeout", "AirflowSensorTimeout"})
TIMEOUT_REASON = "timed_out"
# cicd.pipeline.run.state: task events happen while the run executes; the run's end event is its finalizing.
CICD_RUN_STATE_TASK = "executing"
CICD_RUN_STATE_END = "finalizing"
ERROR_TYPE_OTHER = "_OTHER"  # error.type of a failure with no exception (the conventions' fallback)


def cicd_result(state: str | None, error_type: str | None = None, reason: str | None = None) -> str | None:
    """cicd.pipeline.result / cicd.pipeline.task.run.result for an Airflow state (None for a non-final one)."""
    result = CICD_RESULT.get(state or "")
    if result == "failure" and (error_type in TIMEOUT_ERRORS or reason == TIMEOUT_REASON):
        return CICD_TIMEOUT
    return result


def metrics_markdown() -> str:
    """The metrics table of docs/telemetry.md (a test keeps the document equal to this)."""
    rows = ["| OTel name | kind | unit | attributes | Prometheus name | meaning |", "|---|---|---|---|---|---|"]
    for m in METRICS:
        prom = f"{m.prometheus}_bucket/_sum/_count" if m.kind == "histogram" else m.prometheus
        rows.append(f"| `{m.name}` | {m.kind} | `{m.unit}` | {', '.join(m.attributes)} | `{prom}` | {m.description} |")
    return "\n".join(rows)


# What each JOB_FIELDS entry means (docs/telemetry.md's job tables are generated from these).
JOB_FIELD_MEANINGS = {
    "task_id": "the task that started the job",
    "try_number": "the task's try",
    "map_index": "the task's map index (-1 unmapped)",
    "job": "the job's name: push_to_collector(job=...), emit --job, AIRFLOW_OTEL_JOB, else the program's name",
    "pid": "the job's process id",
    "hostname": "where the job ran",
    "error.type": "exception class of the uncaught exception (state failed), or ExitCode (emit span)",
    "error.message": "its message, secrets masked, at most 4096 characters",
}


def job_markdown() -> str:
    """The job-side tables of docs/telemetry.md (a test keeps the document equal to this)."""
    rows = ["| variable | value |", "|---|---|",
            f"| `{ENV_TRACEPARENT}` | W3C traceparent of the task try's span: the job's spans are its children |"]
    rows += [f"| `{name}` | the run's `{key}` |" for key, name in JOB_ENV.items()]
    rows += [
        f"| `OTEL_RESOURCE_ATTRIBUTES` | the task's own, plus `{'`, `'.join(RESOURCE_CONTEXT_KEYS)}`, "
        "percent-encoded (for other OTel SDKs: the Collector makes dag_id and task_id labels and drops the rest "
        "from metrics) |",
        *(f"| `{k}` | `{v}` |" for k, v in JOB_ENV_FIXED.items()),
        f"| `{'*`, `'.join(ENV_PASSED_PREFIXES)}*`, `{'`, `'.join(ENV_PASSED)}` | copied from the task's "
        "environment (OTLP endpoint, headers, protocol, ...: may hold credentials) |",
        f"| {', '.join(f'`{k}`' for k in JOB_OTLP_DEFAULTS)} | "
        f"{', '.join(f'`{v}`' for v in JOB_OTLP_DEFAULTS.values())} when the task's environment names neither |",
        "| `AIRFLOW__OTEL_PLUGIN__*` | the task's resolved plugin settings (enabled, signals, flush budget, "
        "export timeout, spool) |",
        f"| `{ENV_JOB_NAME}` | not set by `job_env()`: set it to name the job |",
        "",
        f"Fallbacks when a process was started by Airflow without `job_env()`: "
        f"{', '.join(f'`{v}`' for v in AIRFLOW_CTX_ENV.values())} (Airflow's own; no map index, no parent span).",
        "",
        "| job event field | meaning |", "|---|---|",
        f"| `event` | `{EVENT_JOB}` |",
        "| `dag_id`, `run_id`, `cicd.pipeline.name`, `cicd.pipeline.run.id` | the run (from the context) |",
        f"| `state` | {' or '.join(f'`{s}`' for s in JOB_STATES)} (an uncaught exception, or a failed `emit span` "
        "command) |",
        "| `start_time`, `end_time`, `duration_s` | the process's start and the event's time |",
        "| `trace_id`, `span_id` | the job's span |",
    ]
    rows += [f"| `{name}` | {JOB_FIELD_MEANINGS[name]} |" for name in JOB_FIELDS]
    rows += ["| `metric.<name>` | this process's total of each counter it recorded or pushed |",
             "| `fact.<key>` | facts (`job.set_fact`, `emit fact`) and refused run-scoped labels or grouping keys |"]
    return "\n".join(rows)
