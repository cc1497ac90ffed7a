"""Turn whatever Airflow passes as ``error`` (None, a str, any exception) into safe, masked fields."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from otel_plugin.core.sanitize import MAX_VALUE_CHARS, clean_text, safe_str

MAX_STACKTRACE_CHARS = 8192


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    stacktrace: str | None = None


def describe(error: object) -> ErrorInfo | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        try:
            stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        except Exception:
            stack = None
        return ErrorInfo(
            type=safe_str(type(error).__qualname__),
            message=clean_text(error, MAX_VALUE_CHARS),
            # Keep the end of a deep trace: the frames nearest the failure matter most.
            stacktrace=clean_text(stack[-MAX_STACKTRACE_CHARS * 2 :], MAX_STACKTRACE_CHARS) if stack else None,
        )
    # The scheduler and API server pass a plain message (e.g. a task killed externally).
    return ErrorInfo(type="str", message=clean_text(error, MAX_VALUE_CHARS))
