"""Airflow 3 Deadline Alerts a DAG run missed, read at the run's end, so each miss becomes an event.

No listener hook fires for a missed deadline (Airflow 3.1+ marks it in the scheduler loop and queues the
DAG's own callback; 2.x SLA misses had ``sla_miss_callback`` only). The run-end hooks do fire, in the
scheduler, with the run still in its session: a deadline of the run whose time lies before the run's end
was missed, which is Airflow's own rule (``Deadline.prune_deadlines`` deletes the others when the run
succeeds). So every DAG with a ``DeadlineAlert`` gets its misses recorded, with no per-DAG code; a miss is
recorded when the run ends (a run that never ends is the stuck-run alert's case).

    for miss in missed(dag_run):   # [] on Airflow 2.x / 3.0, for runs without deadlines, on any error
        miss.deadline, miss.name
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from otel_plugin.airflow.model import read

log = logging.getLogger(__name__)

# A run has one deadline per DeadlineAlert of its DAG; more than this is not a real DAG.
MAX_PER_RUN = 100


@dataclass(frozen=True)
class MissedDeadline:
    deadline: dt.datetime  # when the run should have ended (Airflow's deadline_time, UTC)
    name: str | None  # the DeadlineAlert's name, when it has one (Airflow 3.2+)


def missed(dag_run: object) -> list[MissedDeadline]:
    """The deadlines this finished run missed, earliest first; [] when there are none or they cannot be read."""
    end, run_pk = read(dag_run, "end_date"), read(dag_run, "id")
    if end is None or run_pk is None:
        return []
    try:
        from airflow.models.deadline import Deadline
    except ImportError:  # Airflow 2.x and 3.0: no Deadline Alerts
        return []
    try:
        from sqlalchemy import select
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
        if session is None:
            return []
        # The scheduler's own session and transaction, as reconcile.never_started (no second connection).
        query = (select(Deadline).where(Deadline.dagrun_id == run_pk, Deadline.deadline_time < end)
                 .order_by(Deadline.deadline_time).limit(MAX_PER_RUN))
        return [MissedDeadline(row.deadline_time, _name(row)) for row in session.scalars(query)]
    except Exception:
        log.warning("otel_plugin: could not read the deadlines of a DAG run", exc_info=True)
        return []


def _name(row: object) -> str | None:
    name = read(row, "deadline_alert", "name")
    return str(name) if name else None
