"""Airflow 3's LocalExecutor shutdown made race-free in the processes that run it (issue 17).

``LocalExecutor.end()`` sends its poison pills one at a time, each after checking the next worker is alive.
A worker that takes an early pill and exits before its own check is counted as dead, so one pill too few is
sent; the last idle worker waits in ``activity_queue.get()`` forever and ``end()`` joins it forever:
``airflow dags test --use-executor`` never returns, a scheduler never stops. Any delay of the executor's
thread between two checks opens the window (measured with Airflow 3.3.2 and 16 workers: 5 ms per check
hung 1 end() in 5, 10-50 ms 2 to 5 of 5): a busy CPU, or another thread of the process holding the GIL,
such as this plugin's flush of the DAG run's end, which runs just as ``dags test`` calls ``end()``.

``install()`` wraps ``end()`` to put one pill per live worker, all counted before the first is sent, and
then calls Airflow's own ``end()``, whose pills are surplus (left in the queue it closes). An idle worker
exits only on a pill, so every live worker gets one. Only for the 3.x executor (a worker pool in
``workers`` and an ``activity_queue`` whose ``None`` stops a worker); Airflow 2.x counts its pills first.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_MARK = "_otel_plugin_pills_first"


def install() -> bool:
    """Wrap ``LocalExecutor.end`` once; True if it is (now) wrapped. Never raises."""
    try:
        from airflow.executors import local_executor
    except Exception:
        return False
    cls = getattr(local_executor, "LocalExecutor", None)
    end = getattr(cls, "end", None)
    if cls is None or end is None:
        return False
    if getattr(end, _MARK, False):
        return True
    # The 3.x shape: module-level _run_worker, which returns on a None workload.
    if not callable(getattr(local_executor, "_run_worker", None)) or not hasattr(cls, "_spawn_worker"):
        return False
    cls.end = _pills_first(end)
    return True


def _pills_first(end: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(end)
    def wrapped(self: Any) -> None:
        try:
            queue = getattr(self, "activity_queue", None)
            live = [proc for proc in dict(getattr(self, "workers", None) or {}).values() if proc.is_alive()]
            if queue is not None:
                for _ in live:
                    queue.put(None)
        except Exception:  # Airflow's end() runs whatever happened here
            log.warning("otel_plugin: could not pre-count the LocalExecutor's shutdown", exc_info=True)
        end(self)

    setattr(wrapped, _MARK, True)
    return wrapped
