"""Delta metrics with bounded attributes only.

Counters and histograms use DELTA temporality (set on the exporter), so each short-lived task process
reports just its own increments and the Collector adds them up. Per-run ids would make one series per run,
so a guard removes run_id-like attributes from every measurement and says so once in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, Meter

from otel_plugin.airflow.model import DagRunInfo, TaskRun
from otel_plugin.api import Facts
from otel_plugin.core import contract, process
from otel_plugin.core.otel_compat import add, create_histogram, record

log = logging.getLogger(__name__)


def guard(attributes: Mapping[str, object]) -> dict[str, str]:
    """Keep only bounded attributes; warn once per dropped key."""
    kept = {}
    for key, value in attributes.items():
        if contract.is_run_scoped(key):
            warned = process.current().warned
            if ("metrics", key) not in warned:
                warned.add(("metrics", key))
                log.warning("otel_plugin: attribute %r dropped from metrics (unbounded cardinality)", key)
            continue
        kept[key] = str(value)
    return kept


class Metrics:
    """The plugin's instruments on a private meter."""

    def __init__(self, meter: Meter) -> None:
        self.instruments: dict[str, Counter | Histogram] = {}
        for metric in contract.METRICS:
            if metric.kind == "gauge":
                continue  # the scheduler's schedule report owns them (otel_plugin/airflow/schedule.py)
            instrument: Counter | Histogram
            if metric.kind == "counter":
                instrument = meter.create_counter(metric.name, unit=metric.unit, description=metric.description)
            else:
                instrument = create_histogram(meter, metric.name, unit=metric.unit, description=metric.description,
                                              buckets=contract.DURATION_BUCKETS)
            self.instruments[metric.name] = instrument

    def _add(self, metric: contract.Metric, value: float, values: Mapping[str, object],
             context: Context | None = None) -> None:
        # The contract's label keys for this metric, and only those (a missing one is a KeyError: a bug).
        attributes = guard({key: values[key] for key in metric.attributes})
        instrument = self.instruments[metric.name]
        if isinstance(instrument, Counter):
            add(instrument, value, attributes, context)
        else:
            record(instrument, value, attributes, context)

    def task_finished(self, run: TaskRun, facts: Facts | None, context: Context | None) -> None:
        task = {"dag_id": run.dag_id, "task_id": run.task_id, "state": run.state or "unknown"}
        self._add(contract.TASK_FINISHED, 1, task)
        if run.duration is not None:
            self._add(contract.TASK_DURATION, run.duration, task, context)  # exemplar: this try's span
        if run.state == "up_for_retry":
            self._add(contract.TASK_RETRIES, 1, task)
        if facts is None:
            return
        if run.state == "success" and facts.zero_rows:
            self._add(contract.TASK_ZERO_ROWS, 1, task)
        for metric, read, written in (
            (contract.TASK_ROWS, facts.rows_read, facts.rows_written),
            (contract.TASK_BYTES, facts.bytes_read, facts.bytes_written),
        ):
            for direction, value in (("read", read), ("written", written)):
                if value is not None:
                    self._add(metric, value, {**task, "direction": direction})
        for name, passed in facts.checks.items():
            self._add(contract.TASK_CHECKS, 1, {**task, "check": name, "result": "passed" if passed else "failed"})

    def dag_run_finished(self, info: DagRunInfo, context: Context | None) -> None:
        attrs = {"dag_id": info.dag_id, "state": info.state or "unknown"}
        self._add(contract.DAG_RUN_FINISHED, 1, attrs)
        if info.start and info.end:
            self._add(contract.DAG_RUN_DURATION, (info.end - info.start).total_seconds(), attrs, context)
