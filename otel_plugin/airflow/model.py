"""Plain snapshots of Airflow task instances and DAG runs, read defensively.

Airflow hands listeners different objects depending on the process and version: the task SDK's
``RuntimeTaskInstance`` in workers (3.x), the ORM ``TaskInstance`` in the scheduler and API server, and
2.10's ORM objects everywhere. Everything version-specific about reading them lives here; the emitters only
see ``TaskRun`` and ``DagRunInfo``.
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass
from typing import Any

from otel_plugin.core import config, ids
from otel_plugin.core.sanitize import safe_str

_MISSING = object()


def read(obj: object, *path: str) -> Any:
    """Follow attribute names; None on a missing attribute or one whose property raises."""
    for name in path:
        if obj is None:
            return None
        try:
            obj = getattr(obj, name, None)
        except Exception:
            return None
    return obj


def state_name(state: object) -> str | None:
    """Airflow's state value ("up_for_retry"), not ``str(enum)`` ("TaskInstanceState.UP_FOR_RETRY")."""
    if state is None:
        return None
    value = getattr(state, "value", state)
    return value if isinstance(value, str) else safe_str(value)


def _id(value: object) -> str:
    # safe_str: an id object whose __str__ raises must not lose the whole event.
    return safe_str(value) if value else "unknown"


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _datetime(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _traceparent(carrier: object) -> str | None:
    if isinstance(carrier, dict):
        value = carrier.get("traceparent")
        return value if isinstance(value, str) else None
    return None


@dataclass(frozen=True)
class TraceRef:
    """Where a run's spans go: its trace id, the root span id, and Airflow's own span to hang it under."""

    trace_id: int
    root_span_id: int
    airflow_parent_span_id: int | None = None


def trace_ref(dag_id: str, run_id: str, clear_number: int, carrier: str | None) -> TraceRef:
    """Join the trace Airflow keeps for the run when its tracing is on (sampled carrier), else derive one."""
    parsed = ids.parse_traceparent(carrier)
    if parsed and parsed[2]:
        trace, airflow_span, _ = parsed
        return TraceRef(trace, ids.child_root_span_id(trace, dag_id, run_id), airflow_span)
    trace = ids.trace_id(dag_id, run_id, clear_number, service=config.service_name())
    return TraceRef(trace, ids.root_span_id(dag_id, run_id, clear_number))


@dataclass(frozen=True)
class DagRunInfo:
    dag_id: str
    run_id: str
    state: str | None
    start: dt.datetime | None
    end: dt.datetime | None
    run_type: str | None
    clear_number: int
    trace: TraceRef
    message: str | None = None

    @classmethod
    def from_airflow(cls, dag_run: object, message: str | None = None) -> DagRunInfo:
        dag_id = _id(read(dag_run, "dag_id"))
        run_id = _id(read(dag_run, "run_id"))
        clear_number = _int(read(dag_run, "clear_number"), 0)
        return cls(
            dag_id=dag_id,
            run_id=run_id,
            state=state_name(read(dag_run, "state")),
            start=_datetime(read(dag_run, "start_date")) or _datetime(read(dag_run, "queued_at")),
            end=_datetime(read(dag_run, "end_date")),
            run_type=state_name(read(dag_run, "run_type")),
            clear_number=clear_number,
            trace=trace_ref(dag_id, run_id, clear_number, _traceparent(read(dag_run, "context_carrier"))),
            message=message,
        )


@dataclass(frozen=True)
class TaskRun:
    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    max_tries: int
    map_index: int
    state: str | None
    previous_state: str | None
    start: dt.datetime | None
    end: dt.datetime | None
    hostname: str | None
    operator: str | None
    pool: str | None
    queue: str | None
    log_url: str | None
    run_type: str | None
    clear_number: int
    trace: TraceRef
    reconciled: bool = False

    @property
    def span_id(self) -> int:
        return ids.task_span_id(
            self.dag_id, self.run_id, self.clear_number, self.task_id, self.map_index, self.try_number
        )

    @property
    def duration(self) -> float | None:
        if self.start and self.end:
            return max(0.0, (self.end - self.start).total_seconds())
        return None

    @classmethod
    def from_airflow(
        cls, ti: object, state: object = _MISSING, previous_state: object = None, reconciled: bool = False
    ) -> TaskRun:
        dag_id = _id(read(ti, "dag_id"))
        run_id = _id(read(ti, "run_id"))
        server_run = read(ti, "_ti_context_from_server", "dag_run")  # task SDK: the run as the API sent it
        orm_run = None if server_run is not None else read(ti, "dag_run")
        run = server_run or orm_run
        clear_number = _int(read(run, "clear_number"), 0)
        # Both sides must pick the same carrier: the run's (scheduler) and the task's (worker, same trace).
        carrier = _traceparent(read(run, "context_carrier")) or _traceparent(read(ti, "context_carrier"))
        task = read(ti, "task")
        operator = read(ti, "operator") or read(task, "task_type") or (type(task).__name__ if task else None)
        end = _datetime(read(ti, "end_date"))
        terminal = state_name(read(ti, "state") if state is _MISSING else state)
        if end is None and terminal not in (None, "running", "queued", "scheduled"):
            end = dt.datetime.now(dt.timezone.utc)  # 3.0 leaves end_date unset on some terminal paths
        return cls(
            dag_id=dag_id,
            task_id=_id(read(ti, "task_id")),
            run_id=run_id,
            try_number=_int(read(ti, "try_number"), 0),
            max_tries=_int(read(ti, "max_tries"), _int(read(task, "retries"), 0)),
            map_index=_int(read(ti, "map_index"), -1),
            state=terminal,
            previous_state=state_name(previous_state),
            start=_datetime(read(ti, "start_date")),
            end=end,
            hostname=read(ti, "hostname") or (None if reconciled else socket.gethostname()),
            operator=safe_str(operator) if operator else None,
            pool=read(ti, "pool") or read(task, "pool"),
            queue=read(ti, "queue") or read(task, "queue"),
            log_url=_log_url(ti),
            run_type=state_name(read(run, "run_type")),
            clear_number=clear_number,
            trace=trace_ref(dag_id, run_id, clear_number, carrier),
            reconciled=reconciled,
        )


def _log_url(ti: object) -> str | None:
    url = read(ti, "log_url")  # a property since 3.1; building it may need config and can raise
    return url if isinstance(url, str) else None
