"""Exemplars end to end on the native stack: a task try's duration bucket links to its trace.

Real task processes (testkit/taskproc: the plugin's listener and OTLP pipeline) run two runs of one DAG;
the duration histograms carry an exemplar of the try's span (and the DAG run's) through the Collector's
aggregation (delta_to_cumulative keeps only a stream's first exemplars; collector/exemplarsprocessor carries
each delta's across it) into Prometheus's exemplar storage (--enable-feature=exemplar-storage). The SECOND
run is the one that proves the carry: its streams already exist, so without it Prometheus only ever sees
the first run's trace (measured: the test then fails, holding the first run's trace only). Jaeger must hold
the trace an exemplar names.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from otel_plugin.core import contract, ids
from testkit import harness as h
from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

PROPAGATION_S = 60  # a few scrape intervals and the aggregation hop, on a loaded machine


def test_duration_buckets_link_each_run_to_its_trace(tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:10]
    dag_id, runs = f"exemplars_{uid}", [f"manual__{uid}_1", f"manual__{uid}_2"]
    env = h.plugin_env(tmp_path / "spool")
    for run_id in runs:  # one after the other: the second run's points meet existing streams
        h.run_tasks(h.task_specs(dag_id, run_id, ["load"], dag_run="success", task_seconds=0.2), env)
    traces = {run_id: f"{ids.trace_id(dag_id, run_id, 0):032x}" for run_id in runs}

    task_buckets = f'{contract.TASK_DURATION.prometheus}_bucket{{dag_id="{dag_id}",task_id="load"}}'
    run_buckets = f'{contract.DAG_RUN_DURATION.prometheus}_bucket{{dag_id="{dag_id}"}}'
    for selector in (task_buckets, run_buckets):
        found = su.wait_until(lambda s=selector: su.prom_exemplar_traces(s),  # type: ignore[misc]
                              ok=lambda got: set(traces.values()) <= got, timeout=PROPAGATION_S,
                              what=f"exemplars of both runs on {selector}")
        assert found <= set(traces.values()), f"exemplars of traces that are not this DAG's: {found}"

    for run_id, trace in traces.items():
        su.wait_until(lambda r=run_id: su.jaeger_trace(ids.trace_id(dag_id, r, 0)),  # type: ignore[misc]
                      ok=lambda data: data is not None, timeout=PROPAGATION_S, what=f"trace {trace} in Jaeger")
    # The histograms still count exactly: one try and one run each.
    assert su.prom_value(f'sum({contract.TASK_DURATION.prometheus}_count{{dag_id="{dag_id}"}})') == 2

