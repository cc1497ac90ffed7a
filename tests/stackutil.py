"""Helpers for tests against the native stack (compose/stack.sh): bring it up, query its stores, wait.

Also the OTel SDK senders the tests run as separate OS processes (multiprocessing, forkserver): each builds its
own providers, as an Airflow task process does, sends once and exits.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator

ROOT = Path(__file__).resolve().parents[1]
STACK_SH = ROOT / "compose" / "stack.sh"

COLLECTOR_OTLP_HTTP = "http://127.0.0.1:4318"
COLLECTOR_TELEMETRY = "http://127.0.0.1:8888/metrics"
PROMETHEUS = "http://127.0.0.1:9090"
VICTORIALOGS = "http://127.0.0.1:9428"
JAEGER = "http://127.0.0.1:16686"
SERVICE_NAME = "airflow"
SENDER_TIMEOUT = 300.0  # seconds for a batch of sender processes to start, meet and finish

T = TypeVar("T")


def stack(*args: str) -> str:
    """Run compose/stack.sh with args; its output, or an AssertionError carrying it on failure."""
    proc = subprocess.run([str(STACK_SH), *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise AssertionError(f"stack.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def ensure_stack() -> None:
    """Start whatever part of the stack is not running (builds missing binaries; idempotent)."""
    stack("up")


def wait_until(
    probe: Callable[[], T],
    ok: Callable[[T], bool] = bool,
    timeout: float = 30.0,
    interval: float = 0.5,
    what: str = "",
) -> T:
    """Call probe until ok(its value) and return that value; at timeout fail showing the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}; last value: {value!r}")
        time.sleep(interval)


# --- Prometheus -------------------------------------------------------------------------------------


def prom_query(expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query: the result list (vector or matrix entries) of GET /api/v1/query."""
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = at
    resp = requests.get(f"{PROMETHEUS}/api/v1/query", params=params, timeout=10)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def prom_value(expr: str, at: float | None = None) -> float | None:
    """The value of a query that returns at most one series (None when it returns none)."""
    result = prom_query(expr, at)
    assert len(result) <= 1, f"{expr} returned {len(result)} series: {result}"
    return float(result[0]["value"][1]) if result else None


def prom_samples(selector: str, window: str = "10m") -> list[tuple[float, float]]:
    """Raw (timestamp, value) samples of the single series a selector matches, over the last window."""
    result = prom_query(f"{selector}[{window}]")
    assert len(result) == 1, f"{selector} matched {len(result)} series: {result}"
    return [(float(t), float(v)) for t, v in result[0]["values"]]


# --- the Collector's own telemetry -----------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def collector_samples(metric: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of one metric in the Collector's own telemetry (:8888)."""
    text = requests.get(COLLECTOR_TELEMETRY, timeout=10).text
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == metric:
            samples.append((dict(_LABEL.findall(match["labels"] or "")), float(match["value"])))
    return samples


def delta_to_cumulative_points() -> tuple[float, float]:
    """(accepted, dropped) delta points of delta_to_cumulative so far, from its datapoints counter (dropped
    ones carry an `error` label). Both 0 until its first point: the counter appears only then."""
    samples = collector_samples("otelcol_deltatocumulative_datapoints")
    dropped = sum(value for labels, value in samples if "error" in labels)
    return sum(value for _, value in samples) - dropped, dropped


def delta_to_cumulative_errors() -> float:
    """Delta points delta_to_cumulative has dropped so far."""
    return delta_to_cumulative_points()[1]


# --- VictoriaLogs -------------------------------------------------------------------------------------


def logsql(query: str) -> list[dict[str, Any]]:
    """Records matching a LogsQL query, as parsed JSON lines."""
    resp = requests.post(f"{VICTORIALOGS}/select/logsql/query", data={"query": query}, timeout=10)
    resp.raise_for_status()
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def logsql_streams(query: str) -> list[str]:
    """The stream label sets (e.g. '{service.name="airflow"}') of the records a LogsQL query matches."""
    resp = requests.post(f"{VICTORIALOGS}/select/logsql/streams", data={"query": query}, timeout=10)
    resp.raise_for_status()
    return [entry["value"] for entry in resp.json()["values"]]


# --- Jaeger -----------------------------------------------------------------------------------------


def jaeger_trace(trace_id: int) -> dict[str, Any] | None:
    """The trace with this id from Jaeger's HTTP API, or None while it is not (yet) there."""
    resp = requests.get(f"{JAEGER}/api/traces/{trace_id:032x}", timeout=10)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    data = resp.json()["data"]
    assert len(data) <= 1, data
    return data[0] if data else None


def jaeger_search(tags: Mapping[str, str], service: str = SERVICE_NAME, lookback: str = "1h") -> list[dict]:
    """Traces of a service whose spans carry all these tags."""
    params = {"service": service, "tags": json.dumps(dict(tags)), "lookback": lookback, "limit": 20}
    resp = requests.get(f"{JAEGER}/api/traces", params=params, timeout=10)
    resp.raise_for_status()
    return resp.json()["data"] or []


# --- senders: each runs in its own OS process ---------------------------------------------------------


class Gate:
    """A start line for sender processes: each reports ready, then all are released at once."""

    def __init__(self, ctx: Any) -> None:
        self.ready = ctx.Value("i", 0)
        self.go = ctx.Event()

    def wait(self) -> None:
        """In a sender, once its SDK is set up: report ready and wait for the release."""
        with self.ready.get_lock():
            self.ready.value += 1
        if not self.go.wait(SENDER_TIMEOUT):
            raise TimeoutError("sender was never released")


def run_processes(
    target: Callable[..., None], args_list: Sequence[tuple[Any, ...]], timeout: float = SENDER_TIMEOUT
) -> None:
    """Run target(gate, *args) in one new OS process per args tuple, all released at the same moment.

    Every child sets up its SDK first and then waits at the gate, so the sends really overlap.
    """
    # forkserver: every sender is a fresh OS process forked from a clean server that imported this module
    # (and so the SDK) once; spawn would re-import it per process, about 1 s of CPU each on 2 cores.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    gate = Gate(ctx)
    procs = [ctx.Process(target=target, args=(gate, *args)) for args in args_list]
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.start()
        while gate.ready.value < len(procs):
            early = [proc.exitcode for proc in procs if proc.exitcode is not None]
            assert not early, f"{len(early)} sender processes exited before the start: exit codes {early}"
            assert time.monotonic() < deadline, f"only {gate.ready.value} of {len(procs)} senders got ready"
            time.sleep(0.05)
        gate.go.set()
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    failed = [proc.exitcode for proc in procs if proc.exitcode != 0]
    assert not failed, f"{len(failed)} of {len(procs)} sender processes failed: exit codes {failed}"


def _resource(extra: Mapping[str, str] | None = None) -> Resource:

    # Resource.create adds a random service.instance.id, as in every real task process.
    return Resource.create({"service.name": SERVICE_NAME, **(extra or {})})


def send_delta_metrics(
    gate: Gate,
    name: str,
    attributes: Mapping[str, Any],
    add: int = 1,
    histogram: str | None = None,
    observation: float = 0.0,
) -> None:
    """One process: its own MeterProvider with DELTA temporality; adds to a counter (and records one
    histogram observation), then exits through a flushing shutdown."""

    delta = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    exporter = OTLPMetricExporter(endpoint=f"{COLLECTOR_OTLP_HTTP}/v1/metrics", preferred_temporality=delta, timeout=5)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=_resource())
    meter = provider.get_meter("otel_plugin")
    counter = meter.create_counter(name)
    hist = meter.create_histogram(histogram, unit="s") if histogram else None
    gate.wait()
    counter.add(add, attributes)
    if hist:
        hist.record(observation, attributes)
    provider.shutdown()


def send_cumulative_counter(gate: Gate, service: str, instance: str, scope: str, name: str, add: int) -> None:
    """One process of ANOTHER application: its own MeterProvider with the SDK's default (CUMULATIVE)
    temporality and its own service.name / service.instance.id; adds to a counter and exits flushing."""
    exporter = OTLPMetricExporter(endpoint=f"{COLLECTOR_OTLP_HTTP}/v1/metrics", timeout=5)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"service.name": service, "service.instance.id": instance})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    counter = provider.get_meter(scope).create_counter(name)
    gate.wait()
    counter.add(add, {"route": "/work"})
    provider.shutdown()


def send_log_event(gate: Gate, body: str, attributes: Mapping[str, Any]) -> None:
    """One process: its own LoggerProvider; emits one event record over OTLP/HTTP and exits."""

    provider = LoggerProvider(resource=_resource())
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{COLLECTOR_OTLP_HTTP}/v1/logs", timeout=5))
    )
    logger = provider.get_logger("otel_plugin")
    gate.wait()
    logger.emit(
        LogRecord(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=body,
            attributes=dict(attributes),
        )
    )
    provider.shutdown()


def send_span(
    gate: Gate, name: str, trace_id: int, span_id: int, parent_span_id: int | None, attributes: Mapping[str, Any]
) -> None:
    """One process: its own TracerProvider; ends one span with the given ids (parented to parent_span_id
    in the same trace when given) and exits."""

    class FixedIds(IdGenerator):
        def generate_trace_id(self) -> int:
            return trace_id

        def generate_span_id(self) -> int:
            return span_id

    provider = TracerProvider(resource=_resource(), id_generator=FixedIds())
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{COLLECTOR_OTLP_HTTP}/v1/traces", timeout=5))
    )
    context = None
    if parent_span_id is not None:
        parent = trace.SpanContext(
            trace_id, parent_span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
        )
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    gate.wait()
    with provider.get_tracer("otel_plugin").start_as_current_span(name, context=context, attributes=attributes):
        pass
    provider.shutdown()


# --- the JVM job of docs/jobs.md (examples/jvm-job) -----------------------------------------------------

JAVA_JOB = ROOT / "examples" / "jvm-job"
MAVEN_BUILD_TIMEOUT = 1200.0  # cold: resolving the OTel SDK and Maven's plugins from Maven Central


def build_java_job() -> Path:
    """Build examples/jvm-job with Maven (Java 17) and return its runnable jar; fails (never skips) when Java
    or Maven is missing or the build fails."""
    proc = subprocess.run(["mvn", "-B", "-q", "package"], cwd=JAVA_JOB, capture_output=True, text=True,
                          timeout=MAVEN_BUILD_TIMEOUT, check=False)
    if proc.returncode:
        raise AssertionError(f"mvn package in {JAVA_JOB} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                             f"{proc.stderr[-3000:]}")
    return JAVA_JOB / "target" / "otel-java-job.jar"
