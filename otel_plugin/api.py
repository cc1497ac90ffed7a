"""In-task API: business facts that make a green tick mean something, and the trace context for children.

Usage, inside a task::

    from otel_plugin import api

    api.record_rows(read=1200, written=0)          # "succeeded with 0 rows" becomes visible
    api.record_bytes(written=52_428_800)
    api.record_check("no_null_ids", passed=True)
    api.set_fact("source_file", "s3://bucket/2026-11-27.csv")

    rows = api.counter("rows_processed", description="Rows the load step processed")
    rows.add(1200, {"source": "s3"})   # Prometheus: rows_processed_total{dag_id=...,task_id=...,source="s3"}
    api.histogram("batch_seconds", unit="s").record(4.2)

    env = {**os.environ, **api.job_env()}          # a child process (spark-submit, a container, a script)
    subprocess.run(["python", "job.py"], env=env)  # ... records into the same run: otel_plugin.job

    SparkSubmitOperator(..., pre_execute=api.hand_run_context)  # an operator's child gets job_env() too

Facts land on the task's completion event and span; rows, bytes and checks also feed low-cardinality
metrics. Custom metrics (``counter``, ``histogram``, ``up_down_counter``) take any name, are always DELTA
and get ``dag_id`` and ``task_id`` as labels; their rules are in ``otel_plugin.core.custom_metrics``. Called
in a process started with ``job_env()`` they record through the job side (``otel_plugin.job``). Every call
is safe outside Airflow or with the plugin disabled: it records nothing and never raises.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from otel_plugin.core import config, contract, ids, process
from otel_plugin.core import custom_metrics as cm
from otel_plugin.core.runcontext import RunContext, merge_resource_attributes, passed_environment
from otel_plugin.core.sanitize import MASK, attribute_value, safe_str, sensitive_key

log = logging.getLogger(__name__)

__all__ = ["counter", "hand_run_context", "histogram", "job_env", "record_bytes", "record_check", "record_rows",
           "set_fact", "trace_env", "traceparent", "up_down_counter"]


@dataclass
class Facts:
    """What the running task recorded so far."""

    rows_read: int | None = None
    rows_written: int | None = None
    bytes_read: int | None = None
    bytes_written: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def zero_rows(self) -> bool | None:
        """True when the task reported rows and the rows it produced (written, else read) were 0."""
        produced = self.rows_written if self.rows_written is not None else self.rows_read
        return None if produced is None else produced == 0


@dataclass
class _Current:
    """The task running in this process (kept in the process state: a forked child starts without one)."""

    facts: Facts = field(default_factory=Facts)
    traceparent: str | None = None
    context: RunContext | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _task() -> _Current:
    return process.setdefault("task", _Current)


def begin_task(trace_id: int | None, span_id: int | None, context: RunContext | None = None) -> None:
    """Called by the listener when a task starts in this process: fresh facts, its span as the parent."""
    parent = ids.format_traceparent(trace_id, span_id) if trace_id and span_id else None
    if context is not None:
        context = RunContext(context.dag_id, context.task_id, context.run_id, context.try_number,
                             context.map_index, parent)
    process.current().task = _Current(traceparent=parent, context=context)
    if context is not None:
        # Children inherit the run's ids (as they inherit Airflow's AIRFLOW_CTX_*): a BashOperator script, a
        # spark-submit or a subprocess records into this try without job_env(). The exporter settings and
        # OTEL_RESOURCE_ATTRIBUTES are not set here: they would change this process's own telemetry.
        os.environ.update(context.ids_env())


def take_facts() -> Facts:
    """The facts recorded since the task started (the listener reads them at the task's end)."""
    current = _task()
    with current.lock:
        return current.facts


def _count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        log.warning("otel_plugin.api: %s must be a non-negative int, got %r; ignored", what, type(value).__name__)
        return None
    return value


def _add(current: int | None, value: int | None) -> int | None:
    if value is None:
        return current
    return value if current is None else current + value


def record_rows(read: int | None = None, written: int | None = None) -> None:
    """Add to the rows the task read and/or wrote (calls accumulate)."""
    current = _task()
    with current.lock:
        facts = current.facts
        facts.rows_read = _add(facts.rows_read, _count(read, "read"))
        facts.rows_written = _add(facts.rows_written, _count(written, "written"))


def record_bytes(read: int | None = None, written: int | None = None) -> None:
    """Add to the bytes the task read and/or wrote (calls accumulate)."""
    current = _task()
    with current.lock:
        facts = current.facts
        facts.bytes_read = _add(facts.bytes_read, _count(read, "read"))
        facts.bytes_written = _add(facts.bytes_written, _count(written, "written"))


def record_check(name: str, passed: bool) -> None:
    """Record a data-quality check; use a fixed set of names (they become a metric label)."""
    current = _task()
    with current.lock:
        current.facts.checks[safe_str(name)[:64]] = bool(passed)


def set_fact(key: str, value: object) -> None:
    """Attach any other fact to the task's event and span (never to metrics).

    A key that names a secret (``password``, ``api_key``, ``db_token``, ...) gets ``***`` as its value,
    as Airflow's ``redact`` does; other values are masked for the secret patterns of free text.
    """
    name = safe_str(key)[:64]
    stored = MASK if sensitive_key(name) else attribute_value(value)
    current = _task()
    with current.lock:
        current.facts.extra[name] = stored


def traceparent() -> str | None:
    """The W3C traceparent of the running task's span, or None outside a task."""
    return _task().traceparent


def trace_env() -> dict[str, str]:
    """``{"TRACEPARENT": ...}`` for a child process's environment; empty outside a task."""
    value = traceparent()
    return {"TRACEPARENT": value} if value else {}


def hand_run_context(context: object = None) -> None:
    """A ``pre_execute`` hook: adds ``job_env()`` to the operator's child environment, ``env_vars``
    (SparkSubmitOperator; KubernetesPodOperator given a dict) or ``env`` (BashOperator). The listener has
    started the try by then, so the child's spans join its span."""
    try:
        operator = context.get("task") if isinstance(context, Mapping) else None  # 2.x: a Mapping, not a dict
        name = next((n for n in ("env_vars", "env") if hasattr(operator, n)), None)
        current = getattr(operator, name, None) if name else None
        if name is None or not (current is None or isinstance(current, dict)):
            log.warning("otel_plugin.api: hand_run_context needs an operator with a dict env_vars or env; "
                        "pass api.job_env() yourself")
            return
        setattr(operator, name, {**(current or {}), **job_env()})
    except Exception:
        log.warning("otel_plugin.api: hand_run_context failed; the child records nothing", exc_info=True)


def job_env() -> dict[str, str]:
    """Environment variables that make a child process record into this task try; empty outside a task.

    ``TRACEPARENT`` (the try's span: the child's spans become its children), the run's ids
    (``AIRFLOW_OTEL_DAG_ID``, ``_TASK_ID``, ``_RUN_ID``, ``_TRY_NUMBER``, ``_MAP_INDEX``),
    ``OTEL_RESOURCE_ATTRIBUTES`` with ``dag_id`` and ``task_id`` (for other OTel SDKs), delta temporality,
    and this process's exporter settings (``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``,
    ``AIRFLOW__OTEL_PLUGIN__*``). Use it for ``subprocess`` (``env={**os.environ, **api.job_env()}``),
    SparkSubmitOperator ``env_vars`` or a pod's ``env``. It can hold credentials (OTLP headers): do not log it.
    """
    try:
        context = _task().context
        if context is None:
            return {}
        return _job_env(context)
    except Exception:
        log.warning("otel_plugin.api: job_env failed; the child records nothing", exc_info=True)
        return {}


def _job_env(context: RunContext) -> dict[str, str]:
    env = passed_environment()
    if not any(k in env for k in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT")):
        env.update(contract.JOB_OTLP_DEFAULTS)  # other SDKs default to gRPC on 4317; our default is HTTP
    env.update(contract.JOB_ENV_FIXED)
    cfg = config.get()
    if cfg is not None:
        env.update(config_env(cfg))
    own = context.to_env()
    own["OTEL_RESOURCE_ATTRIBUTES"] = merge_resource_attributes(
        os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""), own["OTEL_RESOURCE_ATTRIBUTES"])
    env.update(own)
    return env


def config_env(cfg: config.PluginConfig) -> dict[str, str]:
    """The plugin settings as ``AIRFLOW__OTEL_PLUGIN__*`` variables, so a child without airflow.cfg agrees."""
    prefix = f"AIRFLOW__{config.SECTION.upper()}__"
    values: dict[str, object] = {
        "ENABLED": cfg.enabled, "METRICS": cfg.metrics, "EVENTS": cfg.events, "TRACES": cfg.traces,
        "FLUSH_BUDGET": cfg.flush_budget, "EXPORT_TIMEOUT": cfg.export_timeout, "SPOOL_DIR": cfg.spool_dir,
        "SPOOL_MAX_MB": cfg.spool_max_bytes / 2**20,
    }  # fmt: skip
    env = {prefix + key: (str(v).lower() if isinstance(v, bool) else str(v)) for key, v in values.items()}
    env["OTEL_SERVICE_NAME"] = cfg.service_name
    return env


def _target() -> cm.Target | None:
    context = _task().context
    if context is not None:
        from otel_plugin.core import pipeline

        pipe = pipeline.get()
        return cm.Target(pipe.meter, context, _note_refused) if pipe and pipe.meter else None
    # Not in a task: a process started with job_env() (or by Airflow) records through the job side.
    from otel_plugin.job import runtime

    return runtime.target()


def _note_refused(key: str, value: object) -> None:
    set_fact(key, value)


_metrics = cm.Registry(_target)


def counter(name: str, unit: str = "", description: str = "") -> cm.Instrument:
    """A delta counter; ``.add(value, labels)``. Prometheus: ``prometheus_name`` (``<name>_total``)."""
    return _metrics.get(name, "counter", unit, description)


def histogram(name: str, unit: str = "", description: str = "",
              buckets: tuple[float, ...] | None = None) -> cm.Instrument:
    """A delta histogram; ``.record(value, labels)``. Prometheus: ``<name>[_<unit>]_bucket/_sum/_count``."""
    return _metrics.get(name, "histogram", unit, description, buckets)


def up_down_counter(name: str, unit: str = "", description: str = "") -> cm.Instrument:
    """A delta up-down counter (adds up across processes); ``.add(value, labels)``. Prometheus: a gauge."""
    return _metrics.get(name, "up_down_counter", unit, description)
