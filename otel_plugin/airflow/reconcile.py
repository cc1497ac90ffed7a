"""Task instances that never reached a worker, found at DAG-run end so they are counted too.

No listener fires for a task that the scheduler marks upstream_failed, skips (branching, trigger rules),
removes, or fails without running it. At DAG-run end the scheduler's own session still holds the run, so
the task instances are read inside its transaction (no second connection, no lock wait on SQLite).

One path does fire a hook for a try no worker started: the executor reports a queued try failed (a Celery
worker died or its task raised before the task process started; a LocalExecutor worker died) and the
scheduler fails it through ``TaskInstance.handle_failure``, which calls ``on_task_instance_failed`` in the
scheduler. That try has no hostname either, so the run's end would report it a second time (measured
under Celery: 55 failed tries counted 67). The scheduler remembers the tries its hooks reported
(``note_reported``, in its per-process state) and the run's end leaves them out.

Usage (recorder)::

    note_reported(run)                 # a terminal hook reported this try in this (service) process
    for run in never_started(dag_run, info):  # at the run's end: the tries nobody reported (snapshots)
        ...
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from otel_plugin.airflow.model import DagRunInfo, TaskRun, read, state_name
from otel_plugin.core import contract, process

log = logging.getLogger(__name__)

# Terminal states a task instance can reach without a worker ever running it.
STATES = frozenset(state.name for state in contract.STATES if state.without_worker)
# Runs whose reported tries are remembered. A run's entry goes at its end in this process; one that ends in
# another scheduler (HA) or never ends is dropped oldest first past this many runs.
MAX_RUNS = 10_000

TryKey = tuple[str, int, int]  # task_id, map_index, try_number


def _reported() -> OrderedDict[tuple[str, str], set[TryKey]]:
    """{(dag_id, run_id): tries a terminal hook of this process reported}, oldest run first."""
    return process.setdefault("reported_tries", OrderedDict)


def note_reported(run: TaskRun) -> None:
    """A terminal hook reported this try in this process: the run's end must not report it again."""
    reported = _reported()
    reported.setdefault((run.dag_id, run.run_id), set()).add((run.task_id, run.map_index, run.try_number))
    reported.move_to_end((run.dag_id, run.run_id))
    while len(reported) > MAX_RUNS:
        reported.popitem(last=False)


def never_started(dag_run: object, info: DagRunInfo) -> list[TaskRun]:
    """Snapshots (``reconciled``) of the run's terminal task instances (``info``: the run's snapshot) that no
    worker picked up (Airflow sets their start_date anyway) and no hook of this process reported; forgets
    the run's reported tries (its end is reported once)."""
    reported = _reported().pop((info.dag_id, info.run_id), set())
    get = getattr(dag_run, "get_task_instances", None)
    if get is None:
        return []
    try:
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
    except Exception:
        session = None
    tis = get(session=session) if session is not None else get()
    unreported = []
    for ti in tis:
        if state_name(read(ti, "state")) in STATES and not read(ti, "hostname"):
            run = TaskRun.from_airflow(ti, reconciled=True)
            if (run.task_id, run.map_index, run.try_number) not in reported:
                unreported.append(run)
    return unreported
