"""The recipe for jobs on any OTel SDK (docs/jobs.md), proved with a non-Python client: K concurrent JVMs
(examples/jvm-job, the OpenTelemetry Java SDK configured only by the environment a task try's
``api.job_env()`` builds: OTEL_* variables and TRACEPARENT) each add to one delta counter and end one span,
as the jobs of K mapped tries of one Airflow task would.

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

from otel_plugin import api
from otel_plugin.core import ids
from otel_plugin.core.runcontext import RunContext
from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

JVMS = 4  # concurrent JVMs: they overlap, and each costs about 2-3 s of CPU on 2 shared cores
ADD = 7
JVM_TIMEOUT_S = 180.0
PROPAGATION_S = 120.0  # scrape interval and batching, on a machine that may be very loaded
RUN_SCOPED_LABELS = {"run_id", "try_number", "map_index"}


def jvm_env(run: RunContext) -> dict[str, str]:
    """The recipe (docs/jobs.md): what the task hands the JVM, ``api.job_env()`` inside the task try (OTLP
    settings, delta temporality, the run's ids as resource attributes, TRACEPARENT), plus two settings for
    a short-lived JVM."""
    assert run.parent is not None
    api.begin_task(*run.parent, run)
    try:
        env = {**os.environ, **api.job_env()}
    finally:
        api.begin_task(None, None)
    assert env["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] == "delta", env
    assert f"run_id={urllib.parse.quote(str(run.run_id), safe='')}" in env["OTEL_RESOURCE_ATTRIBUTES"], env
    env.update({
        "OTEL_EXPORTER_OTLP_ENDPOINT": su.COLLECTOR_OTLP_HTTP,
        # Milliseconds per export (and the job's exit bound). Generous: this test is about exact counts, and
        # on a 2-core machine at load 50 six cold JVMs' HTTP clients took more than 5 s to connect (3 of 6
        # deltas were lost with 5000: a plain SDK has no spool).
        "OTEL_EXPORTER_OTLP_TIMEOUT": "30000",
        "OTEL_LOGS_EXPORTER": "none",
    })
    return env


def run_jvms(jar: Path, counter: str, envs: list[dict[str, str]]) -> tuple[list[float], list[str]]:
    """Start one JVM per environment at once; wait for all (bounded); their wall times (s) and outputs."""
    # Short-lived JVMs: C1 only and the serial GC start faster and cost less CPU.
    command = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-jar", str(jar), counter, str(ADD)]
    started = time.monotonic()
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for env in envs]
    walls, outputs, failed = [], [], []
    for proc in procs:
        try:
            output, _ = proc.communicate(timeout=max(1.0, started + JVM_TIMEOUT_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        walls.append(time.monotonic() - started)
        outputs.append(output)
        if proc.returncode:
            failed.append((proc.returncode, output[-2000:]))
    assert not failed, f"{len(failed)} of {len(procs)} JVMs failed: {failed}"
    return walls, outputs


def test_concurrent_jvm_jobs_add_up_exactly_with_bounded_labels_and_join_the_runs_trace(java_job_jar) -> None:
    uid = uuid.uuid4().hex[:12]
    dag_id, task_id = f"jvm_{uid}", "spark_load"
    run_id = f"scheduled__2026-12-01T12:00:00+00:00_{uid}"
    trace_id, root = ids.trace_id(dag_id, run_id), ids.root_span_id(dag_id, run_id)
    task_spans = [ids.task_span_id(dag_id, run_id, 0, task_id, i, 1 + i % 2) for i in range(JVMS)]
    runs = [RunContext(dag_id, task_id, run_id, 1 + i % 2, i, ids.format_traceparent(trace_id, span))
            for i, span in enumerate(task_spans)]
    counter, total = f"jvmtest.{uid}.records", f"jvmtest_{uid}_records_total"
    accepted_before, dropped_before = su.delta_to_cumulative_points()

    # The run's trace as the plugin makes it: the DAG-run span and one span per mapped task try.
    su.run_processes(su.send_span, [(f"dag_run {dag_id}", trace_id, root, None, {"dag_id": dag_id})] + [
        (f"task {task_id}", trace_id, span, root, {"dag_id": dag_id, "map_index": run.map_index})
        for run, span in zip(runs, task_spans, strict=True)])
    walls, outputs = run_jvms(java_job_jar, counter, [jvm_env(run) for run in runs])
    print(f"{JVMS} JVMs: all done after {max(walls):.1f} s (first {min(walls):.1f} s)")

    # The SDK logs an export it gave up on ("Exporter failed", "Failed to export"): shown if a count is short.
    logged = "".join(f"\n--- JVM {i}:\n{out[-1500:]}" for i, out in enumerate(outputs) if "xport" in out)
    su.wait_until(lambda: su.prom_value(total), ok=lambda v: v == JVMS * ADD, timeout=PROPAGATION_S,
                  what=f"{total} = {JVMS * ADD} (load average {os.getloadavg()}){logged}")
    series = su.prom_query(total)
    assert len(series) == 1, series
    labels = series[0]["metric"]
    assert labels["dag_id"] == dag_id and labels["task_id"] == task_id, labels
    assert labels["outcome"] == "ok", labels  # the job's own label is kept
    assert labels["job"] == su.SERVICE_NAME, labels  # job_env() hands on the task's service.name
    assert not RUN_SCOPED_LABELS & labels.keys(), labels
    leaked = [s["metric"] for s in su.prom_query("target_info") if RUN_SCOPED_LABELS & s["metric"].keys()]
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
    assert {p["serviceName"] for p in processes} == {su.SERVICE_NAME}
    # Traces keep the run's ids (percent-decoded, '+' and ':' intact): the run lookup finds the job by them.
    tags = [{t["key"]: t["value"] for t in p["tags"]} for p in processes]
    assert {(t["dag_id"], t["task_id"], t["run_id"]) for t in tags} == {(dag_id, task_id, run_id)}
    assert sorted(int(t["map_index"]) for t in tags) == list(range(JVMS))
