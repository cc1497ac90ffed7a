"""Deterministic trace and span ids, so separate processes agree on one trace per DAG run.

The scheduler (DAG-run root span) and every worker process (task spans) derive the same ids from
(dag_id, run_id, clear_number) alone; no state crosses processes. A cleared run gets a new clear_number
and so a new trace. The trace id also takes the service name when it is not the default (``airflow``):
two environments (``OTEL_SERVICE_NAME``) running the same DAG and run id write two traces, not one mixed
trace, into a shared trace store; the default keeps the ids it always had.
"""

from __future__ import annotations

import hashlib
import re

from otel_plugin.core import contract

_SEP = "\x1f"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _hash_int(nbytes: int, *parts: object) -> int:
    digest = hashlib.sha256(_SEP.join(str(p) for p in parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:nbytes], "big") or 1  # 0 is the invalid id in W3C trace context


def trace_id(dag_id: str, run_id: str, clear_number: int = 0, service: str = contract.SERVICE_NAME) -> int:
    scope = () if service == contract.SERVICE_NAME else (service,)
    return _hash_int(16, "trace", dag_id, run_id, clear_number, *scope)


def root_span_id(dag_id: str, run_id: str, clear_number: int = 0) -> int:
    return _hash_int(8, "dagrun", dag_id, run_id, clear_number)


def task_span_id(
    dag_id: str, run_id: str, clear_number: int, task_id: str, map_index: int, try_number: int
) -> int:
    """One span per task try: known while the task runs, so children can be parented before the span ends."""
    return _hash_int(8, "task", dag_id, run_id, clear_number, task_id, map_index, try_number)


def child_root_span_id(parent_trace_id: int, dag_id: str, run_id: str) -> int:
    """Our root span id when we join a trace Airflow already keeps for the run."""
    return _hash_int(8, "dagrun", f"{parent_trace_id:032x}", dag_id, run_id)


def format_traceparent(trace: int, span: int, sampled: bool = True) -> str:
    return f"00-{trace:032x}-{span:016x}-{'01' if sampled else '00'}"


def parse_traceparent(value: object) -> tuple[int, int, bool] | None:
    """(trace id, span id, sampled) of a W3C traceparent, or None when it is absent or malformed."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match:
        return None
    trace, span = int(match.group(1), 16), int(match.group(2), 16)
    if not trace or not span:
        return None
    return trace, span, bool(int(match.group(3), 16) & 1)
