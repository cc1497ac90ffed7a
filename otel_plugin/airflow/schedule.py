"""Schedule-aware gauges, reported by the scheduler from Airflow's own database, for freshness alerts.

Per DAG, with no per-DAG configuration (docs/alerting.md explains the rules that read them):

- ``success_deadline``: the Unix time by which the DAG should have succeeded again: the run_after of the
  first scheduled run after its last success (or, when the scheduler has not created that run yet, the
  DAG's ``next_dagrun_create_after``), plus an allowance of twice its usual duration (at least
  ``MIN_ALLOWANCE``). 0 when nothing is expected: paused, stale (file gone or not parsing) and unscheduled
  DAGs, and DAGs tagged ``otel.alerts:off``.
- ``run_deadline``: the start of its oldest running run plus three times its usual duration (at least
  ``MIN_ALLOWANCE``); 0 when none runs or no successful run tells what usual is.
- ``usual_duration``: the longest of its last ``HISTORY`` successful runs.

Per DAG file: ``import_error`` is 1 while the file fails to import (Airflow's import_error table), and 0
once it parses again (for files this process saw failing).

Overrides, as DAG tags: ``otel.success_within:2h`` (allowance after the due time), ``otel.max_duration:30m``
(a run is stuck after this), ``otel.alerts:off``.

Why absolute timestamps from the database, sent by the scheduler: they are the same whichever process or
how many processes send them (HA schedulers send equal values), they are re-sent whole every
``schedule_report_interval`` so a Collector restart loses nothing that the next report does not restore, and
when the scheduler dies the last deadline stays in the Collector and Prometheus, so the rule
``time() > deadline`` fires exactly when the scheduler can no longer say anything.

Usage: ``start(component)`` from the listener's ``on_starting``; the reporter thread runs only where the
job turns out to be the scheduler.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from otel_plugin.airflow import executor_guard
from otel_plugin.core import contract, pipeline
from otel_plugin.core.sanitize import safe_str

log = logging.getLogger(__name__)

HISTORY = 5
MIN_ALLOWANCE = 30.0  # seconds: scheduling jitter on a busy scheduler
NO_HISTORY_ALLOWANCE = 3600.0  # a DAG that never succeeded: its due time plus an hour
SUCCESS_FACTOR = 2.0
STUCK_FACTOR = 3.0
TAG_PREFIX = "otel."
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float | None:
    """'90s', '30m', '2h', '1d' in seconds; None for anything else."""
    match = _DURATION.match(text.strip())
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


@dataclass(frozen=True)
class DagState:
    """What the database says about one DAG (times are aware UTC datetimes)."""

    dag_id: str
    paused: bool = False
    stale: bool = False
    next_create_after: dt.datetime | None = None  # the next run the scheduler will create
    next_after_success: dt.datetime | None = None  # first scheduled run after the last success
    oldest_running_start: dt.datetime | None = None
    durations: tuple[float, ...] = ()  # latest successful runs, seconds
    tags: tuple[str, ...] = ()

    def option(self, name: str) -> str | None:
        for tag in self.tags:
            key, _, value = tag.partition(":")
            if key == TAG_PREFIX + name:
                return value
        return None


@dataclass(frozen=True)
class Expectation:
    success_deadline: float  # Unix seconds; 0 = none expected
    run_deadline: float  # Unix seconds; 0 = nothing running (or no usual duration known)
    usual_duration: float | None


def expect(dag: DagState) -> Expectation:
    usual = max(dag.durations) if dag.durations else None
    if dag.paused or dag.stale or dag.option("alerts") == "off":
        return Expectation(0.0, 0.0, usual)
    success_deadline = 0.0
    due = dag.next_after_success or dag.next_create_after
    if due is not None:
        within = parse_duration(dag.option("success_within") or "")
        if within is None:
            within = max(SUCCESS_FACTOR * usual, MIN_ALLOWANCE) if usual is not None else NO_HISTORY_ALLOWANCE
        success_deadline = due.timestamp() + within
    run_deadline = 0.0
    if dag.oldest_running_start is not None:
        limit = parse_duration(dag.option("max_duration") or "")
        if limit is None and usual is not None:
            limit = max(STUCK_FACTOR * usual, MIN_ALLOWANCE)
        if limit is not None:
            run_deadline = dag.oldest_running_start.timestamp() + limit
    return Expectation(success_deadline, run_deadline, usual)


@dataclass
class Snapshot:
    dags: list[DagState] = field(default_factory=list)
    import_errors: set[str] = field(default_factory=set)


def _aware(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def read_snapshot(session: object) -> Snapshot:  # pragma: no cover - exercised against real Airflow
    """Six small grouped queries; works on Airflow 3.x (run_after, is_stale) and 2.10+ (is_active)."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagrun import DagRun
    from sqlalchemy import func, or_, select

    run_after = getattr(DagRun, "run_after", None) or func.coalesce(DagRun.data_interval_end, DagRun.execution_date)
    stale = DagModel.is_stale if hasattr(DagModel, "is_stale") else ~DagModel.is_active
    execute = session.execute  # type: ignore[attr-defined]
    scheduled = DagRun.run_type == "scheduled"

    tags: dict[str, list[str]] = {}
    for dag_id, name in execute(select(DagTag.dag_id, DagTag.name).where(DagTag.name.like(TAG_PREFIX + "%"))):
        tags.setdefault(dag_id, []).append(name)
    last_success = (select(DagRun.dag_id, func.max(run_after).label("last"))
                    .where(DagRun.state == "success").group_by(DagRun.dag_id).subquery())  # fmt: skip
    next_after = dict(execute(
        select(DagRun.dag_id, func.min(run_after))
        .outerjoin(last_success, last_success.c.dag_id == DagRun.dag_id)
        .where(scheduled, or_(last_success.c.last.is_(None), run_after > last_success.c.last))
        .group_by(DagRun.dag_id)).all())  # fmt: skip
    running = dict(execute(select(DagRun.dag_id, func.min(DagRun.start_date))
                           .where(DagRun.state == "running").group_by(DagRun.dag_id)).all())  # fmt: skip
    rank = func.row_number().over(partition_by=DagRun.dag_id, order_by=DagRun.end_date.desc()).label("rank")
    recent = (select(DagRun.dag_id, DagRun.start_date, DagRun.end_date, rank)
              .where(DagRun.state == "success", DagRun.start_date.is_not(None), DagRun.end_date.is_not(None))
              .subquery())  # fmt: skip
    durations: dict[str, list[float]] = {}
    for dag_id, start, end, _ in execute(select(recent).where(recent.c.rank <= HISTORY)):
        start, end = _aware(start), _aware(end)
        if start and end:
            durations.setdefault(dag_id, []).append(max(0.0, (end - start).total_seconds()))

    snap = Snapshot()
    for dag_id, paused, is_stale, create_after in execute(
        select(DagModel.dag_id, DagModel.is_paused, stale, DagModel.next_dagrun_create_after)
    ):
        snap.dags.append(DagState(
            dag_id=dag_id, paused=bool(paused), stale=bool(is_stale), next_create_after=_aware(create_after),
            next_after_success=_aware(next_after.get(dag_id)), oldest_running_start=_aware(running.get(dag_id)),
            durations=tuple(durations.get(dag_id, ())), tags=tuple(tags.get(dag_id, ())),
        ))  # fmt: skip
    snap.import_errors = set(_import_error_files(execute))
    return snap


def _import_error_files(execute: object) -> Iterable[str]:  # pragma: no cover - real Airflow
    from sqlalchemy import select

    try:
        from airflow.models.errors import ParseImportError
    except ImportError:
        from airflow.models.errors import ImportError as ParseImportError  # type: ignore[no-redef,attr-defined]
    for error in execute(select(ParseImportError)).scalars():  # type: ignore[operator]
        yield file_name(error)


def file_name(import_error: object) -> str:
    """The file's full path as the listener hooks name it (3.x: bundle path + relative file name)."""
    try:
        return safe_str(import_error.full_file_path())  # type: ignore[attr-defined]
    except Exception:
        return safe_str(getattr(import_error, "filename", "unknown"))


class Reporter:
    """Sets the gauges from a snapshot; remembers what it reported, so a DAG or file that disappears is
    reported once more as 0 instead of keeping its last value."""

    def __init__(self, meter: object) -> None:
        def gauge(metric: contract.Metric) -> object:
            return meter.create_gauge(metric.name, unit=metric.unit, description=metric.description)  # type: ignore[attr-defined]

        self.success = gauge(contract.DAG_SUCCESS_DEADLINE)
        self.run = gauge(contract.DAG_RUN_DEADLINE)
        self.usual = gauge(contract.DAG_USUAL_DURATION)
        self.heartbeat = gauge(contract.SCHEDULER_HEARTBEAT)
        self.import_error = gauge(contract.DAG_FILE_IMPORT_ERROR)
        self._dags: set[str] = set()
        self._files: set[str] = set()

    def report(self, snap: Snapshot, now: float | None = None) -> None:
        seen = set()
        for dag in snap.dags:
            exp = expect(dag)
            attrs = {"dag_id": dag.dag_id}
            self.success.set(exp.success_deadline, attrs)  # type: ignore[attr-defined]
            self.run.set(exp.run_deadline, attrs)  # type: ignore[attr-defined]
            if exp.usual_duration is not None:
                self.usual.set(exp.usual_duration, attrs)  # type: ignore[attr-defined]
            seen.add(dag.dag_id)
        for gone in self._dags - seen:
            self.success.set(0.0, {"dag_id": gone})  # type: ignore[attr-defined]
            self.run.set(0.0, {"dag_id": gone})  # type: ignore[attr-defined]
        self._dags = seen
        for name in snap.import_errors | self._files:
            self.import_error.set(1.0 if name in snap.import_errors else 0.0, {"filename": name})  # type: ignore[attr-defined]
        self._files |= snap.import_errors
        self.heartbeat.set(time.time() if now is None else now, {})  # type: ignore[attr-defined]


def _is_scheduler(component: object) -> bool:
    return safe_str(getattr(component, "job_type", "")) == "SchedulerJob"


def _loop(component: object, interval: float, stop: threading.Event) -> None:
    # on_starting runs in Job.__init__, before the runner sets job_type: decide after a short wait.
    stop.wait(min(interval, 5.0))
    if not _is_scheduler(component):
        return
    executor_guard.install()  # this thread runs beside the scheduler's executor, up to its end()
    pipe = pipeline.get()
    if pipe is None or pipe.meter is None:
        return
    reporter = Reporter(pipe.meter)
    from airflow.utils.session import create_session

    while not stop.is_set():
        started = time.monotonic()
        try:
            with create_session() as session:
                snap = read_snapshot(session)
            reporter.report(snap)
            pipe.flush(wait=True)
        except Exception:
            log.warning("otel_plugin: schedule report failed; retrying in %.0f s", interval, exc_info=True)
        stop.wait(max(1.0, interval - (time.monotonic() - started)))


_stop = threading.Event()


def start(component: object, interval: float) -> None:
    """Start the reporter thread (a daemon: it never delays the scheduler's exit)."""
    if interval <= 0:
        return
    threading.Thread(target=_loop, args=(component, interval, _stop), name="otel_plugin-schedule",
                     daemon=True).start()  # fmt: skip


def stop() -> None:
    _stop.set()
