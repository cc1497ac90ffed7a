"""The job side: metrics, facts and spans from a process a task started, without Airflow.

A PySpark driver, a container, a script: any process whose environment came from
``otel_plugin.api.job_env()`` (or that Airflow started, with its ``AIRFLOW_CTX_*`` variables) records into
its task try's run. Install ``airflow-otel-plugin`` in the job's image; Airflow itself is not needed and
never imported.

Usage::

    from otel_plugin import job

    rows = job.counter("rows_processed", description="Rows the job processed")
    rows.add(1200, {"source": "s3"})        # rows_processed_total{dag_id, task_id, source}, exact across jobs
    job.histogram("batch_seconds", unit="s").record(3.2)
    job.set_fact("output", "s3://bucket/part-0001.parquet")   # on the job's event in the run lookup
    with job.span("write partitions"):                        # under the task's span in the run's trace
        ...

    from otel_plugin.job import push_to_collector           # the Pushgateway drop-in (prometheus_client)
    push_to_collector(registry, job="loader")

At exit the process ends its ``job <name>`` span, writes one event (``event=job``, the run's ids, its facts
and counter totals, ``state`` finished or failed) and flushes within the flush budget (default 2 s); what
the Collector does not take is spooled and sent later by the next process or ``airflow-otel replay``.
Shell scripts use the CLI: ``airflow-otel emit counter|histogram|fact|span ...``.

Configuration: the environment only (``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``,
``AIRFLOW__OTEL_PLUGIN__*``; ``job_env()`` passes the task's); ``AIRFLOW_OTEL_JOB`` names the job
(default: the program's file name).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry.trace import Span

from otel_plugin.api import counter, histogram, up_down_counter
from otel_plugin.core.runcontext import RunContext
from otel_plugin.job import runtime
from otel_plugin.job.prom import push_to_collector

__all__ = ["context", "counter", "flush", "histogram", "push_to_collector", "set_fact", "span", "up_down_counter"]


def context() -> RunContext | None:
    """The run this process records into (from the environment), or None."""
    return runtime.get().context


def set_fact(key: str, value: object) -> None:
    """Attach a fact to the job's event (``fact.<key>``; masked, bounded); never to metrics."""
    runtime.get().set_fact(key, value)


@contextmanager
def span(name: str, attributes: Mapping[str, object] | None = None) -> Iterator[Span]:
    """A span under the job's span (itself a child of the task try's span); errors mark it failed."""
    with runtime.get().span(name, attributes) as current:
        yield current


def flush(budget: float | None = None) -> bool:
    """Send what was recorded so far now (bounded); the exit does this anyway. False if time ran out."""
    pipe = runtime.get().pipe
    return pipe.flush(budget) if pipe is not None else True
