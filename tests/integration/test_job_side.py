"""The Python job side against the real stack: K concurrent job processes (as K mapped tries of one task
would start them with api.job_env()) push a prometheus_client registry and count with job.counter.

Shown: every counter adds up exactly in ONE Prometheus series named as behind the Pushgateway
(``<counter>_total{dag_id, task_id, <own labels>}``), histograms too; each job's event is in the run lookup
with the run's ids; each job's span is a child of its task try's span in the run's trace; the Prometheus
names of custom metrics are what ``prometheus_name`` says; with the Collector refusing or not answering a
job exits within its flush budget and what it recorded waits in the spool until ``airflow-otel replay``.

Each job is a real ``python`` process with its own environment, ending through its normal exit path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from otel_plugin.core import ids
from otel_plugin.core.custom_metrics import prometheus_name
from otel_plugin.core.runcontext import RunContext
from otel_plugin.readback import lookup
from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

JOBS = 30
ADD = 5
PROPAGATION_S = 60.0
JOB_TIMEOUT_S = 300.0
FLUSH_BUDGET_S = 2.0
RUN_SCOPED_LABELS = {"run_id", "try_number", "map_index", "trace_id", "span_id"}

# One job process: sets up, waits at the gate (so all jobs send at once), records, prints when its own code
# ended (CLOCK_MONOTONIC is system-wide: the test measures the exit delay from it) and exits normally.
JOB = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from otel_plugin import job

    gate, name = Path(sys.argv[1]), sys.argv[2]
    registry = CollectorRegistry()
    rows = Counter(name + "_rows_processed", "Rows the job processed", ["source"], registry=registry)
    latency = Histogram(name + "_batch_seconds", "Batch latency", registry=registry, buckets=(1, 2))
    deadline = time.monotonic() + 300
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    rows.labels("s3").inc(%(add)d)
    latency.observe(1.5)
    job.push_to_collector(registry, job="loader", grouping_key={"run_id": os.environ["AIRFLOW_OTEL_RUN_ID"]})
    job.counter(name + "_rejected", description="Rows rejected").add(%(add)d, {"reason": "schema"})
    job.set_fact("output", "s3://bucket/part-" + os.environ["AIRFLOW_OTEL_MAP_INDEX"])
    with job.span("write partition"):
        pass
    print("ended", time.monotonic(), flush=True)
""") % {"add": ADD}


def unique() -> str:
    return uuid.uuid4().hex[:10]


def job_env(context: RunContext, **overrides: str) -> dict[str, str]:
    """What api.job_env() gives a child in a task on this stack (built from the same context class)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OTEL_", "TRACEPARENT"))}
    env.update(context.to_env())
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": su.COLLECTOR_OTLP_HTTP, "OTEL_SERVICE_NAME": su.SERVICE_NAME,
                "AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET": str(FLUSH_BUDGET_S)})
    env.update(overrides)
    return env


def run_jobs(script: str, args: list[str], envs: list[dict[str, str]], gate: Path) -> list[tuple[float, str]]:
    """Start one job per environment, open the gate once all are up, wait (bounded).

    Returns (exit delay: seconds from the end of the job's own code to the process's end, output) per job.
    """
    procs = [subprocess.Popen([sys.executable, "-c", script, str(gate), *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for env in envs]
    time.sleep(1.0)
    gate.touch()
    exited: dict[int, float] = {}
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while len(exited) < len(procs) and time.monotonic() < deadline:
        for i, proc in enumerate(procs):
            if i not in exited and proc.poll() is not None:
                exited[i] = time.monotonic()
        time.sleep(0.02)
    results, failed = [], []
    for i, proc in enumerate(procs):
        if i not in exited:
            proc.kill()
        output = proc.communicate()[0]
        if proc.returncode:
            failed.append((proc.returncode, output[-2000:]))
            continue
        ended = next(float(line.split()[1]) for line in output.splitlines() if line.startswith("ended "))
        results.append((exited[i] - ended, output))
    assert not failed, f"{len(failed)} of {len(procs)} jobs failed: {failed}"
    return results


def test_concurrent_jobs_add_up_exactly_and_appear_in_the_runs_lookup_and_trace(tmp_path) -> None:
    uid = unique()
    dag_id, task_id, run_id = f"jobs_{uid}", "spark_load", f"manual__2026-12-01T12:00:00+00:00_{uid}"
    trace_id, root = ids.trace_id(dag_id, run_id), ids.root_span_id(dag_id, run_id)
    contexts = [RunContext(dag_id, task_id, run_id, 1, i,
                           ids.format_traceparent(trace_id, ids.task_span_id(dag_id, run_id, 0, task_id, i, 1)))
                for i in range(JOBS)]
    name = f"jobtest_{uid}"
    accepted_before, dropped_before = su.delta_to_cumulative_points()

    # The run's trace as the plugin makes it: the DAG-run span and the mapped task tries' spans.
    su.run_processes(su.send_span, [(f"dag_run {dag_id}", trace_id, root, None, {"dag_id": dag_id})] + [
        (f"task {task_id}", trace_id, c.parent[1], root, {"dag_id": dag_id, "run_id": run_id, "map_index": i})
        for i, c in enumerate(contexts)])
    spool = tmp_path / "spool"
    # The flush budget is wall time, and 30 jobs exiting at once on 2 shared cores are CPU-bound: with the
    # default 2 s some would exit before their last export even reached the spool (measured: 135 of 150,
    # exit delays 24-35 s at load 70). Exactness is what this test is about; the bounded exit is tested below.
    envs = [job_env(c, AIRFLOW__OTEL_PLUGIN__SPOOL_DIR=str(spool), AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET="60")
            for c in contexts]
    results = run_jobs(JOB, [name], envs, tmp_path / "gate")
    delays = sorted(d for d, _ in results)
    print(f"{JOBS} jobs: exit delay median {delays[len(delays) // 2]:.2f} s, max {delays[-1]:.2f} s")

    for metric, expected in ((f"{name}_rows_processed_total", JOBS * ADD), (f"{name}_rejected_total", JOBS * ADD),
                             (f"{name}_batch_seconds_count", JOBS), (f"{name}_batch_seconds_sum", JOBS * 1.5),
                             (f'{name}_batch_seconds_bucket{{le="2.0"}}', JOBS),  # Prometheus 3 writes le as a float
                             (f'{name}_batch_seconds_bucket{{le="1.0"}}', 0)):
        su.wait_until(lambda m=metric: su.prom_value(m), ok=lambda v, e=expected: v == e, timeout=PROPAGATION_S,
                      what=metric)
    (pushed,) = su.prom_query(f"{name}_rows_processed_total")
    labels = pushed["metric"]
    assert (labels["dag_id"], labels["task_id"], labels["source"]) == (dag_id, task_id, "s3"), labels
    assert not RUN_SCOPED_LABELS & labels.keys(), labels
    (counted,) = su.prom_query(f"{name}_rejected_total")
    assert counted["metric"]["reason"] == "schema" and not RUN_SCOPED_LABELS & counted["metric"].keys()
    accepted, dropped = su.delta_to_cumulative_points()
    assert dropped == dropped_before, "delta_to_cumulative dropped points"
    assert accepted > accepted_before  # (the Collector merges each request's points per stream first)
    assert not list(spool.glob("*.pb")), "the Collector was up: nothing should wait in the spool"

    # The run lookup (CLI and dashboards read the same query): one job event per process, with the ids.
    found = su.wait_until(lambda: _lookup(dag_id, run_id),
                          ok=lambda f: f is not None and sum(e.event == "job" for e in f.events) == JOBS,
                          timeout=PROPAGATION_S, what="the jobs' events in the run lookup")
    jobs = [e for e in found.events if e.event == "job"]
    assert {e.task_id for e in jobs} == {task_id} and sorted(int(e.map_index) for e in jobs) == list(range(JOBS))
    assert all(e.state == "finished" and e.facts["job"] == "loader" for e in jobs)
    assert all(e.facts[f"metric.{name}_rows_processed"] == str(ADD) and e.facts["fact.run_id"] == run_id
               for e in jobs)
    assert "job" in lookup.format_lookup(found)

    # The trace: every job's span under its own task try's span, the job's own span under it.
    trace = su.wait_until(lambda: su.jaeger_trace(trace_id),
                          ok=lambda t: bool(t) and len(t["spans"]) == 1 + 3 * JOBS, timeout=PROPAGATION_S,
                          what="the run's trace with every job's spans")
    spans = {s["spanID"]: s for s in trace["spans"]}
    job_spans = [s for s in spans.values() if s["operationName"] == "job loader"]
    parents = sorted(int(r["spanID"], 16) for s in job_spans for r in s["references"])
    assert parents == sorted(c.parent[1] for c in contexts)
    writes = [s for s in spans.values() if s["operationName"] == "write partition"]
    assert {spans[r["spanID"]]["operationName"] for s in writes for r in s["references"]} == {"job loader"}


def _lookup(dag_id: str, run_id: str) -> lookup.RunLookup | None:
    try:
        return lookup.lookup(dag_id, run_id)
    except lookup.RunNotFound:
        return None


def test_prometheus_names_of_custom_metrics_are_what_the_contract_says(tmp_path) -> None:
    uid = unique()
    context = RunContext(f"names_{uid}", "t", f"manual__{uid}", 1, -1, None)
    cases = [(f"n{uid}.rows", "counter", "{row}"), (f"n{uid}.load.size", "counter", "By"),
             (f"n{uid}_load_bytes", "counter", "By"), (f"n{uid}_wait", "histogram", "s"),
             (f"n{uid}.queue.depth", "up_down_counter", ""), (f"n{uid}_done_total", "counter", "")]
    calls = "\n".join(
        f"job.{'histogram' if kind == 'histogram' else kind}({name!r}, unit={unit!r})"
        f".{'record' if kind == 'histogram' else 'add'}(3)" for name, kind, unit in cases)
    script = "import sys\nfrom otel_plugin import job\n" + calls + "\nprint('ended', __import__('time').monotonic())"
    run_jobs(script, [], [job_env(context, AIRFLOW__OTEL_PLUGIN__SPOOL_DIR=str(tmp_path / "spool"))],
             tmp_path / "gate")
    for name, kind, unit in cases:
        expected = prometheus_name(name, kind, unit) + ("_count" if kind == "histogram" else "")
        su.wait_until(lambda e=expected: su.prom_value(e), ok=lambda v: v is not None and v > 0,
                      timeout=PROPAGATION_S, what=f"{expected} ({name}, {kind}, unit {unit!r})")
        types = su.prom_query(f'{{__name__=~"n{uid}.*", dag_id="{context.dag_id}"}}')
        assert all(s["metric"]["dag_id"] == context.dag_id for s in types)


@pytest.mark.parametrize("collector", ["refusing", "not answering"])
def test_with_the_collector_down_a_job_exits_within_its_budget_and_replay_delivers(tmp_path, collector) -> None:
    uid = unique()
    dag_id, run_id = f"down_{uid}", f"manual__{uid}"
    trace_id = ids.trace_id(dag_id, run_id)
    context = RunContext(dag_id, "load", run_id, 1, -1,
                         ids.format_traceparent(trace_id, ids.task_span_id(dag_id, run_id, 0, "load", -1, 1)))
    name, spool = f"downtest_{uid}", tmp_path / "spool"
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        if collector == "not answering":
            black_hole.listen(64)  # accepts connections (kernel backlog), never reads or answers
        endpoint = f"http://127.0.0.1:{black_hole.getsockname()[1]}"  # bound, not listening: refused
        ((delay, output),) = run_jobs(JOB, [name], [job_env(context, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                                                            AIRFLOW__OTEL_PLUGIN__SPOOL_DIR=str(spool))],
                                      tmp_path / "gate")
    print(f"collector {collector}: exit delay {delay:.2f} s")
    # After its own code: the exit flush, bounded by the budget (plus interpreter shutdown).
    assert delay < FLUSH_BUDGET_S + 1.5, (delay, output)
    assert len(list(spool.glob("*.pb"))) >= 3, "metrics, the event and the spans should wait in the spool"

    replay = subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "60"],
                            env=job_env(context, AIRFLOW__OTEL_PLUGIN__SPOOL_DIR=str(spool)),
                            capture_output=True, text=True, timeout=120, check=False)
    assert replay.returncode == 0, replay.stderr
    su.wait_until(lambda: su.prom_value(f"{name}_rows_processed_total"), ok=lambda v: v == ADD,
                  timeout=PROPAGATION_S, what="the spooled counter")
    su.wait_until(lambda: su.prom_value(f"{name}_rejected_total"), ok=lambda v: v == ADD, timeout=PROPAGATION_S,
                  what="the spooled SDK counter")
    records = su.wait_until(lambda: su.logsql(f'event:=job dag_id:="{dag_id}"'), ok=lambda r: len(r) == 1,
                            timeout=PROPAGATION_S, what="the spooled job event")
    assert records[0]["run_id"] == run_id
    su.wait_until(lambda: su.jaeger_trace(trace_id), ok=lambda t: bool(t) and len(t["spans"]) == 2,
                  timeout=PROPAGATION_S, what="the spooled spans")


def test_emit_cli_from_concurrent_shell_jobs_adds_up(tmp_path) -> None:
    uid = unique()
    dag_id, run_id = f"emit_{uid}", f"manual__{uid}"
    name, procs = f"emittest_{uid}_files", 6
    envs = [job_env(RunContext(dag_id, "sh", run_id, 1, i, None), AIRFLOW__OTEL_PLUGIN__SPOOL_DIR=str(tmp_path))
            for i in range(procs)]
    cli = [sys.executable, "-m", "otel_plugin", "emit"]
    running = [subprocess.Popen([*cli, "counter", name, "2", "--label", "kind=csv"], env=env, text=True,
                                stderr=subprocess.PIPE) for env in envs]
    for proc in running:
        _, err = proc.communicate(timeout=JOB_TIMEOUT_S)
        assert proc.returncode == 0, err
    fact = subprocess.run([*cli, "--job", "loader.sh", "fact", "output=s3://b/x"], env=envs[0], text=True,
                          capture_output=True, timeout=120, check=False)
    assert fact.returncode == 0, fact.stderr
    su.wait_until(lambda: su.prom_value(f"{name}_total"), ok=lambda v: v == 2 * procs, timeout=PROPAGATION_S,
                  what=f"{name}_total")
    records = su.wait_until(lambda: su.logsql(f'event:=job dag_id:="{dag_id}" fact.output:*'),
                            ok=lambda r: len(r) == 1, timeout=PROPAGATION_S, what="the fact's event")
    assert (records[0]["job"], records[0]["fact.output"], records[0]["run_id"]) == ("loader.sh", "s3://b/x", run_id)
