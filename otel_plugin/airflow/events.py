"""Structured events: one OTLP log record per task-instance state change and per DAG-run change.

The same events can be written as JSON lines (python-json-logger) to a file or stdout for users who ship
logs with an agent. High-cardinality ids (run_id, try_number, map_index) are fields here, never labels.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context

from otel_plugin.airflow.deadlines import MissedDeadline
from otel_plugin.airflow.model import DagRunInfo, TaskRun
from otel_plugin.api import Facts
from otel_plugin.core import contract
from otel_plugin.core.errors import ErrorInfo
from otel_plugin.core.otel_compat import emit_log
from otel_plugin.core.sanitize import bound_attributes, clean_text, safe_str

Attributes = dict[str, object]

_PRIORITY = (*contract.COMMON_FIELDS, *contract.TASK_FIELDS, *contract.DAG_RUN_FIELDS,
             *contract.DEADLINE_MISSED_FIELDS)
_SEVERITY = {state.name: SeverityNumber[state.severity] for state in contract.STATES}


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat() if value else None


def _common(event: str, dag_id: str, run_id: str, state: str | None, trace_id: int, span_id: int) -> Attributes:
    return {
        "event": event,
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "trace_id": f"{trace_id:032x}",
        "span_id": f"{span_id:016x}",
        "cicd.pipeline.name": dag_id,
        "cicd.pipeline.run.id": run_id,
        "cicd.pipeline.run.state": contract.CICD_RUN_STATE_END if event == contract.EVENT_DAG_RUN
        else contract.CICD_RUN_STATE_TASK,
    }


def task_attributes(run: TaskRun, error: ErrorInfo | None = None, facts: Facts | None = None) -> Attributes:
    attrs = _common(contract.EVENT_TASK, run.dag_id, run.run_id, run.state, run.trace.trace_id, run.span_id)
    attrs.update({
        "task_id": run.task_id,
        "try_number": run.try_number,
        "max_tries": run.max_tries,
        "map_index": run.map_index,
        "previous_state": run.previous_state,
        "run_type": run.run_type,
        "start_time": _iso(run.start),
        "end_time": _iso(run.end),
        "duration_s": run.duration,
        "hostname": run.hostname,
        "operator": run.operator,
        "pool": run.pool,
        "queue": run.queue,
        "log_url": run.log_url,
        "reconciled": run.reconciled or None,
        "cicd.pipeline.task.name": run.task_id,
        "cicd.pipeline.task.run.id": f"{run.run_id}/{run.task_id}/{run.map_index}/{run.try_number}",
        "cicd.pipeline.task.run.result": contract.cicd_result(run.state, error.type if error else None),
        "cicd.pipeline.task.run.url.full": run.log_url,
        "cicd.worker.name": run.hostname,
    })
    if error:
        attrs["error.type"] = error.type
        attrs["error.message"] = error.message
    elif attrs["cicd.pipeline.task.run.result"] in ("failure", contract.CICD_TIMEOUT):
        attrs["error.type"] = contract.ERROR_TYPE_OTHER  # required by the conventions on a failed task run
    if facts:
        attrs.update(fact_attributes(facts))
    return _bounded(attrs)


def fact_attributes(facts: Facts) -> Attributes:
    attrs: Attributes = {
        "rows_read": facts.rows_read,
        "rows_written": facts.rows_written,
        "bytes_read": facts.bytes_read,
        "bytes_written": facts.bytes_written,
        "zero_rows": facts.zero_rows,
    }
    if facts.checks:
        attrs["checks_failed"] = sum(1 for passed in facts.checks.values() if not passed)
        attrs.update({contract.CHECK_PREFIX + name: "passed" if ok else "failed" for name, ok in facts.checks.items()})
    attrs.update({contract.FACT_PREFIX + key: value for key, value in facts.extra.items()})
    return attrs


def dag_run_attributes(info: DagRunInfo) -> Attributes:
    attrs = _common(contract.EVENT_DAG_RUN, info.dag_id, info.run_id, info.state, info.trace.trace_id,
                    info.trace.root_span_id)
    attrs.update({
        "run_type": info.run_type,
        "start_time": _iso(info.start),
        "end_time": _iso(info.end),
        "duration_s": (info.end - info.start).total_seconds() if info.start and info.end else None,
        "reason": clean_text(info.message) if info.message else None,
        "cicd.pipeline.result": contract.cicd_result(info.state, reason=info.message),
        "cicd.pipeline.action.name": contract.CICD_ACTION,
    })
    if attrs["cicd.pipeline.result"] in ("failure", contract.CICD_TIMEOUT):
        # error.type is required on a failed pipeline run: Airflow's reason (task_failure, timed_out) is a
        # small fixed set; without one, the conventions' fallback.
        attrs["error.type"] = clean_text(info.message) if info.message else contract.ERROR_TYPE_OTHER
    return _bounded(attrs)


def deadline_missed_attributes(info: DagRunInfo, miss: MissedDeadline) -> Attributes:
    """A DeadlineAlert the run missed: when it was due, by how much the run's end overran it, the alert's name."""
    return _bounded({
        "event": contract.EVENT_DEADLINE_MISSED,
        "dag_id": info.dag_id,
        "run_id": info.run_id,
        "state": info.state,
        "trace_id": f"{info.trace.trace_id:032x}",
        "span_id": f"{info.trace.root_span_id:016x}",
        "deadline.time": _iso(miss.deadline),
        "deadline.name": miss.name,
        "deadline.missed_by_s": (info.end - miss.deadline).total_seconds() if info.end else None,
        "end_time": _iso(info.end),
    })


def import_error_attributes(filename: object, stacktrace: object) -> Attributes:
    """A DAG file that failed to import: the file, the error's last line (masked) and the trace's end."""
    text = clean_text(stacktrace, 1 << 16) if stacktrace else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return _bounded({
        "event": contract.EVENT_IMPORT_ERROR,
        "filename": safe_str(filename),
        "state": "failed",
        "error.type": lines[-1].split(":", 1)[0].strip() if lines else None,
        "error.message": clean_text(lines[-1] if lines else text),
        "error.stacktrace": clean_text(text[-4000:], 4000) if text else None,
    })


def _bounded(attrs: Attributes) -> Attributes:
    """Coerced, masked and size-capped; the contract's own fields win over user facts when space runs out."""
    return dict(bound_attributes(attrs, keep_first=_PRIORITY))


def _body(attrs: Attributes) -> str:
    if attrs["event"] == contract.EVENT_IMPORT_ERROR:
        return clean_text(f"{attrs['event']} {attrs['filename']} error={attrs.get('error.message')}", 1024)
    if attrs["event"] == contract.EVENT_DEADLINE_MISSED:
        return clean_text(f"{attrs['event']} {attrs['dag_id']} run_id={attrs['run_id']} "
                          f"deadline={attrs['deadline.time']} missed_by_s={attrs.get('deadline.missed_by_s')}", 1024)
    where = f"{attrs['dag_id']}.{attrs['task_id']}" if "task_id" in attrs else str(attrs["dag_id"])
    text = f"{attrs['event']} {where} {attrs.get('state')} run_id={attrs['run_id']}"
    if "try_number" in attrs:
        text += f" try={attrs['try_number']} map_index={attrs['map_index']}"
    if attrs.get("error.message"):
        text += f" error={attrs.get('error.type')}: {attrs['error.message']}"
    return clean_text(text, 1024)


class EventWriter:
    """Sends events to the OTel logger and, if configured, to a JSON-lines file or stdout."""

    def __init__(self, otel_logger: object | None, json_path: str) -> None:
        self.otel_logger = otel_logger
        self.json_logger = _json_logger(json_path) if json_path else None

    def write(self, attrs: Attributes, when: dt.datetime | None, context: Context | None) -> None:
        """Write one event; ``attrs`` come from task_attributes or dag_run_attributes (already bounded)."""
        state = str(attrs.get("state") or "")
        body = _body(attrs)
        # A missed deadline is a warning whatever the run's end state (that state is on the run's own event).
        severity = (SeverityNumber.WARN if attrs["event"] == contract.EVENT_DEADLINE_MISSED
                    else _SEVERITY.get(state, SeverityNumber.INFO))
        if self.otel_logger is not None:
            emit_log(
                self.otel_logger,
                timestamp=int((when or dt.datetime.now(dt.timezone.utc)).timestamp() * 1e9),
                context=context,
                severity_number=severity,
                body=body,
                attributes=attrs,
                event_name=f"airflow.{attrs['event']}",
            )
        if self.json_logger is not None:
            level = logging.ERROR if severity == SeverityNumber.ERROR else logging.INFO
            self.json_logger.log(level, body, extra=attrs)


def _json_logger(path: str) -> logging.Logger:
    from pythonjsonlogger.json import JsonFormatter

    logger = logging.getLogger(f"otel_plugin.airflow.events.{path}")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout) if path == "-" else logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(JsonFormatter("%(message)s", timestamp=True))
        logger.addHandler(handler)
        logger.propagate = False  # the events are the file's content, not Airflow's task log
        logger.setLevel(logging.INFO)
    return logger
