"""Airflow listener hooks. Each one hands its arguments to ``recorder`` and can never fail the task.

Signatures take no ``session`` argument, so the same module registers on Airflow 2.10+ and 3.x (pluggy
accepts fewer arguments than the spec, and rejects unknown ones).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _guard(hook: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        log.warning("otel_plugin: %s failed; no impact on the task", hook, exc_info=True)


def _recorder():
    from otel_plugin.airflow import recorder

    return recorder


@hookimpl
def on_starting(component: object) -> None:
    with _guard("on_starting"):
        _recorder().set_role(component)


@hookimpl
def before_stopping(component: object) -> None:
    with _guard("before_stopping"):
        _recorder().process_stopping()


@hookimpl
def on_new_dag_import_error(filename: str, stacktrace: str) -> None:
    with _guard("on_new_dag_import_error"):
        _recorder().import_error(filename, stacktrace)


@hookimpl
def on_existing_dag_import_error(filename: str, stacktrace: str) -> None:
    with _guard("on_existing_dag_import_error"):
        _recorder().import_error(filename, stacktrace)


@hookimpl
def on_task_instance_running(previous_state: object, task_instance: object) -> None:
    with _guard("on_task_instance_running"):
        _recorder().task_running(task_instance, previous_state)


@hookimpl
def on_task_instance_success(previous_state: object, task_instance: object) -> None:
    with _guard("on_task_instance_success"):
        _recorder().task_finished(task_instance, previous_state, state="success")


@hookimpl
def on_task_instance_failed(previous_state: object, task_instance: object, error: object = None) -> None:
    # The task's own state tells a retry (up_for_retry) from a final failure.
    with _guard("on_task_instance_failed"):
        _recorder().task_finished(task_instance, previous_state, error=error)


@hookimpl
def on_task_instance_skipped(previous_state: object, task_instance: object) -> None:
    with _guard("on_task_instance_skipped"):
        _recorder().task_finished(task_instance, previous_state, state="skipped")


@hookimpl
def on_dag_run_running(dag_run: object, msg: str) -> None:
    with _guard("on_dag_run_running"):
        _recorder().dag_run_running(dag_run, msg)


@hookimpl
def on_dag_run_success(dag_run: object, msg: str) -> None:
    with _guard("on_dag_run_success"):
        _recorder().dag_run_finished(dag_run, msg)


@hookimpl
def on_dag_run_failed(dag_run: object, msg: str) -> None:
    with _guard("on_dag_run_failed"):
        _recorder().dag_run_finished(dag_run, msg)
