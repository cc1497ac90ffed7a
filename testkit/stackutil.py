"""The native stack (compose/stack.sh) for tests, benchmarks and the demo: bring it up, read its stores back
through the project's own store clients (otel_plugin.readback.stores), count what arrived.

Also the OTel SDK senders the tests run as separate OS processes (multiprocessing, forkserver): each builds its
own providers, as an Airflow task process does, sends once and exits.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

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

from otel_plugin.core import contract
from otel_plugin.readback.stores import Jaeger, Prometheus, VictoriaLogs
from testkit.procs import Gate, run_processes  # noqa: F401 - tests reach them as stackutil.*
from testkit.wait import wait_until  # noqa: F401 - tests reach it as stackutil.wait_until

ROOT = Path(__file__).resolve().parents[1]
STACK_SH = ROOT / "compose" / "stack.sh"

COLLECTOR_OTLP_HTTP = "http://127.0.0.1:4318"
COLLECTOR_TELEMETRY = "http://127.0.0.1:8888/metrics"
PROMETHEUS = "http://127.0.0.1:9090"
VICTORIALOGS = "http://127.0.0.1:9428"
JAEGER = "http://127.0.0.1:16686"
SERVICE_NAME = "airflow"
FINISHED = contract.TASK_FINISHED.prometheus

def stack(*args: str) -> str:
    """Run compose/stack.sh with args; its output, or an AssertionError carrying it on failure."""
    proc = subprocess.run([str(STACK_SH), *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise AssertionError(f"stack.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def ensure_stack() -> None:
    """Start whatever part of the stack is not running (builds missing binaries; idempotent)."""
    stack("up")


# --- Prometheus -------------------------------------------------------------------------------------


class PromQL(Prometheus):
    def parse_query(self, expr: str) -> Any:
        """The syntax tree Prometheus makes of ``expr`` (StoreError if it does not parse)."""
        return self._data("/api/v1/parse_query", {"query": expr})

    def query_exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """Exemplars of the series ``expr`` selects: entries of ``seriesLabels`` and ``exemplars``."""
        return self._data("/api/v1/query_exemplars", {"query": expr, "start": start, "end": end})


def prom_query(expr: str, at: float | None = None, url: str = PROMETHEUS) -> list[dict[str, Any]]:
    """Instant query: the result list (vector or matrix entries)."""
    return Prometheus(url).query(expr, at)


def prom_value(expr: str, at: float | None = None, url: str = PROMETHEUS) -> float | None:
    """The value of a query that returns at most one series (None when it returns none)."""
    result = prom_query(expr, at, url)
    assert len(result) <= 1, f"{expr} returned {len(result)} series: {result}"
    return float(result[0]["value"][1]) if result else None


def prom_exemplar_traces(selector: str, window_s: float = 900) -> set[str]:
    """The trace ids (hex) of the exemplars Prometheus stored for a selector's series in the last window."""
    now = time.time()
    return {exemplar["labels"]["trace_id"]
            for series in PromQL(PROMETHEUS).query_exemplars(selector, now - window_s, now)
            for exemplar in series["exemplars"] if "trace_id" in exemplar["labels"]}


def series_samples(series: dict[str, Any]) -> list[tuple[float, float]]:
    """The raw (timestamp, value) samples of one series of a range-vector query's result."""
    return [(float(t), float(v)) for t, v in series["values"]]


def prom_samples(selector: str, window: str = "10m") -> list[tuple[float, float]]:
    """Raw (timestamp, value) samples of the single series a selector matches, over the last window."""
    result = prom_query(f"{selector}[{window}]")
    assert len(result) == 1, f"{selector} matched {len(result)} series: {result}"
    return series_samples(result[0])


def counter_total(samples: list[tuple[float, float]]) -> float:
    """What a counter's raw samples add up to, across resets (a Collector restart starts it again from 0)."""
    counted, previous = 0.0, 0.0
    for _, value in samples:
        counted += value - previous if value >= previous else value
        previous = value
    return counted


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


class _Logs(VictoriaLogs):
    def streams(self, logsql: str) -> list[str]:
        """The stream label sets (e.g. '{service.name="airflow"}') of the records a LogsQL query matches."""
        found = self._json("/select/logsql/streams", {"query": logsql}, post=True)
        return [entry["value"] for entry in found["values"]]


def logsql(query: str) -> list[dict[str, Any]]:
    """Records matching a LogsQL query, as parsed JSON lines."""
    return VictoriaLogs(VICTORIALOGS).query(query)


def logsql_streams(query: str) -> list[str]:
    """The stream label sets (e.g. '{service.name="airflow"}') of the records a LogsQL query matches."""
    return _Logs(VICTORIALOGS).streams(query)


# --- Jaeger -----------------------------------------------------------------------------------------


def jaeger_trace(trace_id: int) -> dict[str, Any] | None:
    """The trace with this id as Jaeger's HTTP API returns it, or None while it is not (yet) there."""
    data = Jaeger(JAEGER).trace_json(f"{trace_id:032x}")
    assert data is None or "spans" in data, data
    return data


def jaeger_search(tags: Mapping[str, str], service: str = SERVICE_NAME, lookback: str = "1h") -> list[dict]:
    """Traces of a service whose spans carry all these tags."""
    params = {"service": service, "tags": json.dumps(dict(tags)), "lookback": lookback, "limit": "20"}
    return Jaeger(JAEGER).search(params)


# --- what arrived: counts a test or benchmark compares with what it sent --------------------------------------


def finished_total(dag_id: str | None = None, *, dag_prefix: str | None = None, state: str | None = None) -> int:
    """Task tries Prometheus counts for one DAG (or every DAG starting with ``dag_prefix``), all states or one."""
    selector = f'dag_id="{dag_id}"' if dag_id is not None else f'dag_id=~"{dag_prefix}.*"'
    if state:
        selector += f', state="{state}"'
    return int(prom_value(f"sum({FINISHED}{{{selector}}})") or 0)


def event_count(logsql_filter: str) -> int:
    """Event records VictoriaLogs holds that match a LogsQL filter (every copy: a duplicate counts twice)."""
    rows = logsql(f"{logsql_filter} | stats count() as n")
    return int(rows[0]["n"]) if rows else 0


def span_count(trace_ids: Iterable[int]) -> int:
    """Spans Jaeger holds for these traces (each fetched by id; every stored copy)."""
    return sum(len(trace["spans"]) for trace_id in trace_ids if (trace := jaeger_trace(trace_id)))


# --- senders: each runs in its own OS process ---------------------------------------------------------


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
    resource: Mapping[str, str] | None = None,
) -> None:
    """One process: its own MeterProvider with DELTA temporality (``resource``: attributes added to its
    resource); adds to a counter (and records one histogram observation), then exits through a flushing
    shutdown."""

    delta: dict[type, AggregationTemporality] = {
        Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA,
    }
    exporter = OTLPMetricExporter(endpoint=f"{COLLECTOR_OTLP_HTTP}/v1/metrics", preferred_temporality=delta, timeout=5)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=_resource(resource))
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
