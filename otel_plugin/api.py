"""In-task API: business facts that make a green tick mean something, and the trace context for children.

Usage, inside a task::

    from otel_plugin import api

    api.record_rows(read=1200, written=0)          # "succeeded with 0 rows" becomes visible
    api.record_bytes(written=52_428_800)
    api.record_check("no_null_ids", passed=True)
    api.set_fact("source_file", "s3://bucket/2026-11-27.csv")
    env = {**os.environ, **api.trace_env()}        # hand TRACEPARENT to spark-submit, a container, ...

Facts land on the task's completion event and span; rows, bytes and checks also feed low-cardinality
metrics. Every call is safe outside Airflow or with the plugin disabled: it records nothing and never raises.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from otel_plugin.core import ids
from otel_plugin.core.sanitize import attribute_value, safe_str

log = logging.getLogger(__name__)

__all__ = ["record_bytes", "record_check", "record_rows", "set_fact", "trace_env", "traceparent"]


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
    facts: Facts = field(default_factory=Facts)
    traceparent: str | None = None


_current = _Current()
_lock = threading.Lock()


def begin_task(trace_id: int | None, span_id: int | None) -> None:
    """Called by the listener when a task starts in this process: fresh facts, its span as the parent."""
    global _current
    with _lock:
        _current = _Current(
            traceparent=ids.format_traceparent(trace_id, span_id) if trace_id and span_id else None
        )


def take_facts() -> Facts:
    """The facts recorded since the task started (the listener reads them at the task's end)."""
    with _lock:
        return _current.facts


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
    with _lock:
        facts = _current.facts
        facts.rows_read = _add(facts.rows_read, _count(read, "read"))
        facts.rows_written = _add(facts.rows_written, _count(written, "written"))


def record_bytes(read: int | None = None, written: int | None = None) -> None:
    """Add to the bytes the task read and/or wrote (calls accumulate)."""
    with _lock:
        facts = _current.facts
        facts.bytes_read = _add(facts.bytes_read, _count(read, "read"))
        facts.bytes_written = _add(facts.bytes_written, _count(written, "written"))


def record_check(name: str, passed: bool) -> None:
    """Record a data-quality check; use a fixed set of names (they become a metric label)."""
    with _lock:
        _current.facts.checks[safe_str(name)[:64]] = bool(passed)


def set_fact(key: str, value: object) -> None:
    """Attach any other fact to the task's event and span (never to metrics)."""
    with _lock:
        _current.facts.extra[safe_str(key)[:64]] = attribute_value(value)


def traceparent() -> str | None:
    """The W3C traceparent of the running task's span, or None outside a task."""
    return _current.traceparent


def trace_env() -> dict[str, str]:
    """``{"TRACEPARENT": ...}`` for a child process's environment; empty outside a task."""
    value = traceparent()
    return {"TRACEPARENT": value} if value else {}
