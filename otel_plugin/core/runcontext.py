"""The run context a task hands to the processes it starts, and how it travels: environment variables.

The task side builds the variables (``otel_plugin.api.job_env()``); the job side reads them back
(``RunContext.from_env()``), with no Airflow import on either path::

    env = child_env(RunContext("etl", "load", "manual__1", 1, -1, traceparent), passed_config)
    ctx = RunContext.from_env(env)          # in the child: same ids, same parent span

Names come from ``otel_plugin.core.contract`` (``JOB_ENV``, ``AIRFLOW_CTX_ENV``, ``ENV_TRACEPARENT``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from otel_plugin.core import contract, ids


@dataclass(frozen=True)
class RunContext:
    """One task try: the ids that place a job's telemetry in its run (metrics get only dag_id and task_id)."""

    dag_id: str
    task_id: str
    run_id: str | None = None
    try_number: int | None = None
    map_index: int | None = None
    traceparent: str | None = None  # the task try's span, parent of the job's spans

    @property
    def parent(self) -> tuple[int, int] | None:
        """(trace id, span id) of the task try's span, or None when the traceparent is absent or malformed."""
        parsed = ids.parse_traceparent(self.traceparent)
        return (parsed[0], parsed[1]) if parsed else None

    @property
    def labels(self) -> dict[str, str]:
        """The bounded part: what every custom metric gets as labels."""
        return {"dag_id": self.dag_id, "task_id": self.task_id}

    def event_fields(self) -> dict[str, object]:
        """The run's ids as event fields (the run lookup finds events by dag_id and run_id)."""
        return {"dag_id": self.dag_id, "task_id": self.task_id, "run_id": self.run_id,
                "try_number": self.try_number, "map_index": self.map_index}

    def ids_env(self) -> dict[str, str]:
        """TRACEPARENT and AIRFLOW_OTEL_*: what the task process puts in its own environment for children."""
        env = {contract.ENV_TRACEPARENT: self.traceparent} if self.traceparent else {}
        for key, name in contract.JOB_ENV.items():
            value = getattr(self, key)
            if value is not None:
                env[name] = str(value)
        return env

    def to_env(self) -> dict[str, str]:
        """The context's own variables: ``ids_env()`` and OTEL_RESOURCE_ATTRIBUTES."""
        env = self.ids_env()
        env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
            f"{key}={quote(str(getattr(self, key)), safe='')}"
            for key in contract.RESOURCE_CONTEXT_KEYS
            if getattr(self, key) is not None
        )
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunContext | None:
        """The context in ``environ`` (default ``os.environ``): AIRFLOW_OTEL_*, else Airflow's AIRFLOW_CTX_*.

        None when the environment names no DAG and task (the process was not started by a task).
        """
        env = os.environ if environ is None else environ

        def value(key: str) -> str | None:
            for names in (contract.JOB_ENV, contract.AIRFLOW_CTX_ENV):
                raw = env.get(names.get(key, ""), "").strip()
                if raw:
                    return raw
            return None

        dag_id, task_id = value("dag_id"), value("task_id")
        if not dag_id or not task_id:
            return None
        return cls(
            dag_id=dag_id,
            task_id=task_id,
            run_id=value("run_id"),
            try_number=_int(value("try_number")),
            map_index=_int(value("map_index")),
            traceparent=env.get(contract.ENV_TRACEPARENT) if ids.parse_traceparent(
                env.get(contract.ENV_TRACEPARENT)) else None,
        )


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def merge_resource_attributes(existing: str, ours: str) -> str:
    """OTEL_RESOURCE_ATTRIBUTES with the task's own entries kept and ours replacing same-named ones."""
    keys = {unquote(item.partition("=")[0].strip()) for item in ours.split(",") if item}
    kept = [item for item in existing.split(",")
            if item.strip() and unquote(item.partition("=")[0].strip()) not in keys]
    return ",".join([*kept, ours] if ours else kept)


def passed_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The exporter settings a child inherits from this process's environment (may hold credentials)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(contract.ENV_PASSED_PREFIXES) or k in contract.ENV_PASSED}
