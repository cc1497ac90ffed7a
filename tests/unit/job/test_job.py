"""The job side (otel_plugin.job) with in-memory exporters: context from the environment, spans under the
task's span, the job's event, push_to_collector's deltas, the emit CLI, and api.job_env()."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from otel_plugin import __main__ as cli_main
from otel_plugin import api, job
from otel_plugin.airflow import listener
from otel_plugin.core import config, contract, ids, pipeline, transport
from otel_plugin.core.otel_compat import InMemoryLogRecordExporter
from otel_plugin.core.runcontext import RunContext
from otel_plugin.job import runtime
from tests.unit.conftest import AccumulatingReader, make_ti

TRACE, TASK_SPAN = 0x0123456789ABCDEF0123456789ABCDEF, 0x0123456789ABCDEF
CONTEXT = RunContext("etl", "load", "manual__1", 2, 3, ids.format_traceparent(TRACE, TASK_SPAN))


@dataclass
class JobCaptured:
    rt: runtime.JobRuntime
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    reader: AccumulatingReader
    posted: list[bytes]

    def finish(self) -> None:
        self.rt.finish()

    def events(self) -> list[dict]:
        return [dict(r.log_record.attributes) for r in self.logs.get_finished_logs()]

    def pushed(self) -> dict[str, list[tuple[dict, object]]]:
        """metric name -> (attributes, OTLP data point) of every push_to_collector payload so far."""
        found: dict[str, list[tuple[dict, object]]] = {}
        for payload in self.posted:
            request = ExportMetricsServiceRequest.FromString(payload)
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        points = getattr(m, m.WhichOneof("data")).data_points
                        found.setdefault(m.name, []).extend(
                            ({a.key: a.value.string_value for a in p.attributes}, p) for p in points)
        return found


@pytest.fixture
def job_captured(tmp_path, monkeypatch) -> Iterator[JobCaptured]:
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__SPOOL_DIR", str(tmp_path / "spool"))
    cfg = config.load(airflow_cfg=False)
    spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), AccumulatingReader()
    pipe = pipeline.Pipeline(cfg, span_exporter=spans, log_exporter=logs, metric_reader=reader)
    posted: list[bytes] = []
    monkeypatch.setattr(transport.Sender, "post", lambda self, payload, timeout=None: posted.append(payload) or True)
    rt = runtime.JobRuntime(CONTEXT, cfg, "loader", pipe=pipe)
    runtime.install(rt)
    api.begin_task(None, None)  # not in a task: api.* goes to the job side
    yield JobCaptured(rt, spans, logs, reader, posted)
    runtime.install(None)


def fresh(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_job_span_is_a_child_of_the_task_span_and_user_spans_nest(job_captured):
    with job.span("write", {"partitions": 4}), job.span("inner"):
        pass
    with pytest.raises(ValueError), job.span("broken"):
        raise ValueError("bad password=hunter2")
    job_captured.finish()
    spans = {s.name: s for s in job_captured.spans.get_finished_spans()}
    root = spans["job loader"]
    assert root.context.trace_id == TRACE and root.parent.span_id == TASK_SPAN and root.parent.is_remote
    assert spans["write"].parent.span_id == root.context.span_id
    assert spans["inner"].parent.span_id == spans["write"].context.span_id
    assert spans["broken"].status.status_code.name == "ERROR"
    assert "hunter2" not in str(spans["broken"].events[0].attributes)
    assert {root.attributes[k] for k in ("dag_id", "task_id", "run_id")} == {"etl", "load", "manual__1"}


def test_job_event_carries_the_run_ids_facts_and_counter_totals(job_captured):
    name = fresh("rows")
    job.counter(name).add(5, {"source": "s3", "map_index": 7})
    job.set_fact("output", "postgres://u:hunter2@db/x")
    job_captured.finish()
    (event,) = job_captured.events()
    assert event["event"] == contract.EVENT_JOB and event["state"] == "finished"
    assert (event["dag_id"], event["task_id"], event["run_id"], event["try_number"], event["map_index"]) == (
        "etl", "load", "manual__1", 2, 3)
    assert event["job"] == "loader" and event[f"metric.{name}"] == 5
    assert event["fact.map_index"] == 7  # refused as a label, kept on the event
    assert "hunter2" not in event["fact.output"]
    span = next(s for s in job_captured.spans.get_finished_spans() if s.name == "job loader")
    assert event["trace_id"] == f"{TRACE:032x}" and event["span_id"] == f"{span.context.span_id:016x}"
    declared = {*contract.COMMON_FIELDS, *contract.JOB_FIELDS}
    undeclared = {k for k in event if k not in declared and not k.startswith(contract.FIELD_PREFIXES)}
    assert undeclared == set()


def test_uncaught_exception_marks_the_job_failed(job_captured):
    job.set_fact("step", "load")
    job_captured.rt.error = runtime.errors.describe(RuntimeError("boom token=abc123"))
    job_captured.finish()
    (event,) = job_captured.events()
    assert event["state"] == "failed" and event["error.type"] == "RuntimeError"
    assert "abc123" not in event["error.message"]


def test_nothing_recorded_means_no_event_and_no_span(job_captured):
    job_captured.finish()
    assert job_captured.events() == [] and job_captured.spans.get_finished_spans() == ()


def test_job_counters_get_the_context_labels(job_captured):
    name = fresh("rejected")
    job.counter(name, unit="{record}").add(3, {"reason": "schema"})
    job_captured.rt.pipe.meter_provider.force_flush()
    points = [(dict(p.attributes), p.value) for data in job_captured.reader.collected
              for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
              for p in m.data.data_points]
    assert points == [({"dag_id": "etl", "task_id": "load", "reason": "schema"}, 3)]


def test_push_to_collector_sends_counter_deltas_since_the_previous_call(job_captured):
    name = fresh("rows_processed")
    registry = CollectorRegistry()
    rows = Counter(name, "Rows", ["source"], registry=registry)
    rows.labels("s3").inc(5)
    assert job.push_to_collector(registry, job="loader") is True
    rows.labels("s3").inc(2)
    rows.labels("gcs").inc(1)
    job.push_to_collector(registry)
    job.push_to_collector(registry)
    points = job_captured.pushed()[name]
    s3 = [p.as_double or p.as_int for attrs, p in points if attrs["source"] == "s3"]
    assert s3 == [5, 2, 0]  # first call: the whole value; then only the increase
    assert {tuple(sorted(attrs)) for attrs, _ in points} == {("dag_id", "source", "task_id")}
    assert all(attrs["dag_id"] == "etl" and attrs["task_id"] == "load" for attrs, _ in points)
    request = ExportMetricsServiceRequest.FromString(job_captured.posted[0])
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.sum.is_monotonic and metric.sum.aggregation_temporality == 1  # DELTA
    job_captured.finish()
    assert job_captured.events()[0][f"metric.{name}"] == 8


def test_push_to_collector_histograms_are_deltas_and_gauges_are_values(job_captured):
    hist, gauge, summary = fresh("lat_seconds"), fresh("queue_bytes"), fresh("size")
    registry = CollectorRegistry()
    h = Histogram(hist, "Latency", registry=registry, buckets=(1, 2))
    g = Gauge(gauge, "Queue", registry=registry)
    s = Summary(summary, "Sizes", registry=registry)
    h.observe(0.5), h.observe(1.5), g.set(7), s.observe(3)
    job.push_to_collector(registry)
    h.observe(5), g.set(4), s.observe(1)
    job.push_to_collector(registry)
    pushed = job_captured.pushed()
    first, second = (p for _, p in pushed[hist])
    assert (list(first.bucket_counts), first.count, first.sum) == ([1, 1, 0], 2, 2.0)
    assert (list(second.bucket_counts), second.count, second.sum) == ([0, 0, 1], 1, 5.0)
    assert list(second.explicit_bounds) == [1.0, 2.0]
    assert [p.as_double or p.as_int for _, p in pushed[gauge]] == [7, 4]
    assert [(p.count, p.sum, list(p.bucket_counts)) for _, p in pushed[summary]] == [(1, 3.0, [1]), (1, 1.0, [1])]


def test_push_to_collector_moves_run_scoped_grouping_keys_to_the_event(job_captured, caplog):
    name = fresh("loaded")
    registry = CollectorRegistry()
    Counter(name, "x", registry=registry).inc()
    job.push_to_collector(registry, job="nightly", grouping_key={"run_id": "r1", "instance": "h1", "zone": "eu"})
    ((attrs, _),) = job_captured.pushed()[name]
    assert attrs == {"dag_id": "etl", "task_id": "load", "zone": "eu"}
    job_captured.finish()
    event = job_captured.events()[0]
    assert (event["job"], event["fact.run_id"], event["fact.instance"]) == ("nightly", "r1", "h1")
    assert any("'run_id'" in r.getMessage() for r in caplog.records)


def test_push_to_collector_keeps_what_it_cannot_deliver(job_captured, monkeypatch):
    registry = CollectorRegistry()
    Counter(fresh("kept"), "x", registry=registry).inc()
    monkeypatch.setattr(transport.Sender, "post", lambda self, payload, timeout=None: False)
    assert job.push_to_collector(registry) is False
    assert job_captured.rt.pipe.spool.pending() == 1


def test_push_to_collector_never_raises(job_captured):
    class Broken:
        def collect(self):
            raise RuntimeError("registry broke")

    assert job.push_to_collector(Broken()) is False


def test_emit_cli_records_a_counter_a_fact_and_a_span(job_captured):
    def emit(*argv: str) -> int:  # each call is one job process: a runtime of its own, finished at the end
        runtime.install(runtime.JobRuntime(CONTEXT, job_captured.rt.pipe.cfg, "loader", pipe=job_captured.rt.pipe))
        return cli_main.main(["emit", *argv])

    name = fresh("emitted")
    assert emit("counter", name, "4", "--label", "kind=a") == 0
    assert emit("fact", "file=a.csv", "rows=10") == 0
    assert emit("span", "step", "--start", "1764590000", "--end", "1764590002") == 0
    assert emit("span", "run", "--", "sh", "-c", "exit 3") == 3
    spans = [s for s in job_captured.spans.get_finished_spans()]
    step, run = (next(s for s in spans if s.name == n) for n in ("step", "run"))
    assert step.end_time - step.start_time == 2_000_000_000
    assert run.status.status_code.name == "ERROR" and run.attributes["exit_code"] == 3
    jobs = [s for s in spans if s.name == "job loader"]
    assert len(jobs) == 4 and all(s.parent.span_id == TASK_SPAN for s in jobs)
    assert step.parent.span_id in {s.context.span_id for s in jobs}
    counted, facts, _, failed = job_captured.events()
    assert counted[f"metric.{name}"] == 4 and (facts["fact.file"], facts["fact.rows"]) == ("a.csv", "10")
    assert failed["state"] == "failed" and failed["error.type"] == "ExitCode"


@pytest.mark.parametrize("argv", [
    ["emit", "counter", "bad-name"],
    ["emit", "counter", "ok", "--label", "novalue"],
    ["emit", "span", "no_times"],
    ["emit", "span", "backwards", "--start", "10", "--end", "5"],
])  # fmt: skip
def test_emit_cli_usage_errors_exit_2_with_one_line(job_captured, capsys, argv):
    assert cli_main.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("airflow-otel emit: error:") and "\n" not in err


def test_emit_cli_without_a_run_context_warns_and_exits_0(job_captured, capsys):
    job_captured.rt.context = None
    assert cli_main.main(["emit", "counter", "x"]) == 0
    assert "no Airflow run context" in capsys.readouterr().err


# --- api.job_env() in the task process, and RunContext.from_env in the child -------------------------


def test_job_env_hands_the_task_try_to_a_child(captured, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20s3cret")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    task_endpoints = config.load().endpoints
    assert api.job_env() == {}  # outside a task
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running", map_index=4))
    env = api.job_env()
    assert env["TRACEPARENT"] == api.traceparent()
    assert env["AIRFLOW_OTEL_DAG_ID"] == "etl" and env["AIRFLOW_OTEL_TASK_ID"] == "load"
    assert env["AIRFLOW_OTEL_RUN_ID"] == "manual__2026-11-27T01:00:00+00:00"
    assert (env["AIRFLOW_OTEL_TRY_NUMBER"], env["AIRFLOW_OTEL_MAP_INDEX"]) == ("1", "4")
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "deployment.environment=prod,dag_id=etl,task_id=load,"
        "run_id=manual__2026-11-27T01%3A00%3A00%2B00%3A00,try_number=1,map_index=4")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "authorization=Bearer%20s3cret"
    assert env["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] == "delta"
    assert env["OTEL_SERVICE_NAME"] == "airflow"
    assert env["AIRFLOW__OTEL_PLUGIN__SPOOL_DIR"] == str(captured.pipe.cfg.spool_dir)
    child = RunContext.from_env(env)
    assert child == RunContext("etl", "load", "manual__2026-11-27T01:00:00+00:00", 1, 4, env["TRACEPARENT"])
    parsed = ids.parse_traceparent(env["TRACEPARENT"])
    assert parsed and parsed[1] == child.parent[1]  # the task try's span id
    with monkeypatch.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        assert config.load(airflow_cfg=False).endpoints == task_endpoints


def test_the_task_process_hands_the_ids_to_children_that_inherit_its_environment(captured):
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running", map_index=2))
    inherited = RunContext.from_env(os.environ)
    assert inherited == RunContext("etl", "load", "manual__2026-11-27T01:00:00+00:00", 1, 2, api.traceparent())
    assert "OTEL_RESOURCE_ATTRIBUTES" not in os.environ or "dag_id=" not in os.environ["OTEL_RESOURCE_ATTRIBUTES"]


def test_job_env_defaults_to_http_when_the_task_names_no_endpoint(captured, monkeypatch):
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(key, raising=False)
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running"))
    env = api.job_env()
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"


def test_hand_run_context_fills_the_operators_child_environment(captured, caplog):
    from types import SimpleNamespace

    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(state="running"))
    spark = SimpleNamespace(env_vars={"AIRFLOW_OTEL_JOB": "count_orders"})  # SparkSubmitOperator
    bash = SimpleNamespace(env=None)  # BashOperator without env
    pod = SimpleNamespace(env_vars=["V1EnvVar"])  # KubernetesPodOperator given a list: left alone
    for operator in (spark, bash, pod):
        api.hand_run_context({"task": operator})
    assert spark.env_vars == {"AIRFLOW_OTEL_JOB": "count_orders", **api.job_env()}
    assert bash.env == api.job_env() and bash.env["TRACEPARENT"] == api.traceparent()
    assert pod.env_vars == ["V1EnvVar"]
    api.hand_run_context(None)  # never raises into the task
    assert sum("hand_run_context needs" in r.getMessage() for r in caplog.records) == 2


def test_context_falls_back_to_airflows_own_variables():
    env = {"AIRFLOW_CTX_DAG_ID": "etl", "AIRFLOW_CTX_TASK_ID": "load", "AIRFLOW_CTX_DAG_RUN_ID": "r",
           "AIRFLOW_CTX_TRY_NUMBER": "2", "TRACEPARENT": "garbage"}
    assert RunContext.from_env(env) == RunContext("etl", "load", "r", 2, None, None)
    assert RunContext.from_env({"AIRFLOW_OTEL_DAG_ID": "etl"}) is None
