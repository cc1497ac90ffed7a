"""What each Airflow hook records: snapshot the Airflow objects, then emit the event, span and metrics.

The listener calls these functions and nothing else; they assume they may raise (the listener guards).
"""

from __future__ import annotations

import dataclasses
import logging

from otel_plugin import api
from otel_plugin.airflow import deadlines, events, executor_guard, reconcile, schedule, traces
from otel_plugin.airflow.metrics import Metrics
from otel_plugin.airflow.model import DagRunInfo, TaskRun, read, state_name
from otel_plugin.core import config, errors, pipeline, process
from otel_plugin.core.runcontext import RunContext

log = logging.getLogger(__name__)

# Per process (otel_plugin.core.process): the role, "task" in a worker's task process (flush before exit,
# bounded), "service" in the scheduler, dag processor, triggerer (flush in the background: their hooks run on
# the scheduling loop), "job" until the Job that on_starting received is told what it is (see set_role); and
# the open task, whose running hook fired in this process and no terminal hook yet (see process_stopping).


def set_role(component: object) -> None:
    """From on_starting: Airflow passes its Job to long-lived processes and a task-process marker (3.x
    TaskRunnerMarker, 2.x TaskCommandMarker) to task processes. A Job fires the hook in its constructor,
    before its runner sets ``job_type`` (SchedulerJob, DagProcessorJob, TriggererJob; 2.x also LocalTaskJob,
    the supervisor of ``airflow tasks run``, which stays on the task side): ``role()`` reads it later."""
    proc = process.current()
    if not hasattr(component, "job_type"):
        proc.role = "task"
    elif proc.role != "task":  # 2.x: the LocalTaskJob starts after the TaskCommandMarker
        proc.role, proc.job = "job", component
        # No pipeline here: a 2.x LocalTaskJob forks its task runner next. The thread reports only in the
        # scheduler and builds the pipeline there.
        cfg = config.get()
        if cfg is not None and cfg.enabled and cfg.metrics:
            schedule.start(component, cfg.schedule_report_interval)


def role() -> str | None:
    """"task", "service", or None before any hook told."""
    proc = process.current()
    if proc.role == "job":
        return "task" if getattr(proc.job, "job_type", None) == "LocalTaskJob" else "service"
    return proc.role


def _in_task_process(ti: object) -> bool:
    if process.current().role is not None:
        return role() == "task"
    return type(ti).__module__.startswith("airflow.sdk")  # RuntimeTaskInstance exists only in workers


@dataclasses.dataclass
class _Emitters:
    pipe: pipeline.Pipeline
    metrics: Metrics | None
    events: events.EventWriter | None


def _emitters() -> _Emitters | None:
    pipe = pipeline.get()
    if pipe is None:
        return None
    proc = process.current()
    out = proc.emitters
    if out is None or out.pipe is not pipe:
        cfg = pipe.cfg
        out = proc.emitters = _Emitters(
            pipe=pipe,
            metrics=Metrics(pipe.meter) if pipe.meter else None,
            events=events.EventWriter(pipe.logger, cfg.json_path) if (pipe.logger or cfg.json_path) else None,
        )
    return out


def _close_open_task() -> None:
    """Airflow 2.x and 3.0 have no skipped hook: a task that skipped itself ends with no terminal hook, and
    the scheduler's reconciliation leaves it alone (it ran on a worker). Report it from its own process:
    at the process's end, when the next task starts in it, or at the run's end (in-process runs)."""
    proc = process.current()
    ti = proc.open_task
    if ti is not None and state_name(read(ti, "state")) == "skipped":
        task_finished(ti, "running", state="skipped")  # still open: it ran here
    proc.open_task = None


def task_running(ti: object, previous_state: object) -> None:
    proc = process.current()
    if proc.role is None and type(ti).__module__.startswith("airflow.sdk"):
        proc.role = "task"  # the running hook of a RuntimeTaskInstance fires only in the process that runs it
    _close_open_task()
    proc.open_task = ti
    run = TaskRun.from_airflow(ti, state="running", previous_state=previous_state)
    api.begin_task(run.trace.trace_id, run.span_id,
                   RunContext(run.dag_id, run.task_id, run.run_id, run.try_number, run.map_index))
    out = _emitters()
    if out and out.events:
        out.events.write(events.task_attributes(run), run.start, traces.task_context(run))
        # Nothing exports between flushes (pipeline docstring). In a task process the event goes with the
        # task's end flush: a flush started here could still hold the flush lock when the exit flushes need it.
        if not _in_task_process(ti):
            out.pipe.flush(wait=False)


def task_finished(ti: object, previous_state: object, state: object = None, error: object = None) -> None:
    proc = process.current()
    # The running hook fired for this task instance in this process: its task code ran here (also in
    # Airflow 2.x's in-process `dags test`, where nothing else tells).
    ran_here = ti is proc.open_task
    proc.open_task = None
    out = _emitters()
    if out is None:
        return
    in_task = ran_here or _in_task_process(ti)
    run = (
        TaskRun.from_airflow(ti, state=state, previous_state=previous_state)
        if state
        else TaskRun.from_airflow(ti, previous_state=previous_state)
    )
    _record_task(out, run, errors.describe(error), api.take_facts() if in_task else None)
    if not in_task:  # the scheduler failing a try the executor reported (reconcile): not again at the run's end
        reconcile.note_reported(run)
    out.pipe.flush(wait=in_task, final=in_task)


def _record_task(out: _Emitters, run: TaskRun, error: errors.ErrorInfo | None, facts: api.Facts | None) -> None:
    attrs = events.task_attributes(run, error, facts)
    context = traces.task_context(run)
    if out.events:
        out.events.write(attrs, run.end, context)
    if out.pipe.tracer:
        traces.emit_task_span(out.pipe.tracer, run, attrs, error)
    if out.metrics:
        out.metrics.task_finished(run, facts, context)


def dag_run_running(dag_run: object, msg: object) -> None:
    # DAG-run hooks fire where an executor may run (scheduler, `dags test`): its shutdown must not hang.
    executor_guard.install()
    info = DagRunInfo.from_airflow(dag_run, str(msg) if msg else None)
    out = _emitters()
    if out and out.events:
        attrs = events.dag_run_attributes(dataclasses.replace(info, end=None))
        out.events.write(attrs, info.start, traces.span_context(info.trace.trace_id, info.trace.root_span_id))
        out.pipe.flush(wait=False)


def dag_run_finished(dag_run: object, msg: object) -> None:
    executor_guard.install()
    _close_open_task()
    info = DagRunInfo.from_airflow(dag_run, str(msg) if msg else None)
    out = _emitters()
    if out is None:
        return
    for run in reconcile.never_started(dag_run, info):
        # Same trace as the run, and the run's end when the task itself has no times.
        end = run.end or info.end
        run = dataclasses.replace(
            run, trace=info.trace, clear_number=info.clear_number, end=end, start=run.start or end
        )
        _record_task(out, run, None, None)
    attrs = events.dag_run_attributes(info)
    context = traces.span_context(info.trace.trace_id, info.trace.root_span_id)
    if out.events:
        out.events.write(attrs, info.end, context)
    if out.pipe.tracer:
        traces.emit_root_span(out.pipe.tracer, info, attrs)
    if out.metrics:
        out.metrics.dag_run_finished(info, context)
    if out.events:
        # Deadline Alerts the run missed (no hook fires for a miss; otel_plugin/airflow/deadlines.py).
        for miss in deadlines.missed(dag_run):
            out.events.write(events.deadline_missed_attributes(info, miss), info.end, context)
    out.pipe.flush(wait=False)


def import_error(filename: object, stacktrace: object) -> None:
    """A DAG file that failed to import (dag processor): one event with the file and the masked error. The
    alertable per-file gauge comes from the scheduler's schedule report (it also sees the file clear)."""
    out = _emitters()
    if out is None or out.events is None:
        return
    out.events.write(events.import_error_attributes(filename, stacktrace), None, None)
    out.pipe.flush(wait=False)


def process_stopping() -> None:
    schedule.stop()
    _close_open_task()
    pipe = pipeline.get() if role() == "task" else None
    if pipe:
        pipe.flush(wait=True, final=True)
