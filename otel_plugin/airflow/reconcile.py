"""Task instances that never reached a worker, found at DAG-run end so they are counted too.

No listener fires for a task that the scheduler marks upstream_failed, skips (branching, trigger rules),
removes, or fails without running it. At DAG-run end the scheduler's own session still holds the run, so
the task instances are read inside its transaction (no second connection, no lock wait on SQLite).
"""

from __future__ import annotations

import logging

from otel_plugin.airflow.model import read, state_name
from otel_plugin.core import contract

log = logging.getLogger(__name__)

# Terminal states a task instance can reach without a worker ever running it.
STATES = frozenset(state.name for state in contract.STATES if state.without_worker)


def never_started(dag_run: object) -> list[object]:
    """Terminal task instances of the run that no worker picked up (Airflow sets their start_date anyway)."""
    get = getattr(dag_run, "get_task_instances", None)
    if get is None:
        return []
    try:
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
    except Exception:
        session = None
    tis = get(session=session) if session is not None else get()
    return [ti for ti in tis if state_name(read(ti, "state")) in STATES and not read(ti, "hostname")]
