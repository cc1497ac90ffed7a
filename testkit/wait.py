"""Polling with a deadline: the one loop behind every "wait until the stores have it" in tests, benchmarks
and the demo.

``poll`` never raises by default: it returns the last value, so a shortfall is a result (benchmarks, the
demo). ``wait_until`` is the test form: it fails with the last value when the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from otel_plugin.readback.stores import StoreError

T = TypeVar("T")
# A store briefly unreachable (a restart under test, someone else's test) only delays the reading.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, requests.RequestException, StoreError)


def poll(probe: Callable[[], Any], done: Callable[[Any], bool] = bool, timeout: float = 30.0,
         interval: float = 0.5, settle: float = 0.0, default: Any = 0,
         tolerate: tuple[type[BaseException], ...] = TRANSIENT) -> Any:
    """Probe until ``done(value)``, or until the value has not changed for ``settle`` seconds (when > 0), or
    ``timeout`` passed; return the last value. Errors in ``tolerate`` keep the previous value (``default``
    before the first reading: 0, as most probes count something); others propagate."""

    def attempt(previous: Any) -> Any:
        try:
            return probe()
        except tolerate:
            return previous

    deadline = time.monotonic() + timeout
    last, since = attempt(default), time.monotonic()
    while not done(last) and time.monotonic() < deadline:
        if settle and time.monotonic() - since >= settle:
            break
        time.sleep(interval)
        value = attempt(last)
        if value != last:
            last, since = value, time.monotonic()
    return last


def wait_until(probe: Callable[[], T], ok: Callable[[T], bool] = bool, timeout: float = 30.0,
               interval: float = 0.5, what: str = "") -> T:
    """Call probe until ok(its value) and return that value; at the deadline fail showing the last value.
    Errors of the probe propagate at once (a test wants to see them)."""
    value = poll(probe, ok, timeout, interval, tolerate=())
    if not ok(value):
        raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}; last value: {value!r}")
    return value
