"""The recipe for jobs on any OTel SDK (docs/jobs.md), proved with a non-Python client: K concurrent JVMs
(examples/jvm-job, the OpenTelemetry Java SDK configured only by OTEL_* variables and TRACEPARENT) each add
to one delta counter and end one span, as K mapped tries of one Airflow task would.

Shown against the native stack: the K deltas add up exactly in ONE Prometheus series labelled with the
job's dag_id and task_id (from its resource attributes), with no run-scoped label (run_id, try_number,
map_index) on it or on target_info; each JVM's span is a child of its task try's span in the run's trace.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from otel_plugin.core import ids
from tests import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

JVMS = 6  # concurrent JVMs: enough overlap, and each costs about 3 s of CPU on 2 shared cores
ADD = 7
JVM_TIMEOUT_S = 180.0
PROPAGATION_S = 60.0
RUN_SCOPED_LABELS = {"run_id", "try_number", "map_index"}


def resource_attributes(attributes: dict[str, object]) -> str:
    """OTEL_RESOURCE_ATTRIBUTES: key=value pairs, values percent-encoded (a run_id has ':' and '+')."""
    return ",".join(f"{key}={urllib.parse.quote(str(value), safe='')}" for key, value in attributes.items())


def jvm_env(run: dict[str, object], traceparent: str) -> dict[str, str]:
    """What the recipe puts in a JVM job's environment (docs/jobs.md)."""
    return {
        **os.environ,
        "OTEL_SERVICE_NAME": "airflow-jvm-job",
        "OTEL_EXPORTER_OTLP_ENDPOINT": su.COLLECTOR_OTLP_HTTP,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_RESOURCE_ATTRIBUTES": resource_attributes(run),
        "TRACEPARENT": traceparent,
    }


def run_jvms(jar: Path, counter: str, envs: list[dict[str, str]]) -> list[float]:
    """Start one JVM per environment at once; wait for all (bounded); their wall times in seconds."""
    # Short-lived JVMs: C1 only and the serial GC start faster and cost less CPU.
    command = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-jar", str(jar), counter, str(ADD)]
    started = time.monotonic()
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for env in envs]
    walls, failed = [], []
    for proc in procs:
        try:
            output, _ = proc.communicate(timeout=max(1.0, started + JVM_TIMEOUT_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        walls.append(time.monotonic() - started)
        if proc.returncode:
            failed.append((proc.returncode, output[-2000:]))
    assert not failed, f"{len(failed)} of {len(procs)} JVMs failed: {failed}"
    return walls


def test_concurrent_jvm_jobs_add_up_exactly_with_bounded_labels_and_join_the_runs_trace(java_job_jar) -> None:
    uid = uuid.uuid4().hex[:12]
    dag_id, task_id = f"jvm_{uid}", "spark_load"
    run_id = f"scheduled__2026-12-01T12:00:00+00:00_{uid}"
    trace_id, root = ids.trace_id(dag_id, run_id), ids.root_span_id(dag_id, run_id)
    runs = [{"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "try_number": 1 + i % 2, "map_index": i}
            for i in range(JVMS)]
    task_spans = [ids.task_span_id(dag_id, run_id, 0, task_id, int(r["map_index"]), int(r["try_number"]))
                  for r in runs]
    counter, total = f"jvmtest.{uid}.records", f"jvmtest_{uid}_records_total"
    accepted_before, dropped_before = su.delta_to_cumulative_points()

    # The run's trace as the plugin makes it: the DAG-run span and one span per mapped task try.
    su.run_processes(su.send_span, [(f"dag_run {dag_id}", trace_id, root, None, {"dag_id": dag_id})] + [
        (f"task {task_id}", trace_id, span, root, {"dag_id": dag_id, "map_index": r["map_index"]})
        for r, span in zip(runs, task_spans, strict=True)])
    walls = run_jvms(java_job_jar, counter,
                     [jvm_env(r, ids.format_traceparent(trace_id, span)) for r, span in zip(runs, task_spans,
                                                                                             strict=True)])
    print(f"{JVMS} JVMs: all done after {max(walls):.1f} s (first {min(walls):.1f} s)")

    su.wait_until(lambda: su.prom_value(total), ok=lambda v: v == JVMS * ADD, timeout=PROPAGATION_S, what=total)
    series = su.prom_query(total)
    assert len(series) == 1, series
    labels = series[0]["metric"]
    assert labels["dag_id"] == dag_id and labels["task_id"] == task_id, labels
    assert labels["outcome"] == "ok", labels  # the job's own label is kept
    assert labels["job"] == "airflow-jvm-job", labels  # service.name, as for any exporter target
    assert not RUN_SCOPED_LABELS & labels.keys(), labels
    leaked = [s["metric"] for s in su.prom_query('target_info{job="airflow-jvm-job"}')
              if RUN_SCOPED_LABELS & s["metric"].keys()]
    assert leaked == []
    accepted, dropped = su.delta_to_cumulative_points()
    assert dropped == dropped_before, "delta_to_cumulative dropped points"
    assert accepted - accepted_before >= JVMS

    trace = su.wait_until(lambda: su.jaeger_trace(trace_id),
                          ok=lambda t: bool(t) and len(t["spans"]) == 1 + 2 * JVMS, timeout=PROPAGATION_S,
                          what="the run's trace with every JVM's span")
    jobs = [s for s in trace["spans"] if s["operationName"] == "java job"]
    assert len(jobs) == JVMS
    parents = sorted(int(ref["spanID"], 16) for s in jobs for ref in s["references"] if ref["refType"] == "CHILD_OF")
    assert parents == sorted(task_spans)  # each JVM under its own task try
    processes = [trace["processes"][s["processID"]] for s in jobs]
    assert {p["serviceName"] for p in processes} == {"airflow-jvm-job"}
    # Traces keep the run's ids (percent-decoded, '+' and ':' intact): the run lookup finds the job by them.
    tags = [{t["key"]: t["value"] for t in p["tags"]} for p in processes]
    assert {(t["dag_id"], t["task_id"], t["run_id"]) for t in tags} == {(dag_id, task_id, run_id)}
    assert sorted(int(t["map_index"]) for t in tags) == list(range(JVMS))
