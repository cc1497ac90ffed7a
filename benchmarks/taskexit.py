"""A task process's end, for the exit-delay measurement: ``python -m benchmarks.taskexit none|plugin|sdk``.

Sets up what it reports with (nothing; the plugin through its hooks; or the OTel SDK with its defaults:
OTLP/HTTP exporters with default timeouts, batch processors and the SDK's atexit shutdown), prints the
wall-clock time at which the task's work ends, reports the task's end and exits normally, so atexit
handlers run as in a real task process. The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT for both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _plugin() -> Callable[[], None]:
    from . import drive

    run = drive.Run("bench_taskexit", "t", "manual__exit", "success")
    start = drive.begin(run)
    return lambda: drive.end(run, start)


def _sdk() -> Callable[[], None]:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "airflow"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    meter_provider = MeterProvider(resource=resource,
                                   metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    span = tracer_provider.get_tracer("bench").start_span("task t")
    logger = logger_provider.get_logger("bench")
    counter = meter_provider.get_meter("bench").create_counter("task_finished")

    def end() -> None:
        from opentelemetry._logs import LogRecord

        span.end()
        logger.emit(LogRecord(body="task t success", attributes={"dag_id": "bench_taskexit"}))
        counter.add(1, {"dag_id": "bench_taskexit", "state": "success"})

    return end


def main(kind: str) -> None:
    # A task process has Airflow and its configuration loaded whatever reports its end; Airflow's own exit
    # handlers (about 0.4 s here) are then part of every column, not charged to the plugin.
    import airflow.sdk.configuration  # noqa: F401

    end = {"none": lambda: (lambda: None), "plugin": _plugin, "sdk": _sdk}[kind]()
    print(f"{time.time():.6f}", flush=True)  # the task's work is done
    end()


if __name__ == "__main__":
    main(sys.argv[1])
